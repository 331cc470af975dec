//! `gw-proxy`: a stateless proxy configured over xDS by the gw control plane.

use clap::Parser;

/// mimalloc: measurably faster than glibc malloc for hyper's many small, short-lived buffers.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use gw_proxy::server::{Proxy, ProxyConfig, XdsTls};
use gw_proxy::xds::Mode;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// gw-proxy: routes tenant traffic with config streamed from the gw control plane.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Control-plane xDS URL.
    #[arg(long, env = "GW_XDS", default_value = "http://127.0.0.1:18000")]
    xds: String,
    /// PEM CA of the control plane's certificate (for an https:// --xds).
    #[arg(long, env = "GW_XDS_CA")]
    xds_ca: Option<PathBuf>,
    /// PEM certificate of this proxy, for a control plane that requires client certificates.
    #[arg(long, env = "GW_XDS_CERT", requires_all = ["xds_key", "xds_ca"])]
    xds_cert: Option<PathBuf>,
    /// The PEM key of --xds-cert.
    #[arg(long, env = "GW_XDS_KEY", requires = "xds_cert")]
    xds_key: Option<PathBuf>,
    /// Name to verify the control plane's certificate against (default: the --xds host).
    #[arg(long, env = "GW_XDS_SERVER_NAME", requires = "xds_ca")]
    xds_server_name: Option<String>,
    /// xDS node id (default: the host name).
    #[arg(long, env = "GW_NODE_ID")]
    node_id: Option<String>,
    /// xDS node cluster: which Listeners this proxy gets.
    #[arg(long, env = "GW_NODE_CLUSTER", default_value = "ingress")]
    node_cluster: String,
    /// Traffic listener (overrides the Listener's address).
    #[arg(long, env = "GW_LISTEN", default_value = "0.0.0.0:8080")]
    listen: SocketAddr,
    /// Admin listener: /ready, /metrics, /config_dump, /clusters.
    #[arg(long, env = "GW_ADMIN", default_value = "127.0.0.1:19000")]
    admin: SocketAddr,
    /// Workers serving traffic (default: one per CPU, as Envoy's --concurrency). Each is a
    /// single-threaded event loop with its own listening socket (SO_REUSEPORT) and its own
    /// upstream connections; the first is the main thread, which also runs xDS, admin, health
    /// checks and reports.
    #[arg(long, env = "GW_WORKERS", value_parser = clap::value_parser!(u16).range(1..=1024))]
    workers: Option<u16>,
    /// Keep the last accepted config here and start from it when the control plane is down.
    #[arg(long, env = "GW_CONFIG_CACHE")]
    config_cache: Option<PathBuf>,
    /// xDS protocol variant.
    #[arg(long, env = "GW_XDS_MODE", default_value = "delta", value_parser = ["delta", "sotw"])]
    xds_mode: String,
    /// How often stats go to the control plane.
    #[arg(long, env = "GW_STATS_INTERVAL", default_value = "10s", value_parser = humantime_duration)]
    stats_interval: Duration,
    /// Fraction of successful requests sent as access logs (errors always are).
    #[arg(long, env = "GW_ACCESS_LOG_SAMPLE", default_value_t = 0.01)]
    access_log_sample: f64,
    /// How long SIGTERM waits for in-flight requests.
    #[arg(long, env = "GW_DRAIN_TIMEOUT", default_value = "20s", value_parser = humantime_duration)]
    drain_timeout: Duration,
    /// Close a client connection with no request in flight for this long, when the listener's
    /// HTTP connection manager sets no idle timeout (Envoy's default, 1h; 0s: never).
    #[arg(long, env = "GW_IDLE_TIMEOUT", default_value = "1h", value_parser = humantime_duration)]
    idle_timeout: Duration,
    /// Log format.
    #[arg(long, env = "GW_LOG_FORMAT", default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
}

fn humantime_duration(s: &str) -> Result<Duration, String> {
    gw_proto::model::parse_duration(s)
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let fmt = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if args.log_format == "json" {
        fmt.json().init();
    } else {
        fmt.init();
    }
    // The main thread's runtime is worker 0 and runs the control tasks; `Proxy::start` starts
    // a thread for each other worker.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(run(args))
}

async fn run(args: Args) -> anyhow::Result<()> {
    let node_id = args
        .node_id
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| format!("gw-proxy-{}", std::process::id()));
    let xds_tls = args.xds_ca.map(|ca| XdsTls {
        ca,
        identity: args.xds_cert.zip(args.xds_key),
        server_name: args.xds_server_name,
    });
    let cfg = ProxyConfig {
        xds: Some(args.xds),
        xds_tls,
        node_id,
        node_cluster: args.node_cluster,
        listen: args.listen,
        admin: args.admin,
        mode: if args.xds_mode == "sotw" {
            Mode::Sotw
        } else {
            Mode::Delta
        },
        cache_dir: args.config_cache,
        stats_interval: args.stats_interval,
        access_log_sample: args.access_log_sample,
        drain_timeout: args.drain_timeout,
        idle_timeout: args.idle_timeout,
        workers: args.workers.map_or_else(
            || std::thread::available_parallelism().map_or(1, usize::from),
            usize::from,
        ),
    };
    let cfg_workers = cfg.workers;
    let proxy = Proxy::start(cfg).await?;
    let stop = gw_proto::process::shutdown_signal();
    println!(
        "gw-proxy: traffic on {} ({} worker{}), admin on {}",
        proxy.listen_addr(),
        cfg_workers,
        if cfg_workers == 1 { "" } else { "s" },
        proxy.admin_addr()
    );
    stop.await;
    tracing::info!("draining");
    proxy.shutdown().await;
    Ok(())
}
