//! An HTTP proxy in front of a real S3 server that can misbehave the way networks and odd
//! stores do, while the real server does the storing:
//!
//! - [`Fault::LosePutResponses`]: every PUT/POST reaches the server and is carried out, but
//!   its response never comes back (the connection is closed instead), as when a network
//!   path dies between the store's commit and its answer;
//! - [`Fault::AcceptRefusedCreateOnly`]: where the server refused a create-only write
//!   (`If-None-Match: *` answered 412 Precondition Failed), the client is told 200 OK, as a
//!   store that ignores the header answers. (The object is not replaced; the signature the
//!   client made covers the header, so the proxy cannot strip it.)
//!
//! The proxy runs on its own thread and runtime, so sync and async tests can use it alike.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::{TokioExecutor, TokioIo};

/// A way the proxy misbehaves, switched on and off while it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    LosePutResponses,
    AcceptRefusedCreateOnly,
}

#[derive(Default)]
struct Faults {
    lose_put_responses: AtomicBool,
    accept_refused: AtomicBool,
    lost: AtomicU64,
    accepted: AtomicU64,
}

impl Faults {
    fn flag(&self, f: Fault) -> &AtomicBool {
        match f {
            Fault::LosePutResponses => &self.lose_put_responses,
            Fault::AcceptRefusedCreateOnly => &self.accept_refused,
        }
    }
}

pub struct S3Proxy {
    /// `http://127.0.0.1:<port>`: use it where the server's endpoint would go.
    pub endpoint: String,
    upstream: String,
    faults: Arc<Faults>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl S3Proxy {
    /// Starts a proxy to `upstream` (an `http://host:port` endpoint), passing everything
    /// through until a fault is switched on.
    pub fn start(upstream: &str) -> S3Proxy {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let target: SocketAddr = upstream
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .parse()
            .expect("upstream must be http://ip:port");
        let faults = Arc::new(Faults::default());
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let f = faults.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(serve(listener, target, f, stopped));
        });
        S3Proxy {
            endpoint: format!("http://127.0.0.1:{port}"),
            upstream: upstream.trim_end_matches('/').to_string(),
            faults,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// `url` (a replica URL naming the upstream endpoint) pointed at this proxy instead.
    pub fn url(&self, url: &str) -> String {
        assert!(
            url.contains(&self.upstream),
            "{url} does not name {}",
            self.upstream
        );
        url.replace(&self.upstream, &self.endpoint)
    }

    pub fn set(&self, fault: Fault, on: bool) {
        self.faults.flag(fault).store(on, Ordering::SeqCst);
    }

    /// Responses dropped so far under [`Fault::LosePutResponses`].
    pub fn lost_responses(&self) -> u64 {
        self.faults.lost.load(Ordering::SeqCst)
    }

    /// Refusals turned into 200 OK so far under [`Fault::AcceptRefusedCreateOnly`].
    pub fn accepted_refusals(&self) -> u64 {
        self.faults.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for S3Proxy {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn serve(
    listener: std::net::TcpListener,
    target: SocketAddr,
    faults: Arc<Faults>,
    mut stopped: tokio::sync::oneshot::Receiver<()>,
) {
    let listener = tokio::net::TcpListener::from_std(listener).unwrap();
    let client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    loop {
        let conn = tokio::select! {
            c = listener.accept() => c,
            _ = &mut stopped => return,
        };
        let Ok((stream, _)) = conn else { continue };
        let (client, faults) = (client.clone(), faults.clone());
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                forward(req, target, client.clone(), faults.clone())
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

/// The response was deliberately lost: hyper closes the connection without answering.
#[derive(Debug)]
struct Lost;

impl std::fmt::Display for Lost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("response dropped by the fault proxy")
    }
}

impl std::error::Error for Lost {}

async fn forward(
    req: Request<Incoming>,
    target: SocketAddr,
    client: Client<HttpConnector, Full<Bytes>>,
    faults: Arc<Faults>,
) -> Result<Response<Full<Bytes>>, Lost> {
    let (mut parts, body) = req.into_parts();
    let body = match body.collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return Err(Lost),
    };
    let create_only = parts.headers.contains_key(hyper::header::IF_NONE_MATCH);
    let writes = parts.method == Method::PUT || parts.method == Method::POST;
    let pq = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/".into());
    parts.uri = format!("http://{target}{pq}").parse().unwrap();
    // The Host header stays as the client signed it.
    let up = Request::from_parts(parts, Full::new(body));
    let resp = match client.request(up).await {
        Ok(r) => r,
        Err(e) => return Ok(status(StatusCode::BAD_GATEWAY, e.to_string())),
    };
    let (parts, body) = resp.into_parts();
    let body = match body.collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => return Ok(status(StatusCode::BAD_GATEWAY, e.to_string())),
    };
    if writes && faults.lose_put_responses.load(Ordering::SeqCst) {
        faults.lost.fetch_add(1, Ordering::SeqCst);
        return Err(Lost);
    }
    if writes
        && create_only
        && parts.status == StatusCode::PRECONDITION_FAILED
        && faults.accept_refused.load(Ordering::SeqCst)
    {
        faults.accepted.fetch_add(1, Ordering::SeqCst);
        return Ok(status(StatusCode::OK, String::new()));
    }
    Ok(Response::from_parts(parts, Full::new(body)))
}

fn status(code: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = code;
    r
}
