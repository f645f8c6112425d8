//! Plain HTTP on a loopback port, carried over TLS to a sidecar's TLS listener, as `stunnel` in
//! client mode does: reqwest is built without TLS in this workspace (its rustls features would
//! reach every crate of a workspace build), so reqwest and identity-client reach a TLS sidecar
//! through this. The sidecar still terminates real TLS for every request; the tunnel trusts the
//! test authority only, for the name `localhost`, with the tree's aws-lc-rs provider.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsConnector;

/// A running tunnel; stops accepting when dropped.
#[derive(Debug)]
pub struct TlsTunnel {
    local: SocketAddr,
    accept: tokio::task::JoinHandle<()>,
}

impl TlsTunnel {
    /// Listens on a free loopback port; each connection is carried over its own TLS connection
    /// to `sidecar_url` (`https://127.0.0.1:<port>`), whose certificate must chain to `ca_pem`.
    pub async fn start(sidecar_url: &str, ca_pem: &str) -> anyhow::Result<Self> {
        let target: SocketAddr = sidecar_url
            .strip_prefix("https://")
            .and_then(|rest| rest.parse().ok())
            .with_context(|| format!("{sidecar_url} is not https://<ip>:<port>"))?;
        let mut roots = rustls::RootCertStore::empty();
        roots.add(
            CertificateDer::from_pem_slice(ca_pem.as_bytes())
                .context("the test authority is not a PEM certificate")?,
        )?;
        let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
        // reqwest here speaks HTTP/1.1 only: offer what is carried.
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let connector = TlsConnector::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let local = listener.local_addr()?;
        let accept = tokio::spawn(async move {
            while let Ok((plain, _)) = listener.accept().await {
                let connector = connector.clone();
                tokio::spawn(async move {
                    // A failed hop closes the client's connection: the client reports it.
                    let _ = carry(plain, target, &connector).await;
                });
            }
        });
        Ok(Self { local, accept })
    }

    /// The plain URL whose requests reach the sidecar over TLS.
    pub fn url(&self) -> String {
        format!("http://{}", self.local)
    }
}

impl Drop for TlsTunnel {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

async fn carry(
    mut plain: TcpStream,
    target: SocketAddr,
    connector: &TlsConnector,
) -> std::io::Result<()> {
    let socket = TcpStream::connect(target).await?;
    let name = ServerName::try_from("localhost").map_err(std::io::Error::other)?;
    let mut tls = connector.connect(name, socket).await?;
    tokio::io::copy_bidirectional(&mut plain, &mut tls).await?;
    Ok(())
}
