//! A TCP proxy to the API server that a test can cut, to make the API server unreachable
//! for one pod only (its kubeconfig points here).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::{anyhow, Result};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

pub struct Proxy {
    pub port: u16,
    /// False while cut: new connections are dropped at once.
    open: Arc<AtomicBool>,
    accept: JoinHandle<()>,
    conns: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Proxy {
    pub async fn start(target: SocketAddr) -> Result<Proxy> {
        let l = TcpListener::bind("127.0.0.1:0").await?;
        let port = l.local_addr()?.port();
        let conns: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let open = Arc::new(AtomicBool::new(true));
        let (c, o) = (conns.clone(), open.clone());
        let accept = tokio::spawn(async move {
            while let Ok((mut down, _)) = l.accept().await {
                if !o.load(Ordering::SeqCst) {
                    drop(down);
                    continue;
                }
                let h = tokio::spawn(async move {
                    if let Ok(mut up) = TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut down, &mut up).await;
                    }
                });
                c.lock().unwrap().push(h);
            }
        });
        Ok(Proxy {
            port,
            open,
            accept,
            conns,
        })
    }

    /// Drops every open connection and refuses new ones: the API server is unreachable.
    pub fn cut(&self) {
        self.open.store(false, Ordering::SeqCst);
        for h in self.conns.lock().unwrap().drain(..) {
            h.abort();
        }
    }

    /// Lets connections through again after [`Proxy::cut`].
    pub fn restore(&self) {
        self.open.store(true, Ordering::SeqCst);
    }

    /// Writes a copy of the kubeconfig at `src` whose server is this proxy.
    pub fn kubeconfig(&self, src: &Path, dest: &Path) -> Result<()> {
        let cfg = std::fs::read_to_string(src)?;
        let server = server_line(&cfg).ok_or_else(|| anyhow!("no server in {}", src.display()))?;
        std::fs::write(
            dest,
            cfg.replace(&server, &format!("https://127.0.0.1:{}", self.port)),
        )?;
        Ok(())
    }
}

/// The first `https://…` server URL in a kubeconfig (block or flow YAML).
fn server_line(cfg: &str) -> Option<String> {
    let start = cfg.find("https://")?;
    let rest = &cfg[start..];
    let end = rest
        .find(|c: char| c == '"' || c == '\'' || c == ',' || c == '}' || c.is_whitespace())
        .unwrap_or(rest.len());
    Some(rest[..end].to_string())
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut();
    }
}

/// The API server's address from a kubeconfig (for [`Proxy::start`]).
pub fn api_server_addr(kubeconfig: &Path) -> Result<SocketAddr> {
    let cfg = std::fs::read_to_string(kubeconfig)?;
    let server =
        server_line(&cfg).ok_or_else(|| anyhow!("no server in {}", kubeconfig.display()))?;
    Ok(server
        .trim_start_matches("https://")
        .trim_end_matches('/')
        .replace("localhost", "127.0.0.1")
        .parse()?)
}
