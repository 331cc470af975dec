//! Wiring: the proxy listener, the admin listener, the xDS client and the reporter.
//! [`Proxy::start`] is what `main` runs and what tests start on `127.0.0.1:0`.

use crate::admin;
use crate::config::{self, Registries, Resources, RuntimeConfig};
use crate::proxy;
use crate::report::{AccessRecord, LogSink};
use crate::xds::{self, Mode, XdsOptions};
use arc_swap::ArcSwap;
use gw_proto::envoy::pb::envoy::config::core::v3::Node;
use hyper_util::rt::TokioExecutor;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

/// Resolves once `stop` turns true (or its sender is gone).
pub async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// How to run a proxy.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    /// Control-plane URL; `None` runs without xDS (tests feed resources directly).
    pub xds: Option<String>,
    /// TLS to the control plane (an `https://` URL needs it).
    pub xds_tls: Option<XdsTls>,
    /// `node.id`.
    pub node_id: String,
    /// `node.cluster` (which listeners the control plane gives us).
    pub node_cluster: String,
    /// Where to serve traffic.
    pub listen: SocketAddr,
    /// Where to serve the admin endpoints.
    pub admin: SocketAddr,
    /// Delta or SotW.
    pub mode: Mode,
    /// Config cache directory.
    pub cache_dir: Option<PathBuf>,
    /// How often stats are sent to the control plane.
    pub stats_interval: Duration,
    /// Fraction of successful requests sent as access logs (errors always are).
    pub access_log_sample: f64,
    /// How long SIGTERM waits for in-flight requests.
    pub drain_timeout: Duration,
    /// How long a client connection may go with no request in flight before it is closed, when
    /// the listener's HCM sets no idle timeout (`0s`: never).
    pub idle_timeout: Duration,
    /// Workers serving traffic, each with a listening socket of its own on `listen`
    /// (`SO_REUSEPORT`: the kernel spreads new connections over them) and upstream connections
    /// of its own. Worker 0 is the caller's runtime, which also runs the control tasks (xDS,
    /// admin, health checks, reports); each other worker is a thread with a single-threaded
    /// runtime. 0 or 1: the caller's runtime alone, one listening socket.
    pub workers: usize,
}

/// TLS to the control plane: the CA that signed its certificate, and this proxy's own
/// certificate for a control plane that requires client certificates (mTLS).
#[derive(Debug, Clone)]
pub struct XdsTls {
    /// PEM CA certificate(s) the control plane's certificate must chain to.
    pub ca: PathBuf,
    /// PEM certificate chain and key of this proxy (mTLS).
    pub identity: Option<(PathBuf, PathBuf)>,
    /// The name to verify the control plane's certificate against (default: the URL's host).
    pub server_name: Option<String>,
}

impl XdsTls {
    fn client_config(&self) -> anyhow::Result<tonic::transport::ClientTlsConfig> {
        use anyhow::Context;
        let read = |p: &PathBuf, what: &str| {
            std::fs::read(p).with_context(|| format!("{what}: reading {}", p.display()))
        };
        let mut cfg = tonic::transport::ClientTlsConfig::new().ca_certificate(
            tonic::transport::Certificate::from_pem(read(&self.ca, "--xds-ca")?),
        );
        if let Some((cert, key)) = &self.identity {
            cfg = cfg.identity(tonic::transport::Identity::from_pem(
                read(cert, "--xds-cert")?,
                read(key, "--xds-key")?,
            ));
        }
        if let Some(name) = &self.server_name {
            cfg = cfg.domain_name(name.clone());
        }
        Ok(cfg)
    }
}

/// The channel to the control plane: plaintext for `http://`, TLS for `https://` (which needs
/// `tls`); lazy, so a proxy starts while the control plane is away.
fn xds_channel(url: &str, tls: Option<&XdsTls>) -> anyhow::Result<tonic::transport::Channel> {
    let mut endpoint = tonic::transport::Endpoint::from_shared(url.to_owned())?
        .connect_timeout(Duration::from_secs(2))
        .http2_keep_alive_interval(Duration::from_secs(15))
        .keep_alive_while_idle(true);
    match (url.starts_with("https://"), tls) {
        (true, Some(tls)) => endpoint = endpoint.tls_config(tls.client_config()?)?,
        (true, None) => anyhow::bail!("--xds {url}: an https control plane needs --xds-ca"),
        (false, Some(_)) => anyhow::bail!("--xds {url}: TLS options need an https:// URL"),
        (false, None) => {}
    }
    Ok(endpoint.connect_lazy())
}

impl ProxyConfig {
    /// Defaults for tests: everything on `127.0.0.1:0`.
    pub fn for_tests(xds: Option<String>, node_id: &str) -> ProxyConfig {
        let any = SocketAddr::from(([127, 0, 0, 1], 0));
        ProxyConfig {
            xds,
            xds_tls: None,
            node_id: node_id.into(),
            node_cluster: "ingress".into(),
            listen: any,
            admin: any,
            mode: Mode::Delta,
            cache_dir: None,
            stats_interval: Duration::from_millis(200),
            access_log_sample: 1.0,
            drain_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(3600),
            workers: 0,
        }
    }
}

/// xDS client state, for `/metrics` and `/ready`.
#[derive(Debug, Default)]
pub struct XdsStatus {
    /// The stream is up.
    pub connected: AtomicBool,
    /// Responses accepted.
    pub acks: AtomicU64,
    /// Responses refused.
    pub nacks: AtomicU64,
    /// Reconnect attempts.
    pub reconnects: AtomicU64,
    versions: Mutex<BTreeMap<String, String>>,
}

impl XdsStatus {
    /// Counts an ACK or a NACK.
    pub fn count(&self, accepted: bool) {
        if accepted { &self.acks } else { &self.nacks }.fetch_add(1, Ordering::Relaxed);
    }

    /// Records the version accepted for a type.
    pub fn set_version(&self, type_url: &str, v: &str) {
        if let Ok(mut m) = self.versions.lock() {
            m.insert(type_url.to_owned(), v.to_owned());
        }
    }

    /// Accepted versions by type URL.
    pub fn versions(&self) -> BTreeMap<String, String> {
        self.versions.lock().map(|m| m.clone()).unwrap_or_default()
    }
}

/// State shared by every part of the proxy.
#[derive(Debug)]
pub struct Shared {
    /// The served config; swapped whole.
    pub config: ArcSwap<RuntimeConfig>,
    /// State that outlives config versions.
    pub registries: Registries,
    /// Access-log sink.
    pub logs: LogSink,
    /// xDS client state.
    pub xds: XdsStatus,
    /// Process start.
    pub started: Instant,
    /// Requests that matched no route.
    pub no_route: AtomicU64,
    /// Client connections to a TLS listener whose handshake failed or timed out.
    pub tls_failed: AtomicU64,
    /// Our node id.
    pub node_id: String,
    /// See [`ProxyConfig::idle_timeout`].
    pub idle_timeout: Duration,
    /// Started when the proxy drains (downstream connections watch it).
    pub drain: crate::drain::Drain,
    /// Connections accepted, per worker (one entry when traffic is served on the caller's
    /// runtime).
    pub accepted: Box<[AtomicU64]>,
    /// The served listener's TLS settings (their id; `None`: plaintext), told to connections
    /// handed to hyper, which end when the settings they were accepted under change.
    pub listener_tls: watch::Sender<Option<u64>>,
}

impl Shared {
    /// Offers an access record (never blocks).
    pub fn log(&self, r: AccessRecord) {
        self.logs.offer(r);
    }

    /// Compiles and serves `res` (the xDS client, the config cache, tests); on error the
    /// previous config keeps serving.
    pub fn apply(&self, res: Resources) -> Result<(), config::ConfigError> {
        let rt = config::compile(&res, &self.registries)?;
        let tls = rt.listener_tls.as_ref().map(|t| t.id);
        // Told before the swap: a connection accepted under the old config is drained; one
        // accepted under the new finds the watch already saying so. (`send_if_modified`, not
        // `send`: with no receiver, `send` would not store the value.)
        self.listener_tls.send_if_modified(|v| {
            let changed = *v != tls;
            *v = tls;
            changed
        });
        self.config.store(Arc::new(rt));
        Ok(())
    }
}

/// A running proxy.
#[derive(Debug)]
pub struct Proxy {
    listen_addr: SocketAddr,
    admin_addr: SocketAddr,
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    tasks: JoinSet<()>,
    /// Stopped after `tasks`, so that what the drain records is reported.
    stop_reports: watch::Sender<bool>,
    reports: JoinSet<()>,
}

impl Proxy {
    /// Binds both listeners, loads the config cache if any, connects to the control plane.
    pub async fn start(cfg: ProxyConfig) -> anyhow::Result<Proxy> {
        let listeners = bind_listeners(cfg.listen, cfg.workers)
            .map_err(|e| anyhow::anyhow!("binding {}: {e}", cfg.listen))?;
        let admin = TcpListener::bind(cfg.admin)
            .await
            .map_err(|e| anyhow::anyhow!("binding admin {}: {e}", cfg.admin))?;
        let listen_addr = listeners[0].local_addr()?;
        let admin_addr = admin.local_addr()?;
        let (logs, log_rx) = LogSink::new(10_000, cfg.access_log_sample);
        let shared = Arc::new(Shared {
            config: ArcSwap::from_pointee(RuntimeConfig::default()),
            registries: Registries::default(),
            logs,
            xds: XdsStatus::default(),
            started: Instant::now(),
            no_route: AtomicU64::new(0),
            tls_failed: AtomicU64::new(0),
            node_id: cfg.node_id.clone(),
            idle_timeout: cfg.idle_timeout,
            drain: Default::default(),
            accepted: listeners.iter().map(|_| AtomicU64::new(0)).collect(),
            listener_tls: watch::channel(None).0,
        });
        let (event_tx, event_rx) = tokio::sync::mpsc::unbounded_channel();
        let _ = shared.registries.endpoints.events.set(event_tx);
        let _ = shared.registries.endpoints.workers.set(listeners.len());
        if let Some(dir) = &cfg.cache_dir {
            match xds::cache::load(dir) {
                Ok(Some(res)) => match shared.apply(res) {
                    Ok(()) => {
                        tracing::info!(dir = %dir.display(), "serving cached config until the control plane answers")
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "cached config does not compile; ignoring it")
                    }
                },
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, "reading config cache"),
            }
        }
        let (stop, _) = watch::channel(false);
        let (stop_reports, _) = watch::channel(false);
        let mut tasks = JoinSet::new();
        let mut reports = JoinSet::new();
        for (i, listener) in listeners.into_iter().enumerate() {
            let (shared, stop, drain) = (shared.clone(), stop.subscribe(), cfg.drain_timeout);
            // Registered with the runtime that runs it.
            let serving = async move {
                match TcpListener::from_std(listener) {
                    Ok(l) => serve(l, i, shared, stop, drain).await,
                    Err(e) => tracing::error!(worker = i, error = %e, "listener"),
                }
            };
            if i == 0 {
                tasks.spawn(serving);
            } else {
                let done = spawn_worker(i, serving)?;
                // The worker's end is awaited as one of the tasks (`shutdown`).
                tasks.spawn(async move {
                    if done.await.is_err() {
                        // Its listening socket is closed with it; the other workers serve on.
                        tracing::error!(worker = i, "worker thread ended abnormally (panicked)");
                    }
                });
            }
        }
        tasks.spawn(admin::serve(admin, shared.clone(), stop.subscribe()));
        tasks.spawn(crate::health::supervise(shared.clone(), stop.subscribe()));
        if let Some(url) = &cfg.xds {
            let channel = xds_channel(url, cfg.xds_tls.as_ref())?;
            let node = Node {
                id: cfg.node_id.clone(),
                cluster: cfg.node_cluster.clone(),
                user_agent_name: "gw-proxy".into(),
                user_agent_version_type: Some(
                    gw_proto::envoy::pb::envoy::config::core::v3::node::UserAgentVersionType::UserAgentVersion(
                        env!("CARGO_PKG_VERSION").into(),
                    ),
                ),
                ..Default::default()
            };
            let opts = XdsOptions {
                mode: cfg.mode,
                node: node.clone(),
                cache_dir: cfg.cache_dir.clone(),
            };
            tasks.spawn(xds::run(
                shared.clone(),
                channel.clone(),
                opts,
                stop.subscribe(),
            ));
            reports.spawn(crate::report::events(
                channel.clone(),
                cfg.node_id.clone(),
                event_rx,
                stop_reports.subscribe(),
            ));
            reports.spawn(crate::report::run(
                shared.clone(),
                channel,
                node,
                cfg.stats_interval,
                log_rx,
                stop_reports.subscribe(),
            ));
        }
        tracing::info!(listen = %listen_addr, admin = %admin_addr, node = %cfg.node_id, "gw-proxy started");
        Ok(Proxy {
            listen_addr,
            admin_addr,
            shared,
            stop,
            tasks,
            stop_reports,
            reports,
        })
    }

    /// Where traffic is served.
    pub fn listen_addr(&self) -> SocketAddr {
        self.listen_addr
    }

    /// Where the admin endpoints are.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin_addr
    }

    /// The shared state (tests feed resources through it).
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Drains: stops accepting, lets in-flight requests finish (up to the drain timeout), stops;
    /// then reports what is left (the drain's access logs, the last stats) and stops reporting.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        while self.tasks.join_next().await.is_some() {}
        let _ = self.stop_reports.send(true);
        while self.reports.join_next().await.is_some() {}
    }
}

impl Drop for Proxy {
    /// Dropped without [`shutdown`](Self::shutdown) (tests, embedders): the serve loop is
    /// aborted before it starts the drain, so it is started here, and idle downstream connections
    /// close as they did when the stop channel's sender went away.
    fn drop(&mut self) {
        self.shared.drain.start();
    }
}

/// The listening sockets on `addr`: one, or one per worker (`SO_REUSEPORT`, the first bound
/// first so that a port 0 is chosen once), non-blocking, for any runtime to take. Called within
/// a runtime.
fn bind_listeners(addr: SocketAddr, workers: usize) -> std::io::Result<Vec<std::net::TcpListener>> {
    if workers > 1 && addr.port() != 0 {
        // `SO_REUSEPORT` would let these sockets share a port another process listens on (with
        // the option too, under the same user): a port in use fails here, as with one worker.
        drop(std::net::TcpListener::bind(addr)?);
    }
    let mut addr = addr;
    let mut out = Vec::with_capacity(workers.max(1));
    for _ in 0..workers.max(1) {
        let socket = if addr.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        // As `TcpListener::bind`: a restarted proxy rebinds while old connections linger.
        socket.set_reuseaddr(true)?;
        if workers > 1 {
            socket.set_reuseport(true)?;
        }
        socket.bind(addr)?;
        // Registered with the caller's runtime, then taken out of it for a worker's.
        let std = socket.listen(1024)?.into_std()?;
        addr = std.local_addr()?;
        out.push(std);
    }
    Ok(out)
}

/// Starts worker `i`: a thread with a single-threaded runtime running `serving`; the returned
/// receiver resolves (or errs, if the thread panicked) once it is over and its runtime is gone.
fn spawn_worker(
    i: usize,
    serving: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<tokio::sync::oneshot::Receiver<()>> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (done_tx, done) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name(format!("gw-worker-{i}"))
        .spawn(move || {
            crate::proxy::upstream::set_worker(i);
            rt.block_on(serving);
            // Upstream connections close with the runtime (`serve` has closed the downstream
            // ones): before `shutdown` returns.
            drop(rt);
            let _ = done_tx.send(());
        })?;
    Ok(done)
}

async fn serve(
    listener: TcpListener,
    worker: usize,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
    drain: Duration,
) {
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .keep_alive(true)
        .writev(false)
        .timer(hyper_util::rt::TokioTimer::new());
    builder.http2().timer(hyper_util::rt::TokioTimer::new());
    let hyper = Arc::new(builder);
    // The connection tasks: the drain is over when all have ended; past the drain timeout the
    // rest are ended here (on worker 0 the runtime goes on after `serve`, with the control tasks).
    let mut conns = tokio::task::JoinSet::new();
    loop {
        let (stream, peer) = tokio::select! {
            _ = crate::server::stopped(&mut stop) => break,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "accept");
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        shared.accepted[worker].fetch_add(1, Ordering::Relaxed);
        // The listener's TLS as the config stands when the connection comes.
        let tls = {
            let cfg = shared.config.load();
            cfg.listener_tls.clone().map(|t| (t, cfg.timeouts))
        };
        match tls {
            None => conns.spawn(proxy::native::serve_connection(
                stream,
                peer,
                shared.clone(),
                hyper.clone(),
            )),
            Some((tls, timeouts)) => conns.spawn(proxy::native::serve_tls(
                stream,
                peer,
                tls,
                timeouts,
                shared.clone(),
                hyper.clone(),
            )),
        };
        // Ended connections are reaped as new ones come.
        while conns.try_join_next().is_some() {}
    }
    // New connections are refused from here on; in-flight ones finish or hit the deadline.
    drop(listener);
    shared.drain.start();
    let drained = async { while conns.join_next().await.is_some() {} };
    tokio::select! {
        _ = drained => tracing::info!("drained"),
        _ = tokio::time::sleep(drain) => tracing::warn!(timeout = ?drain, "drain timeout; closing remaining connections"),
    }
    // What is left is closed now (its requests recorded as they end), before `serve` returns.
    conns.shutdown().await;
}
