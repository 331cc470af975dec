//! `gw-control-plane`: userdb + gateway.v1 API + xDS for the proxy fleet.

use anyhow::Context;
use clap::Parser;
use gw_control_plane::server::{Config, ControlPlane};
use std::net::SocketAddr;

/// gw control plane: keeps config in userdb and streams it to proxies as Envoy xDS.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// userdb URL: sqlite://PATH (created and migrated on first start) or postgres://…
    #[arg(long, env = "GW_DB", default_value = "sqlite://userdb.sqlite")]
    db: String,
    /// gRPC listen address: management API, xDS and telemetry.
    #[arg(long, env = "GW_GRPC", default_value = "127.0.0.1:18000")]
    grpc: SocketAddr,
    /// HTTP listen address: /metrics and /healthz.
    #[arg(long, env = "GW_HTTP", default_value = "127.0.0.1:18001")]
    http: SocketAddr,
    /// Width of a stats rollup bucket.
    #[arg(long, env = "GW_ROLLUP_RESOLUTION", default_value = "1m", value_parser = duration)]
    rollup_resolution: std::time::Duration,
    /// How long events, access logs, rollups and resolved alerts are kept.
    #[arg(long, env = "GW_RETENTION", default_value = "7d", value_parser = duration)]
    retention: std::time::Duration,
    /// How often alert rules are evaluated.
    #[arg(long, env = "GW_EVAL_INTERVAL", default_value = "5s", value_parser = duration)]
    eval_interval: std::time::Duration,
    /// Watch Kubernetes EndpointSlices for clusters with `spec.kubernetes` (the pod's service
    /// account in a cluster, else KUBECONFIG or ~/.kube/config).
    #[arg(long, env = "GW_KUBERNETES")]
    kubernetes: bool,
    /// Require a bearer token on every management API call (roles admin, tenant-admin, viewer;
    /// `gwctl tokens create`). xDS and telemetry stay open to proxies.
    #[arg(long, env = "GW_AUTH")]
    auth: bool,
    /// Makes (or keeps) an admin token named `admin` with this secret at start-up, so a fresh
    /// userdb with --auth has a way in. Prefer the environment variable to the flag.
    #[arg(long, env = "GW_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
    /// Serve gRPC (API, xDS, telemetry) over TLS with this PEM certificate chain.
    #[arg(long, env = "GW_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<std::path::PathBuf>,
    /// The certificate's PEM private key.
    #[arg(long, env = "GW_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<std::path::PathBuf>,
    /// Require client certificates chaining to this PEM CA (mTLS) from every gRPC client.
    #[arg(long, env = "GW_TLS_CLIENT_CA", requires = "tls_cert")]
    tls_client_ca: Option<std::path::PathBuf>,
    /// Log format.
    #[arg(long, env = "GW_LOG_FORMAT", default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
}

fn duration(s: &str) -> Result<std::time::Duration, String> {
    let d = gw_proto::model::parse_duration(s)?;
    if d.is_zero() {
        return Err("must be > 0".into());
    }
    Ok(d)
}

fn init_tracing(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    init_tracing(&args.log_format);
    let mut cfg = Config {
        grpc: args.grpc,
        http: args.http,
        ..Config::new(args.db)
    };
    cfg.ingest.resolution = args.rollup_resolution;
    cfg.monitoring.retention = args.retention;
    cfg.monitoring.interval = args.eval_interval;
    cfg.auth = args.auth;
    if let (Some(cert), Some(key)) = (args.tls_cert, args.tls_key) {
        cfg.tls = Some(gw_control_plane::server::TlsFiles {
            cert,
            key,
            client_ca: args.tls_client_ca,
        });
    }
    cfg.admin_token = args.admin_token.filter(|t| !t.is_empty());
    if args.kubernetes {
        let source = gw_control_plane::discovery::KubeSource::connect()
            .await
            .context("--kubernetes: connecting to the Kubernetes API server")?;
        cfg.discovery.source = Some(std::sync::Arc::new(source));
    }
    let cp = ControlPlane::start(cfg).await?;
    let stop = gw_proto::process::shutdown_signal();
    println!(
        "gw-control-plane: gRPC on {} (API, xDS), HTTP on {} (/metrics, /healthz)",
        cp.grpc_addr(),
        cp.http_addr()
    );
    stop.await;
    tracing::info!("shutting down");
    cp.shutdown().await;
    Ok(())
}
