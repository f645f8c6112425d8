//! One connection: hyper's HTTP/1.1 over the socket, and the deadline of the phase it is in.
//!
//! A connection waits for a request (idle), reads its header, then is busy answering it; the
//! body has its own deadline ([`super::body`]). The phase changes where hyper reads the socket
//! and calls the app, both inside this connection's task, so one timer, re-armed only when a
//! deadline moves earlier, watches it without a task or a wake-up per request.

use std::future::poll_fn;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering::Relaxed};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::watch;
use tokio::time::Instant;
use tower::ServiceExt as _;

use super::Limits;
use super::body::DeadlineBody;

/// Waiting for the first byte of a request, on a kept-alive connection.
const IDLE: u8 = 0;
/// Reading a request's header (a new connection starts here).
const HEADER: u8 = 1;
/// Answering a request: no connection deadline (the body has its own).
const BUSY: u8 = 2;
/// `deadline` when there is none.
const NONE: u64 = u64::MAX;

/// The phase of one connection and when it must have left it.
struct Deadlines {
    start: Instant,
    header: Duration,
    idle: Duration,
    phase: AtomicU8,
    /// Milliseconds after `start`, or [`NONE`].
    deadline: AtomicU64,
}

impl Deadlines {
    fn new(limits: &Limits) -> Self {
        let deadlines = Self {
            start: Instant::now(),
            header: limits.header_read_timeout,
            idle: limits.idle_timeout,
            phase: AtomicU8::new(HEADER),
            deadline: AtomicU64::new(NONE),
        };
        deadlines.enter(HEADER, Some(limits.header_read_timeout));
        deadlines
    }

    fn enter(&self, phase: u8, within: Option<Duration>) {
        let deadline = within.map_or(NONE, |within| {
            u64::try_from((self.start.elapsed() + within).as_millis()).unwrap_or(NONE)
        });
        self.phase.store(phase, Relaxed);
        self.deadline.store(deadline, Relaxed);
    }

    /// Bytes arrived: on an idle connection, a request's header begins.
    fn bytes_read(&self) {
        if self.phase.load(Relaxed) == IDLE {
            self.enter(HEADER, Some(self.header));
        }
    }

    fn request(&self) {
        self.enter(BUSY, None);
    }

    fn answered(&self) {
        self.enter(IDLE, Some(self.idle));
    }

    fn deadline(&self) -> Option<Instant> {
        match self.deadline.load(Relaxed) {
            NONE => None,
            ms => Some(self.start + Duration::from_millis(ms)),
        }
    }

    fn phase(&self) -> &'static str {
        match self.phase.load(Relaxed) {
            IDLE => "idle",
            HEADER => "header",
            _ => "busy",
        }
    }
}

/// The socket, telling [`Deadlines`] when bytes arrive.
struct Watched<I> {
    io: I,
    deadlines: Arc<Deadlines>,
}

impl<I: AsyncRead + Unpin> AsyncRead for Watched<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let read = Pin::new(&mut self.io).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.deadlines.bytes_read();
        }
        read
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Watched<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// How a connection ended, for the debug log.
enum Ended {
    Closed,
    Failed(hyper::Error),
    TimedOut(&'static str),
}

/// Serves one connection until it closes, fails or misses a deadline; once `stopping` turns
/// true it finishes the request in flight and closes.
pub(super) async fn serve<I, A>(
    io: I,
    peer: A,
    app: Router,
    limits: Limits,
    mut stopping: watch::Receiver<bool>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    A: Clone + Send + Sync + 'static,
{
    let deadlines = Arc::new(Deadlines::new(&limits));
    let io = TokioIo::new(Watched {
        io,
        deadlines: Arc::clone(&deadlines),
    });
    let service = {
        let deadlines = Arc::clone(&deadlines);
        hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
            deadlines.request();
            let (mut parts, body) = request.into_parts();
            parts.extensions.insert(ConnectInfo(peer.clone()));
            let body = DeadlineBody::new(body, Instant::now() + limits.body_read_timeout);
            let answer = app.clone().oneshot(hyper::Request::from_parts(parts, body));
            let deadlines = Arc::clone(&deadlines);
            async move {
                let response = answer.await;
                deadlines.answered();
                response
            }
        })
    };
    let mut connection = pin!(http1::Builder::new().serve_connection(io, service));
    let mut stop = pin!(async move {
        let _ = stopping.wait_for(|stop| *stop).await;
    });
    let mut draining = false;
    let mut armed = deadlines.deadline().unwrap_or_else(Instant::now);
    let mut timer = pin!(tokio::time::sleep_until(armed));
    let ended = poll_fn(|cx| {
        if !draining && stop.as_mut().poll(cx).is_ready() {
            draining = true;
            connection.as_mut().graceful_shutdown();
        }
        if let Poll::Ready(result) = connection.as_mut().poll(cx) {
            return Poll::Ready(result.map_or_else(Ended::Failed, |()| Ended::Closed));
        }
        let Some(deadline) = deadlines.deadline() else {
            return Poll::Pending;
        };
        if deadline < armed {
            armed = deadline;
            timer.as_mut().reset(armed);
        }
        // A later deadline is taken up only when the armed one passes: one timer update per
        // header timeout rather than two per request.
        while timer.as_mut().poll(cx).is_ready() {
            if deadline <= armed {
                return Poll::Ready(Ended::TimedOut(deadlines.phase()));
            }
            armed = deadline;
            timer.as_mut().reset(armed);
        }
        Poll::Pending
    })
    .await;
    match ended {
        Ended::Closed => {}
        Ended::Failed(error) => tracing::debug!(%error, "connection failed"),
        Ended::TimedOut(phase) => {
            tracing::debug!(phase, "closing a connection that missed its deadline");
        }
    }
}
