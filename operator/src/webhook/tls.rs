//! HTTPS for the webhook: rustls (aws-lc-rs) with a certificate and key read from PEM files
//! and reloaded while serving (a rotated Secret reaches the mounted files without a
//! restart), behind limits that keep slow or silent clients from exhausting the server:
//! a TLS handshake deadline, a deadline for request headers and for each whole request,
//! and a cap on open connections.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use rustls_cert_reloadable_resolver::{key_provider, CertifiedKeyLoader, ReloadableResolver};
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;
use tracing::{debug, info, warn};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("reading {path}: {reason}")]
    Pem { path: String, reason: String },
    #[error("TLS configuration: {0}")]
    Config(#[from] rustls::Error),
    #[error("binding {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// Limits of the webhook server.
#[derive(Debug, Clone)]
pub struct Limits {
    /// A client must finish the TLS handshake within this.
    pub handshake: Duration,
    /// ... send a request's headers within this ...
    pub headers: Duration,
    /// ... and the whole request (body included) is answered within this.
    pub request: Duration,
    /// Connections open at once; more are closed at once (the API server retries).
    pub connections: usize,
    /// How often the certificate files are read again.
    pub reload: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            handshake: Duration::from_secs(10),
            headers: Duration::from_secs(10),
            // The API server's own webhook timeout is at most 30 s (10 s by default).
            request: Duration::from_secs(30),
            connections: 256,
            reload: Duration::from_secs(10),
        }
    }
}

/// A PEM file holding a certificate chain or a private key.
pub struct PemFile(PathBuf);

impl PemFile {
    async fn read(&self) -> Result<Vec<u8>, TlsError> {
        tokio::fs::read(&self.0).await.map_err(|e| self.err(&e))
    }

    fn err(&self, e: &dyn std::fmt::Display) -> TlsError {
        TlsError::Pem {
            path: self.0.display().to_string(),
            reason: e.to_string(),
        }
    }
}

impl rustls_cert_read::ReadCerts for PemFile {
    type Error = TlsError;

    async fn read_certs(&self) -> Result<Vec<CertificateDer<'static>>, TlsError> {
        let pem = self.read().await?;
        let certs: Vec<_> = CertificateDer::pem_slice_iter(&pem)
            .collect::<Result<_, _>>()
            .map_err(|e| self.err(&e))?;
        if certs.is_empty() {
            return Err(self.err(&"no certificate in file"));
        }
        Ok(certs)
    }
}

impl rustls_cert_read::ReadKey for PemFile {
    type Error = TlsError;

    async fn read_key(&self) -> Result<PrivateKeyDer<'static>, TlsError> {
        let pem = self.read().await?;
        PrivateKeyDer::from_pem_slice(&pem).map_err(|e| self.err(&e))
    }
}

/// The certificate resolver: the key pair as last read from the files.
pub type CertResolver = ReloadableResolver<CertifiedKeyLoader<key_provider::Dyn, PemFile, PemFile>>;

/// The server config for `tls.crt` / `tls.key` (the key names of a `kubernetes.io/tls`
/// Secret), and its resolver for [`serve`] to reload.
pub async fn server_config(
    cert: &Path,
    key: &Path,
) -> Result<(rustls::ServerConfig, Arc<CertResolver>), TlsError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let loader = CertifiedKeyLoader {
        key_provider: key_provider::Dyn(provider.key_provider),
        key_reader: PemFile(key.to_path_buf()),
        certs_reader: PemFile(cert.to_path_buf()),
    };
    let resolver = Arc::new(
        ReloadableResolver::init(loader)
            .await
            .map_err(|e| TlsError::Pem {
                path: format!("{} / {}", cert.display(), key.display()),
                reason: e.to_string(),
            })?,
    );
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(resolver.clone());
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok((cfg, resolver))
}

/// Serves `router` over HTTPS on `addr` within `limits`, reloading the certificate from
/// `resolver` every `limits.reload`; returns the bound address.
pub async fn serve(
    addr: SocketAddr,
    cfg: rustls::ServerConfig,
    resolver: Arc<CertResolver>,
    router: Router,
    limits: Limits,
) -> Result<SocketAddr, TlsError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| TlsError::Bind { addr, source })?;
    let local = listener
        .local_addr()
        .map_err(|source| TlsError::Bind { addr, source })?;
    tokio::spawn(reload_every(resolver, limits.reload));
    let router = router.layer(tower_http::timeout::TimeoutLayer::with_status_code(
        axum::http::StatusCode::REQUEST_TIMEOUT,
        limits.request,
    ));
    let acceptor = TlsAcceptor::from(Arc::new(cfg));
    let slots = Arc::new(tokio::sync::Semaphore::new(limits.connections));
    tokio::spawn(async move {
        loop {
            let Ok((tcp, peer)) = listener.accept().await else {
                continue;
            };
            let Ok(slot) = slots.clone().try_acquire_owned() else {
                warn!(%peer, limit = limits.connections, "too many webhook connections; closing this one");
                continue;
            };
            let _ = tcp.set_nodelay(true);
            let (acceptor, router, limits) = (acceptor.clone(), router.clone(), limits.clone());
            tokio::spawn(async move {
                let _slot = slot;
                let tls = match tokio::time::timeout(limits.handshake, acceptor.accept(tcp)).await {
                    Ok(Ok(t)) => t,
                    Ok(Err(e)) => {
                        debug!(%peer, error = %e, "TLS handshake failed");
                        return;
                    }
                    Err(_) => {
                        debug!(%peer, "TLS handshake not finished in time; closed");
                        return;
                    }
                };
                let svc = TowerToHyperService::new(router);
                if let Err(e) = hyper::server::conn::http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(limits.headers)
                    .serve_connection(TokioIo::new(tls), svc)
                    .await
                {
                    debug!(%peer, error = %e, "webhook connection");
                }
            });
        }
    });
    Ok(local)
}

/// Reads the certificate files again every `every`. A failed read (a rotation half
/// written) keeps the certificate in use and is retried next time.
async fn reload_every(resolver: Arc<CertResolver>, every: Duration) {
    let mut last_error = None;
    loop {
        tokio::time::sleep(every).await;
        match resolver.reload().await {
            Ok(()) => {
                if last_error.take().is_some() {
                    info!("webhook certificate read again");
                }
            }
            Err(e) => {
                let msg = e.to_string();
                if last_error.as_ref() != Some(&msg) {
                    warn!(error = %msg, "could not read the webhook certificate; serving the previous one");
                }
                last_error = Some(msg);
            }
        }
    }
}
