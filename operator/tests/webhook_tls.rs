//! The webhook's HTTPS server under slow, silent and too many clients, and across a
//! certificate rotation. The server is the operator's own (`webhook::tls::serve`) with
//! short limits; clients are raw TCP and rustls.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::routing::get;
use axum::Router;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};

use operator::webhook::tls::{self, Limits};

fn limits() -> Limits {
    Limits {
        handshake: Duration::from_secs(1),
        headers: Duration::from_secs(1),
        request: Duration::from_secs(2),
        connections: 8,
        reload: Duration::from_millis(200),
    }
}

/// Certificates for 127.0.0.1 signed by a fresh CA in `dir`.
fn certs(dir: &Path) {
    e2e::cluster::webhook_certificates(dir).expect("openssl makes certificates");
}

async fn start(dir: &Path) -> std::net::SocketAddr {
    let (cfg, resolver) = tls::server_config(&dir.join("tls.crt"), &dir.join("tls.key"))
        .await
        .unwrap();
    let router = Router::new().route("/healthz", get(|| async { "ok" }));
    tls::serve(
        "127.0.0.1:0".parse().unwrap(),
        cfg,
        resolver,
        router,
        limits(),
    )
    .await
    .unwrap()
}

/// A TLS client trusting only the CA in `ca`.
fn client(ca: &Path) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    tokio_rustls::TlsConnector::from(Arc::new(cfg))
}

/// `GET /healthz` over TLS trusting only `ca`; the body, or the error.
async fn get_healthz(addr: std::net::SocketAddr, ca: &Path) -> Result<String, String> {
    let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let name = ServerName::try_from("127.0.0.1").unwrap();
    let mut s = client(ca)
        .connect(name, tcp)
        .await
        .map_err(|e| e.to_string())?;
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .map_err(|e| e.to_string())?;
    let mut out = String::new();
    s.read_to_string(&mut out)
        .await
        .map_err(|e| e.to_string())?;
    Ok(out)
}

/// Waits for the server to close `s`; how long that took.
async fn closed_after(mut s: TcpStream, limit: Duration) -> Duration {
    let t = Instant::now();
    let mut buf = [0u8; 64];
    loop {
        match tokio::time::timeout(limit, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return t.elapsed(),
            Ok(Ok(_)) => continue,
            Err(_) => panic!("the server kept a silent connection open for {limit:?}"),
        }
    }
}

/// A client that connects and says nothing is dropped at the handshake deadline; while
/// the connection cap is full of such clients, a new one is refused at once, and once
/// they are dropped, real requests are served again.
#[tokio::test]
async fn silent_clients_are_dropped_and_cannot_exhaust_the_server() {
    let dir = tempfile::tempdir().unwrap();
    certs(dir.path());
    let addr = start(dir.path()).await;
    let ca = dir.path().join("ca.crt");
    assert!(get_healthz(addr, &ca).await.unwrap().ends_with("ok"));

    let mut silent = Vec::new();
    for _ in 0..limits().connections {
        silent.push(TcpStream::connect(addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    // Every slot is taken: the next connection is closed without a handshake.
    let extra = TcpStream::connect(addr).await.unwrap();
    let d = closed_after(extra, Duration::from_secs(5)).await;
    assert!(
        d < Duration::from_millis(900),
        "a connection over the cap lived {d:?}"
    );
    // The silent ones are dropped at the handshake deadline (1 s), not kept.
    for s in silent {
        let d = closed_after(s, Duration::from_secs(5)).await;
        assert!(
            d < Duration::from_secs(3),
            "a silent client held a slot {d:?}"
        );
    }
    assert!(get_healthz(addr, &ca).await.unwrap().ends_with("ok"));
}

/// A client that finishes the handshake and then sends its headers one byte at a time
/// (slowloris) is cut off at the header deadline.
#[tokio::test]
async fn slow_headers_are_cut_off() {
    let dir = tempfile::tempdir().unwrap();
    certs(dir.path());
    let addr = start(dir.path()).await;
    let tcp = TcpStream::connect(addr).await.unwrap();
    let mut s = client(&dir.path().join("ca.crt"))
        .connect(ServerName::try_from("127.0.0.1").unwrap(), tcp)
        .await
        .unwrap();
    let t = Instant::now();
    let request =
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    let mut cut = false;
    for b in request {
        if s.write_all(&[*b]).await.is_err() || s.flush().await.is_err() {
            cut = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
        if t.elapsed() > Duration::from_secs(6) {
            break;
        }
    }
    if !cut {
        // The write side may stay open a moment longer; the server must have closed.
        let mut buf = Vec::new();
        let r = tokio::time::timeout(Duration::from_secs(3), s.read_to_end(&mut buf)).await;
        let answered_ok = matches!(r, Ok(Ok(_))) && String::from_utf8_lossy(&buf).ends_with("ok");
        assert!(
            !answered_ok,
            "a slowloris request was served after {:?}",
            t.elapsed()
        );
    }
    assert!(
        t.elapsed() < Duration::from_secs(6),
        "the slow client was kept {:?}",
        t.elapsed()
    );
}

/// The certificate files are replaced (as the kubelet does when the Secret changes): new
/// handshakes present the new certificate without a restart.
#[tokio::test]
async fn a_rotated_certificate_is_served_without_a_restart() {
    let (old, new) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    certs(old.path());
    certs(new.path());
    let serving = tempfile::tempdir().unwrap();
    for f in ["tls.crt", "tls.key"] {
        std::fs::copy(old.path().join(f), serving.path().join(f)).unwrap();
    }
    let addr = start(serving.path()).await;
    let (old_ca, new_ca) = (old.path().join("ca.crt"), new.path().join("ca.crt"));
    assert!(get_healthz(addr, &old_ca).await.is_ok());
    assert!(
        get_healthz(addr, &new_ca).await.is_err(),
        "the CAs must differ"
    );
    // Replace key and certificate (each atomically, as a rename).
    for f in ["tls.key", "tls.crt"] {
        let tmp = serving.path().join(format!(".{f}.new"));
        std::fs::copy(new.path().join(f), &tmp).unwrap();
        std::fs::rename(&tmp, serving.path().join(f)).unwrap();
    }
    let t = Instant::now();
    loop {
        if get_healthz(addr, &new_ca).await.is_ok() {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "the new certificate was not served within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        get_healthz(addr, &old_ca).await.is_err(),
        "the old certificate is still served"
    );
}
