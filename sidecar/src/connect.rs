//! How the sidecar reaches the identity API: TCP (`--upstream`), or a Unix socket
//! (`--upstream-socket`) when both share a volume in the pod. Over the socket a request skips
//! the TCP/IP stack, which cost the sidecar about a fifth of its CPU per forwarded request on
//! loopback (docs/benchmarks.md), and the identity API need not listen on the network at all.

use std::future::Future;
use std::io;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::Uri;
use hyper::rt::{Read, ReadBufCursor, Write};
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpStream, UnixStream};

/// Connects to the identity API for hyper's pooled client.
#[derive(Debug, Clone)]
pub enum Connector {
    /// To the host and port of the request's URI.
    Tcp(HttpConnector),
    /// To this socket, whatever the URI says (it still gives the Host header and the path).
    Unix(Arc<Path>),
}

impl Connector {
    pub fn new(socket: Option<&Path>) -> Self {
        match socket {
            Some(path) => Self::Unix(path.into()),
            None => {
                let mut tcp = HttpConnector::new();
                tcp.set_nodelay(true);
                Self::Tcp(tcp)
            }
        }
    }
}

type Connecting = Pin<Box<dyn Future<Output = io::Result<Conn>> + Send>>;

impl tower::Service<Uri> for Connector {
    type Response = Conn;
    type Error = io::Error;
    type Future = Connecting;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self {
            Self::Tcp(tcp) => tcp.poll_ready(cx).map_err(io::Error::other),
            Self::Unix(_) => Poll::Ready(Ok(())),
        }
    }

    fn call(&mut self, uri: Uri) -> Connecting {
        match self {
            Self::Tcp(tcp) => {
                let connecting = tcp.call(uri);
                Box::pin(async move {
                    let stream = connecting.await.map_err(io::Error::other)?;
                    Ok(Conn::Tcp(stream))
                })
            }
            Self::Unix(path) => {
                let path = Arc::clone(path);
                Box::pin(async move {
                    let stream = UnixStream::connect(&*path).await?;
                    Ok(Conn::Unix(TokioIo::new(stream)))
                })
            }
        }
    }
}

/// One connection to the identity API.
#[derive(Debug)]
pub enum Conn {
    Tcp(TokioIo<TcpStream>),
    Unix(TokioIo<UnixStream>),
}

impl Connection for Conn {
    fn connected(&self) -> Connected {
        match self {
            Self::Tcp(stream) => stream.connected(),
            Self::Unix(_) => Connected::new(),
        }
    }
}

// Both streams are `Unpin`: each call goes to the variant through `Pin::new`.
impl Read for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Self::Unix(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl Write for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Self::Unix(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Tcp(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Self::Unix(s) => Pin::new(s).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Self::Tcp(s) => s.is_write_vectored(),
            Self::Unix(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Tcp(s) => Pin::new(s).poll_flush(cx),
            Self::Unix(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Self::Unix(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}
