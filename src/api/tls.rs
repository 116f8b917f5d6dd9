//! HTTPS on the API listener: rustls with the ring provider (the one lettre already brings).
//!
//! The certificate chain and its private key come from PEM files only — never from a flag or
//! the environment. They are checked at startup, and every way they can be wrong is an error
//! that names the file: missing or unreadable, no certificate, no private key, a key that is not
//! the certificate's. [`Tls::reload`] reads them again (on `SIGHUP`, so a certificate rotated by
//! cert-manager is served without a restart); a rotation that fails the same checks is refused
//! and the certificate in force stays.
//!
//! [`TlsListener`] is an axum `Listener`: it accepts TCP connections and runs each handshake in
//! a task of its own with a deadline ([`HANDSHAKE_TIMEOUT`]), so a client that connects and
//! never finishes its handshake stalls nobody else; axum receives only finished handshakes,
//! with the client's address (which the rate limit keys by).

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// How long a client may take from connecting to a finished handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the certificate chain and its key are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM: the server's certificate first, then any intermediates.
    pub cert: PathBuf,
    /// PEM: the private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// Why the certificate or key cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("reading the TLS {what} file {}: {source}", file.display())]
    Read {
        what: &'static str,
        file: PathBuf,
        source: io::Error,
    },
    #[error("the TLS {what} file {} is not valid PEM: {reason}", file.display())]
    Pem {
        what: &'static str,
        file: PathBuf,
        reason: String,
    },
    #[error(
        "the TLS certificate file {} holds no certificate (expected a PEM \
         `-----BEGIN CERTIFICATE-----` block)",
        file.display()
    )]
    NoCertificate { file: PathBuf },
    #[error(
        "the TLS key file {} holds no private key (expected a PEM `PRIVATE KEY`, \
         `RSA PRIVATE KEY` or `EC PRIVATE KEY` block)",
        file.display()
    )]
    NoKey { file: PathBuf },
    #[error("the TLS key file {}: the key cannot be used: {reason}", file.display())]
    BadKey { file: PathBuf, reason: String },
    #[error("the TLS certificate file {}: its first certificate cannot be read: {reason}", file.display())]
    BadCertificate { file: PathBuf, reason: String },
    #[error(
        "the TLS key file {} does not belong to the certificate in {} (their public keys differ)",
        key.display(),
        cert.display()
    )]
    KeyMismatch { cert: PathBuf, key: PathBuf },
    #[error("configuring TLS: {0}")]
    Config(rustls::Error),
}

/// The TLS side of the listener: the certificate in force, and the acceptor that serves it.
#[derive(Clone)]
pub struct Tls {
    certificate: Arc<Certificate>,
    acceptor: TlsAcceptor,
}

impl fmt::Debug for Tls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tls")
            .field("files", &self.certificate.files)
            .finish_non_exhaustive()
    }
}

impl Tls {
    /// Reads and checks the files; the acceptor offers TLS 1.3 and 1.2 and HTTP/1.1 (ALPN).
    pub fn load(files: TlsFiles) -> Result<Tls, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let key = load_certified_key(&files, &provider)?;
        let certificate = Arc::new(Certificate {
            files,
            provider: provider.clone(),
            current: RwLock::new(Arc::new(key)),
        });
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(TlsError::Config)?
            .with_no_client_auth()
            .with_cert_resolver(certificate.clone());
        // axum serves HTTP/1.1 only (its `http2` feature is off).
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Tls {
            certificate,
            acceptor: TlsAcceptor::from(Arc::new(config)),
        })
    }

    /// The files it serves.
    pub fn files(&self) -> &TlsFiles {
        &self.certificate.files
    }

    /// Reads the files again and serves them from the next handshake on; when they fail a
    /// check, the certificate in force stays and the error says why.
    pub fn reload(&self) -> Result<(), TlsError> {
        let c = &self.certificate;
        let key = load_certified_key(&c.files, &c.provider)?;
        *c.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(key);
        Ok(())
    }
}

/// The certificate in force, handed to every handshake.
struct Certificate {
    files: TlsFiles,
    provider: Arc<CryptoProvider>,
    current: RwLock<Arc<CertifiedKey>>,
}

impl fmt::Debug for Certificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Certificate")
            .field("files", &self.files)
            .finish_non_exhaustive()
    }
}

impl ResolvesServerCert for Certificate {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        )
    }
}

fn read(what: &'static str, file: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(file).map_err(|source| TlsError::Read {
        what,
        file: file.to_owned(),
        source,
    })
}

/// The chain and key of `files`, checked: both present, the key usable and the certificate's.
fn load_certified_key(
    files: &TlsFiles,
    provider: &CryptoProvider,
) -> Result<CertifiedKey, TlsError> {
    let pem_error = |what, file: &Path, e: rustls::pki_types::pem::Error| TlsError::Pem {
        what,
        file: file.to_owned(),
        reason: e.to_string(),
    };
    let cert_pem = read("certificate", &files.cert)?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error("certificate", &files.cert, e))?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate {
            file: files.cert.clone(),
        });
    }
    let key_pem = read("key", &files.key)?;
    let key = match PrivateKeyDer::from_pem_slice(&key_pem) {
        Ok(k) => k,
        Err(rustls::pki_types::pem::Error::NoItemsFound) => {
            return Err(TlsError::NoKey {
                file: files.key.clone(),
            });
        }
        Err(e) => return Err(pem_error("key", &files.key, e)),
    };
    let signing_key =
        provider
            .key_provider
            .load_private_key(key)
            .map_err(|e| TlsError::BadKey {
                file: files.key.clone(),
                reason: e.to_string(),
            })?;
    let certified = CertifiedKey::new(chain, signing_key);
    match certified.keys_match() {
        Ok(()) => Ok(certified),
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
            Err(TlsError::KeyMismatch {
                cert: files.cert.clone(),
                key: files.key.clone(),
            })
        }
        // The key cannot say its public key: the handshake is the only check left.
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => Ok(certified),
        Err(e) => Err(TlsError::BadCertificate {
            file: files.cert.clone(),
            reason: e.to_string(),
        }),
    }
}

/// Finished handshakes waiting for axum to take them.
const READY_QUEUE: usize = 64;

/// A TCP listener whose connections axum receives after their TLS handshake.
pub struct TlsListener {
    local_addr: SocketAddr,
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    accepting: tokio::task::JoinHandle<()>,
}

impl TlsListener {
    /// Starts accepting on `tcp` (must be called inside the runtime that serves).
    pub fn new(tcp: TcpListener, tls: &Tls) -> io::Result<TlsListener> {
        let local_addr = tcp.local_addr()?;
        let (tx, ready) = mpsc::channel(READY_QUEUE);
        let acceptor = tls.acceptor.clone();
        let accepting = tokio::spawn(accept_loop(tcp, acceptor, tx));
        Ok(TlsListener {
            local_addr,
            ready,
            accepting,
        })
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        // Handshakes in flight end with it: their sender side finds the queue closed.
        self.accepting.abort();
    }
}

/// Accepts connections and hands each to a handshake task of its own.
async fn accept_loop(
    tcp: TcpListener,
    acceptor: TlsAcceptor,
    ready: mpsc::Sender<(TlsStream<TcpStream>, SocketAddr)>,
) {
    loop {
        let (stream, peer) = match tcp.accept().await {
            Ok(c) => c,
            Err(e) => {
                accept_error(e).await;
                continue;
            }
        };
        let acceptor = acceptor.clone();
        let ready = ready.clone();
        tokio::spawn(async move {
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => {
                    let _ = ready.send((tls, peer)).await;
                }
                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
            }
        });
    }
}

/// As axum's own listener does: a failed connection is the client's business; anything else
/// (out of file descriptors) is logged and retried after a pause rather than spinning.
async fn accept_error(e: io::Error) {
    if matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    ) {
        return;
    }
    tracing::error!(error = %e, "accepting an API connection failed");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(c) => c,
            // The accept loop is gone (it is only aborted on drop): nothing more will come.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(self.local_addr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_certificate_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let files = TlsFiles {
            cert: dir.path().join("nope.pem"),
            key: dir.path().join("key.pem"),
        };
        let e = Tls::load(files).unwrap_err().to_string();
        assert!(e.contains("reading the TLS certificate file"), "{e}");
        assert!(e.contains("nope.pem"), "{e}");
    }

    #[test]
    fn a_file_without_pem_blocks_has_no_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let cert = dir.path().join("cert.pem");
        std::fs::write(&cert, "not a certificate\n").unwrap();
        let files = TlsFiles {
            cert: cert.clone(),
            key: dir.path().join("key.pem"),
        };
        match Tls::load(files).unwrap_err() {
            TlsError::NoCertificate { file } => assert_eq!(file, cert),
            e => panic!("expected NoCertificate, got {e}"),
        }
    }
}
