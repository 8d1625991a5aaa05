//! HTTPS for `openami serve`: loads the operator's PEM certificate chain and key into a
//! rustls server configuration (the `ring` provider), and a listener that performs the
//! TLS handshakes and hands axum finished TLS streams.
//!
//! Each handshake runs in its own task with a time limit, so a client that fails its
//! handshake, speaks plain HTTP to the TLS port or stalls never delays the others. At most
//! [`MAX_HANDSHAKES`] run at once: beyond that, new connections wait in the kernel's
//! accept backlog, so a flood of clients that never finish their handshake holds a bounded
//! number of tasks and sockets, for at most [`HANDSHAKE_TIMEOUT`] each.

use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// How long a client may take to complete its TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Finished handshakes waiting for axum to take them.
const ACCEPT_QUEUE: usize = 64;

/// Handshakes in progress at once.
pub const MAX_HANDSHAKES: usize = 128;

/// Reads the certificate chain and private key and builds the server configuration.
/// Every error names the file at fault.
pub fn load_config(cert_path: &Path, key_path: &Path) -> anyhow::Result<Arc<ServerConfig>> {
    let certs = CertificateDer::pem_file_iter(cert_path)
        .map_err(|e| anyhow::anyhow!("{e}"))
        .and_then(|certs| {
            certs
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| anyhow::anyhow!("{e}"))
        })
        .with_context(|| {
            format!(
                "--tls-cert {}: reading the certificates",
                cert_path.display()
            )
        })?;
    anyhow::ensure!(
        !certs.is_empty(),
        "--tls-cert {}: no PEM certificate (-----BEGIN CERTIFICATE-----) in the file",
        cert_path.display()
    );
    let key = PrivateKeyDer::from_pem_file(key_path)
        .map_err(|e| match e {
            rustls::pki_types::pem::Error::NoItemsFound => {
                anyhow::anyhow!("no PEM private key (PKCS#8, PKCS#1 or SEC1) in the file")
            }
            e => anyhow::anyhow!("{e}"),
        })
        .with_context(|| format!("--tls-key {}: reading the private key", key_path.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("configuring TLS protocol versions")?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .with_context(|| {
            format!(
                "--tls-cert {} / --tls-key {}: the key does not fit the certificate or is not supported",
                cert_path.display(),
                key_path.display()
            )
        })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// A listener for `axum::serve` that yields TLS streams whose handshake has completed.
/// A background task accepts TCP connections and starts one handshake task for each; it
/// stops accepting once this listener is dropped (when axum begins its graceful
/// shutdown).
pub struct TlsListener {
    incoming: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
}

impl TlsListener {
    /// Starts accepting on `listener` (must be called within the Tokio runtime).
    pub fn new(listener: TcpListener, config: Arc<ServerConfig>) -> io::Result<Self> {
        let local = listener.local_addr()?;
        let (tx, incoming) = mpsc::channel(ACCEPT_QUEUE);
        tokio::spawn(accept_loop(listener, TlsAcceptor::from(config), tx));
        Ok(Self { incoming, local })
    }
}

async fn accept_loop(
    mut listener: TcpListener,
    acceptor: TlsAcceptor,
    tx: mpsc::Sender<(TlsStream<TcpStream>, SocketAddr)>,
) {
    let handshakes = Arc::new(Semaphore::new(MAX_HANDSHAKES));
    loop {
        // Never closed, so this fails never.
        let Ok(slot) = Arc::clone(&handshakes).acquire_owned().await else {
            return;
        };
        // axum's own accept retries transient errors (and backs off on EMFILE).
        let (tcp, peer) = tokio::select! {
            accepted = axum::serve::Listener::accept(&mut listener) => accepted,
            () = tx.closed() => return,
        };
        let acceptor = acceptor.clone();
        let tx = tx.clone();
        tokio::spawn(async move {
            let handshake = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await;
            drop(slot);
            match handshake {
                Ok(Ok(stream)) => {
                    // Fails only when the server is shutting down: the connection closes.
                    let _ = tx.send((stream, peer)).await;
                }
                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
            }
        });
    }
}

/// Its connections' remote address is the client's: the audit log's `source`.
impl api::audit::ClientListener for TlsListener {}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.incoming.recv().await {
            Some(accepted) => accepted,
            // The accept task ended (it never does while this receiver lives).
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(self.local)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let cert = dir.path().join("nope-cert.pem");
        let key = dir.path().join("nope-key.pem");
        let e = format!("{:#}", load_config(&cert, &key).unwrap_err());
        assert!(e.contains("nope-cert.pem"), "{e}");
    }

    #[test]
    fn empty_files_are_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let cert = dir.path().join("cert.pem");
        let key = dir.path().join("key.pem");
        std::fs::write(&cert, "not a certificate\n").unwrap();
        std::fs::write(&key, "").unwrap();
        let e = format!("{:#}", load_config(&cert, &key).unwrap_err());
        assert!(
            e.contains("cert.pem") && e.contains("no PEM certificate"),
            "{e}"
        );
    }
}
