//! The launcher's test certificate authority, and an HTTPS client that trusts one authority
//! only: hyper over tokio-rustls with the tree's aws-lc-rs provider, one request per connection.
//! (reqwest 0.12's rustls needs a process-wide default provider or ring, and its features reach
//! every crate of a workspace build; these tests do without it.)

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, Request};
use http_body_util::{BodyExt as _, Full};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

#[allow(unused_imports)] // each test binary uses what it needs
pub use identity_launcher::test_ca::{Pair, TestCa};

/// A rustls client configuration that trusts `ca_pem` only, with the tree's aws-lc-rs provider.
pub fn client_config(ca_pem: &str) -> rustls::ClientConfig {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject as _;
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(ca_pem.as_bytes()).unwrap())
        .unwrap();
    rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth()
}

/// A TLS connection to `addr`, for the name `localhost`, offering `alpn`: or the error's text.
pub async fn connect(
    ca_pem: &str,
    addr: SocketAddr,
    alpn: &[&[u8]],
) -> Result<TlsStream<TcpStream>, String> {
    let mut config = client_config(ca_pem);
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let socket = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let connect = TlsConnector::from(Arc::new(config)).connect(name, socket);
    tokio::time::timeout(Duration::from_secs(10), connect)
        .await
        .map_err(|_| "handshake timed out".to_owned())?
        .map_err(|e| e.to_string())
}

/// A request to send with [`https`]: `Host: localhost`, these headers, this body.
pub fn request(
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Request<Full<Bytes>> {
    let mut request = Request::builder()
        .method(method)
        .uri(path)
        .header("host", "localhost");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.body(Full::from(body.to_owned())).unwrap()
}

/// One HTTPS exchange on a fresh connection trusting `ca_pem` only: the status, headers and
/// body, or the error's text (a refused certificate among them).
pub async fn https(
    ca_pem: &str,
    addr: SocketAddr,
    request: Request<Full<Bytes>>,
) -> Result<(u16, HeaderMap, Bytes), String> {
    let stream = connect(ca_pem, addr, &[b"http/1.1"]).await?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(connection);
    let exchange = async {
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| e.to_string())?;
        let (parts, body) = response.into_parts();
        let body = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
        Ok((parts.status.as_u16(), parts.headers, body))
    };
    tokio::time::timeout(Duration::from_secs(30), exchange)
        .await
        .map_err(|_| "no answer within 30 s".to_owned())?
}
