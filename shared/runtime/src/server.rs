//! The HTTP server of a listener that faces networks we do not control (the producer's
//! event API): at most so many connections ([`LimitedListener`]), optional TLS whose
//! certificate is read again when its files change ([`ReloadingCertificate`]), a deadline
//! for the TLS handshake and for a request's headers, limits on header count and size
//! (431 beyond), and a graceful shutdown that lets requests in flight finish.
//!
//! `axum::serve` offers none of the limits, so connections are served with hyper's own
//! HTTP/1.1 connection builder, as `axum::serve` does inside. The probes' listener keeps
//! `axum::serve` ([`crate::http::serve`]).

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, SystemTime};

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio_rustls::TlsAcceptor;

use crate::http::LimitedListener;

/// How long requests in flight may take to finish after shutdown begins.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// What one connection may send before it is answered or cut off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerLimits {
    /// Bytes of a request's line and headers (hyper's read buffer; at least 8,192).
    pub max_header_bytes: usize,
    /// Header fields of one request.
    pub max_headers: usize,
    /// How long a request's line and headers may take to arrive (a client trickling them
    /// in is cut off); the TLS handshake has the same deadline.
    pub header_timeout: Duration,
}

impl Default for ServerLimits {
    fn default() -> ServerLimits {
        ServerLimits { max_header_bytes: 32 * 1024, max_headers: 64, header_timeout: Duration::from_secs(10) }
    }
}

/// A certificate and key read from PEM files, read again by [`Self::reload_if_changed`]
/// when either file changes (a renewed certificate: cert-manager, a mounted Secret); a
/// pair that cannot be used leaves the one in force.
#[derive(Debug)]
pub struct ReloadingCertificate {
    cert_file: PathBuf,
    key_file: PathBuf,
    current: RwLock<Loaded>,
}

#[derive(Debug)]
struct Loaded {
    key: Arc<CertifiedKey>,
    modified: (Option<SystemTime>, Option<SystemTime>),
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

impl ReloadingCertificate {
    /// Reads `cert_file` (the certificate chain, leaf first) and `key_file` (its private
    /// key: PKCS#8, PKCS#1 or SEC1); what is wrong with them, naming the file.
    pub fn load(cert_file: &Path, key_file: &Path) -> Result<ReloadingCertificate, String> {
        let modified_before = (modified(cert_file), modified(key_file));
        let key = certified_key(cert_file, key_file)?;
        Ok(ReloadingCertificate {
            cert_file: cert_file.to_owned(),
            key_file: key_file.to_owned(),
            current: RwLock::new(Loaded { key: Arc::new(key), modified: modified_before }),
        })
    }

    /// Reads the files again if either changed since the last read: `Ok(true)` when a new
    /// certificate is in force, `Ok(false)` when nothing changed, `Err` (the old one stays)
    /// when the new files cannot be used, for example while only one of them is replaced.
    pub fn reload_if_changed(&self) -> Result<bool, String> {
        let now = (modified(&self.cert_file), modified(&self.key_file));
        if self.current.read().unwrap_or_else(PoisonError::into_inner).modified == now {
            return Ok(false);
        }
        let key = certified_key(&self.cert_file, &self.key_file)?;
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = Loaded { key: Arc::new(key), modified: now };
        Ok(true)
    }

    /// The TLS settings that serve this certificate (TLS 1.2 and 1.3, ring's safe
    /// defaults, HTTP/1.1 by ALPN).
    pub fn acceptor(self: &Arc<Self>) -> Result<TlsAcceptor, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS settings: {e}"))?
            .with_no_client_auth()
            .with_cert_resolver(Arc::clone(self) as Arc<dyn ResolvesServerCert>);
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(TlsAcceptor::from(Arc::new(config)))
    }
}

impl ResolvesServerCert for ReloadingCertificate {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(&self.current.read().unwrap_or_else(PoisonError::into_inner).key))
    }
}

fn certified_key(cert_file: &Path, key_file: &Path) -> Result<CertifiedKey, String> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert_file)
        .and_then(|certs| certs.collect())
        .map_err(|e| format!("{}: cannot read PEM certificates: {e}", cert_file.display()))?;
    if chain.is_empty() {
        return Err(format!("{}: holds no PEM certificate", cert_file.display()));
    }
    let key = PrivateKeyDer::from_pem_file(key_file)
        .map_err(|e| format!("{}: cannot read a PEM private key: {e}", key_file.display()))?;
    let provider = rustls::crypto::ring::default_provider();
    let certified = CertifiedKey::from_der(chain, key, &provider)
        .map_err(|e| format!("{} and {} do not make a usable pair: {e}", cert_file.display(), key_file.display()))?;
    Ok(certified)
}

/// Serves `router` on `listener` (over TLS with `tls`) within `limits` until `shutdown`
/// resolves; then stops accepting and waits up to 30 s for requests in flight.
pub async fn serve(
    mut listener: LimitedListener,
    router: Router,
    tls: Option<TlsAcceptor>,
    limits: ServerLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use axum::serve::Listener as _;
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(
            %addr,
            tls = tls.is_some(),
            max_connections = listener.available(),
            max_header_bytes = limits.max_header_bytes,
            max_headers = limits.max_headers,
            "HTTP server listening."
        );
    }
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, _peer) = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let service = TowerToHyperService::new(router.clone());
        let mut builder = http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_timeout)
            .max_buf_size(limits.max_header_bytes.max(8192))
            .max_headers(limits.max_headers);
        let watcher = graceful.watcher();
        let tls = tls.clone();
        tokio::spawn(async move {
            match tls {
                None => {
                    let _ = watcher.watch(builder.serve_connection(TokioIo::new(stream), service)).await;
                }
                Some(acceptor) => {
                    // A client that never finishes its handshake holds a connection no longer
                    // than one that never finishes its headers.
                    let Ok(Ok(stream)) = tokio::time::timeout(limits.header_timeout, acceptor.accept(stream)).await
                    else {
                        return;
                    };
                    let _ = watcher.watch(builder.serve_connection(TokioIo::new(stream), service)).await;
                }
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown()).await.is_err() {
        tracing::warn!("Requests were still in flight {DRAIN_TIMEOUT:?} after shutdown began; closing them.");
    }
    Ok(())
}
