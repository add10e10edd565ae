//! `sqlite-kube-operator`: the SqliteDatabase controller with leader election, metrics and
//! health endpoints.

use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use anyhow::Context as _;
use clap::Parser;
use k8s_openapi::api::coordination::v1::Lease;
use kube::{Api, Client};
use tracing::{error, info};

use operator::controller::{self, Scope};
use operator::http::{self, HttpState};
use operator::metrics::Metrics;
use operator::{leader, telemetry, Context, Settings};

#[derive(Parser, Debug)]
#[command(version, about = "Reconciles SqliteDatabase resources")]
struct Args {
    /// Address for /metrics, /healthz and /readyz.
    #[arg(long, env = "METRICS_ADDR", default_value = "0.0.0.0:8080")]
    metrics_addr: SocketAddr,
    /// Log format: text or json.
    #[arg(long, env = "LOG_FORMAT", default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
    /// Watch only this namespace (default: all namespaces).
    #[arg(long, env = "WATCH_NAMESPACE")]
    namespace: Option<String>,
    /// Run only while holding the leader Lease (safe with several replicas).
    #[arg(long, env = "LEADER_ELECTION", default_value_t = true, action = clap::ArgAction::Set)]
    leader_election: bool,
    /// Namespace of the leader Lease (default: the pod's namespace).
    #[arg(long, env = "POD_NAMESPACE", default_value = "sqlite-kube-system")]
    leader_namespace: String,
    /// Name of the leader Lease.
    #[arg(long, default_value = "sqlite-kube-operator")]
    leader_lease: String,
    /// This replica's identity in the leader Lease (default: the pod name).
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
    /// Leader lease duration.
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    leader_lease_duration: std::time::Duration,
    /// How often a healthy database's status is refreshed from its replica.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    resync: std::time::Duration,
    /// Let databases that set `spec.replica.useOperatorIdentity` be observed (and deleted)
    /// with the operator's own cloud identity. Off: a database without a credentials Secret
    /// is not observed, since any user who may create one could otherwise reach every
    /// bucket the operator can.
    #[arg(long, env = "ALLOW_OPERATOR_IDENTITY", default_value_t = false, action = clap::ArgAction::Set)]
    allow_operator_identity: bool,
    /// Reconciles running at once.
    #[arg(long, default_value_t = 16)]
    concurrency: u16,
    /// Serve the pod admission webhook with `tls.crt`/`tls.key` from this directory
    /// (a mounted Secret). Without it the webhook is off.
    #[arg(long, env = "WEBHOOK_CERT_DIR")]
    webhook_cert_dir: Option<std::path::PathBuf>,
    /// Serve the webhook with a certificate the operator issues itself (no cert-manager),
    /// for this Service name in the operator's namespace (POD_NAMESPACE). Ignored with
    /// --webhook-cert-dir.
    #[arg(long, env = "WEBHOOK_SERVICE")]
    webhook_service: Option<String>,
    /// Self-issued mode: the Secret that keeps the CA and the serving certificate.
    #[arg(long, default_value = "sqlite-kube-webhook-tls")]
    webhook_secret: String,
    /// Self-issued mode: the MutatingWebhookConfiguration whose caBundle is set.
    #[arg(long, default_value = "sqlite-kube")]
    webhook_config: String,
    /// Self-issued mode: more names or IPs for the certificate (comma-separated).
    #[arg(long, value_delimiter = ',')]
    webhook_extra_names: Vec<String>,
    /// Self-issued mode: where the certificate files are written for the server.
    #[arg(long, default_value = "/tmp/sqlite-kube-webhook")]
    webhook_work_dir: std::path::PathBuf,
    /// How often the webhook certificate files are read again (a rotated Secret is picked
    /// up without a restart).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    webhook_cert_reload: std::time::Duration,
    /// Address of the webhook's HTTPS server.
    #[arg(long, env = "WEBHOOK_ADDR", default_value = "0.0.0.0:9443")]
    webhook_addr: SocketAddr,
    /// The hydrator image the webhook injects.
    #[arg(long, env = "HYDRATOR_IMAGE", default_value = operator::DEFAULT_HYDRATOR_IMAGE)]
    hydrator_image: String,
    /// Inject the hydrator as a native sidecar: auto (by server version, >= 1.29), true, false.
    #[arg(long, default_value = "auto", value_parser = ["auto", "true", "false"])]
    native_sidecars: String,
}

fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    crds::parse_duration(s).map_err(|e| e.to_string())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    telemetry::init(args.log_format == "json");
    let client = Client::try_default()
        .await
        .context("no Kubernetes configuration (in-cluster service account or KUBECONFIG)")?;
    let identity = args.identity.clone().unwrap_or_else(|| {
        format!(
            "{}-{}",
            std::env::var("HOSTNAME").unwrap_or_else(|_| "operator".into()),
            std::process::id()
        )
    });
    let metrics = Arc::new(Metrics::default());
    let ready = Arc::new(AtomicBool::new(false));
    let addr = http::serve(
        args.metrics_addr,
        HttpState {
            metrics: metrics.clone(),
            ready: ready.clone(),
        },
    )
    .await
    .with_context(|| format!("binding {}", args.metrics_addr))?;
    info!(%addr, %identity, "serving /metrics /healthz /readyz");

    // The webhook's certificate: files (cert-manager) or issued by the operator itself.
    let cert_dir = match (&args.webhook_cert_dir, &args.webhook_service) {
        (Some(dir), _) => Some(dir.clone()),
        (None, Some(service)) => {
            let cfg = operator::webhook::certs::SelfIssued {
                namespace: args.leader_namespace.clone(),
                secret: args.webhook_secret.clone(),
                names: operator::webhook::certs::SelfIssued::service_names(
                    service,
                    &args.leader_namespace,
                    &args.webhook_extra_names,
                ),
                webhook_config: Some(args.webhook_config.clone()),
                dir: args.webhook_work_dir.clone(),
            };
            operator::webhook::certs::ensure(&client, &cfg)
                .await
                .context("the webhook's self-issued certificate")?;
            tokio::spawn(operator::webhook::certs::keep_fresh(
                client.clone(),
                cfg,
                std::time::Duration::from_secs(3600),
            ));
            Some(args.webhook_work_dir.clone())
        }
        (None, None) => None,
    };
    if let Some(dir) = &cert_dir {
        let native_sidecar = match args.native_sidecars.as_str() {
            "true" => true,
            "false" => false,
            _ => {
                let v = client
                    .apiserver_version()
                    .await
                    .context("reading the server version")?;
                let minor = v.minor.trim_end_matches('+').parse().unwrap_or(0);
                operator::webhook::inject::supports_native_sidecars(minor)
            }
        };
        let (tls, resolver) =
            operator::webhook::tls::server_config(&dir.join("tls.crt"), &dir.join("tls.key"))
                .await?;
        let router = operator::webhook::router(operator::webhook::WebhookState {
            client: client.clone(),
            config: operator::webhook::inject::InjectConfig {
                hydrator_image: args.hydrator_image.clone(),
                native_sidecar,
            },
            metrics: metrics.clone(),
            cache: Some(operator::webhook::database_cache(
                client.clone(),
                args.namespace.as_deref(),
            )),
        });
        let limits = operator::webhook::tls::Limits {
            reload: args.webhook_cert_reload,
            ..Default::default()
        };
        let waddr =
            operator::webhook::tls::serve(args.webhook_addr, tls, resolver, router, limits).await?;
        info!(addr = %waddr, native_sidecar, "serving the pod webhook at /mutate-pods");
    }

    let settings = Settings {
        resync: args.resync,
        allow_operator_identity: args.allow_operator_identity,
        ..Settings::default()
    };
    let ctx = Arc::new(Context::new(
        client.clone(),
        metrics.clone(),
        settings,
        &identity,
    ));
    let scope = match &args.namespace {
        Some(ns) => Scope::Namespace(ns.clone()),
        None => Scope::All,
    };
    let work = {
        let ready = ready.clone();
        async move {
            if let Err(e) = controller::run(ctx, scope, args.concurrency, ready).await {
                error!(error = %e, "controller stopped");
                std::process::exit(1);
            }
        }
    };
    if args.leader_election {
        // A standby is healthy and ready: it serves metrics and waits for the lease.
        ready.store(true, std::sync::atomic::Ordering::Relaxed);
        let lock = lease::LeaseLock::new(
            Api::<Lease>::namespaced(client, &args.leader_namespace),
            &args.leader_namespace,
            &args.leader_lease,
            &identity,
            args.leader_lease_duration,
        );
        leader::run_as_leader(lock, metrics, shutdown_signal(), work).await?;
    } else {
        tokio::select! {
            _ = work => {}
            _ = shutdown_signal() => {}
        }
    }
    info!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing a SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
