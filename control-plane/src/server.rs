//! Wiring: the gRPC listener (API, reflection, xDS), the HTTP listener (`/metrics`, `/healthz`) and
//! background tasks (lease reaper, Kubernetes discovery). [`ControlPlane`] is what `main` runs and what tests start
//! in-process on `127.0.0.1:0`.

mod http;

use crate::api::{
    AlertRulesApi, AlertsApi, ClustersApi, ConfigApi, EndpointsApi, EventsApi, ListenersApi,
    RoutesApi, StatsApi, TenantsApi, TokensApi,
};
use crate::auth::{Authenticator, Tokens};
use crate::metrics::ControlPlaneMetrics;
use crate::monitoring::{fleet_bridge::FleetBridge, MonitoringConfig};
use crate::store::{Store, StoreOptions};
use crate::telemetry::access_logs::AccessLogIngest;
use crate::telemetry::metrics::MetricsIngest;
use crate::telemetry::{Buffer, IngestConfig};
use anyhow::Context;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tonic::service::interceptor::InterceptedService;

/// How to run a control plane.
#[derive(Debug, Clone)]
pub struct Config {
    /// userdb URL: `sqlite://userdb.sqlite`, `sqlite::memory:` or `postgres://…`.
    pub db: String,
    /// gRPC listen address (API, xDS, telemetry).
    pub grpc: SocketAddr,
    /// HTTP listen address (`/metrics`, `/healthz`).
    pub http: SocketAddr,
    /// How often expired endpoint leases are reaped.
    pub reap_interval: Duration,
    /// Telemetry ingest (rollup resolution, flush interval, buffer bounds).
    pub ingest: IngestConfig,
    /// Alert evaluation and retention.
    pub monitoring: MonitoringConfig,
    /// Kubernetes EndpointSlice discovery (off unless it has a source).
    pub discovery: crate::discovery::DiscoveryConfig,
    /// Whether gateway.v1 calls need a bearer token (`--auth`).
    pub auth: bool,
    /// A secret made (or kept) as the admin token named `admin` at start-up (`GW_ADMIN_TOKEN`),
    /// so a fresh userdb with `--auth` has a way in.
    pub admin_token: Option<String>,
    /// TLS on the gRPC listener (API, xDS, telemetry); `None`: plaintext.
    pub tls: Option<TlsFiles>,
}

/// PEM files for the gRPC listener's TLS.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// Certificate chain.
    pub cert: std::path::PathBuf,
    /// Its private key.
    pub key: std::path::PathBuf,
    /// CA that client certificates must chain to: with it, every client (proxies, Envoy,
    /// gwctl) must present one (mTLS).
    pub client_ca: Option<std::path::PathBuf>,
}

impl TlsFiles {
    /// The tonic server TLS config, or an error naming the file that could not be read.
    pub fn server_config(&self) -> anyhow::Result<tonic::transport::ServerTlsConfig> {
        let read = |p: &std::path::Path, what: &str| {
            std::fs::read(p).with_context(|| format!("{what}: reading {}", p.display()))
        };
        let identity = tonic::transport::Identity::from_pem(
            read(&self.cert, "--tls-cert")?,
            read(&self.key, "--tls-key")?,
        );
        let mut cfg = tonic::transport::ServerTlsConfig::new()
            .identity(identity)
            .timeout(Duration::from_secs(10));
        if let Some(ca) = &self.client_ca {
            cfg = cfg
                .client_ca_root(tonic::transport::Certificate::from_pem(read(
                    ca,
                    "--tls-client-ca",
                )?))
                .client_auth_optional(false);
        }
        Ok(cfg)
    }
}

impl Config {
    /// The documented defaults with `db`.
    pub fn new(db: impl Into<String>) -> Config {
        Config {
            db: db.into(),
            grpc: SocketAddr::from(([127, 0, 0, 1], 18000)),
            http: SocketAddr::from(([127, 0, 0, 1], 18001)),
            reap_interval: Duration::from_secs(1),
            ingest: IngestConfig::default(),
            monitoring: MonitoringConfig::default(),
            discovery: crate::discovery::DiscoveryConfig::default(),
            auth: false,
            admin_token: None,
            tls: None,
        }
    }

    /// `db` on ephemeral loopback ports with fast ingest and evaluation (1 s rollups, 100 ms
    /// flushes, 200 ms evaluation), for tests.
    pub fn for_tests(db: impl Into<String>) -> Config {
        let any = SocketAddr::from(([127, 0, 0, 1], 0));
        let ingest = IngestConfig {
            resolution: Duration::from_secs(1),
            flush_interval: Duration::from_millis(100),
            ..IngestConfig::default()
        };
        let monitoring = MonitoringConfig {
            interval: Duration::from_millis(200),
            ..MonitoringConfig::default()
        };
        Config {
            grpc: any,
            http: any,
            ingest,
            monitoring,
            ..Config::new(db)
        }
    }
}

/// A running control plane.
#[derive(Debug)]
pub struct ControlPlane {
    grpc_addr: SocketAddr,
    http_addr: SocketAddr,
    store: Store,
    buffer: Buffer,
    metrics: ControlPlaneMetrics,
    xds: crate::xds::Xds,
    discovery_leading: watch::Receiver<Option<bool>>,
    shutdown: watch::Sender<bool>,
    tasks: JoinSet<()>,
}

impl ControlPlane {
    /// Connects and migrates userdb, binds both listeners and starts serving.
    pub async fn start(cfg: Config) -> anyhow::Result<ControlPlane> {
        let store = Store::connect(StoreOptions::new(&cfg.db))
            .await
            .with_context(|| format!("opening userdb {}", redact(&cfg.db)))?;
        Self::start_with_store(cfg, store).await
    }

    /// Like [`start`](Self::start) with an already connected store (e.g. one with a manual clock).
    pub async fn start_with_store(cfg: Config, store: Store) -> anyhow::Result<ControlPlane> {
        let grpc = TcpListener::bind(cfg.grpc)
            .await
            .with_context(|| format!("binding gRPC {}", cfg.grpc))?;
        let http = TcpListener::bind(cfg.http)
            .await
            .with_context(|| format!("binding HTTP {}", cfg.http))?;
        let grpc_addr = grpc.local_addr()?;
        let http_addr = http.local_addr()?;
        let (shutdown, _) = watch::channel(false);
        let mut tasks = JoinSet::new();
        let metrics = ControlPlaneMetrics::new().context("registering metrics")?;
        let buffer = Buffer::new(store.clone(), cfg.ingest.clone(), metrics.clone());

        let reflection = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(gw_proto::FILE_DESCRIPTOR_SET)
            .build_v1()
            .context("building gRPC reflection")?;
        if let Some(secret) = &cfg.admin_token {
            store
                .ensure_admin_token("admin", secret)
                .await
                .context("GW_ADMIN_TOKEN")?;
        }
        let tokens = if cfg.auth {
            let t = Tokens::load(store.clone())
                .await
                .context("loading API tokens")?;
            tasks.spawn(
                t.clone()
                    .refresh(Duration::from_secs(2), shutdown.subscribe()),
            );
            Some(t)
        } else {
            None
        };
        // The gateway.v1 services sit behind the token check; xDS, telemetry ingest and
        // reflection do not (proxies and Envoy send no tokens).
        let auth =
            Authenticator::new(tokens.clone()).with_counter(metrics.api_unauthenticated.clone());
        #[allow(unused_mut)]
        let mut builder = tonic::transport::Server::builder();
        if let Some(tls) = &cfg.tls {
            builder = builder
                .tls_config(tls.server_config()?)
                .context("TLS for the gRPC listener")?;
        }
        let mut router = builder
            .http2_keepalive_interval(Some(Duration::from_secs(30)))
            .add_service(reflection)
            .add_service(guarded(
                TenantsApi::new(store.clone())
                    .with_tokens(tokens.clone())
                    .into_service(),
                &auth,
            ))
            .add_service(guarded(
                ListenersApi::new(store.clone()).into_service(),
                &auth,
            ))
            .add_service(guarded(
                ClustersApi::new(store.clone()).into_service(),
                &auth,
            ))
            .add_service(guarded(RoutesApi::new(store.clone()).into_service(), &auth))
            .add_service(guarded(
                EndpointsApi::new(store.clone()).into_service(),
                &auth,
            ))
            .add_service(guarded(
                ConfigApi::new(store.clone())
                    .with_tokens(tokens.clone())
                    .into_service(),
                &auth,
            ))
            .add_service(guarded(
                AlertRulesApi::new(store.clone()).into_service(),
                &auth,
            ))
            .add_service(guarded(AlertsApi::new(store.clone()).into_service(), &auth))
            .add_service(guarded(
                EventsApi::new(store.clone())
                    .with_shutdown(shutdown.subscribe())
                    .with_tokens(tokens.clone())
                    .into_service(),
                &auth,
            ))
            .add_service(guarded(StatsApi::new(store.clone()).into_service(), &auth))
            .add_service(guarded(
                TokensApi::new(store.clone(), tokens).into_service(),
                &auth,
            ))
            .add_service(MetricsIngest::new(buffer.clone()).into_service())
            .add_service(AccessLogIngest::new(buffer.clone()).into_service());
        // xds services are added here
        let (xds, xds_task) = crate::xds::Xds::start(
            store.clone(),
            crate::xds::PublishOptions::default(),
            shutdown.subscribe(),
        );
        let xds = xds.with_metrics(metrics.clone());
        router = router
            .add_service(xds.ads().into_service())
            .add_service(guarded(xds.fleet_api().into_service(), &auth));
        tasks.spawn(async move {
            let _ = xds_task.await;
        });

        let mut stop = shutdown.subscribe();
        tasks.spawn(async move {
            let incoming = tokio_stream::wrappers::TcpListenerStream::new(grpc);
            let signal = async move { stopped(&mut stop).await };
            if let Err(e) = router.serve_with_incoming_shutdown(incoming, signal).await {
                tracing::error!(error = %e, "gRPC server failed");
            }
        });
        tasks.spawn(http::serve(
            http,
            store.clone(),
            metrics.clone(),
            xds.fleet().clone(),
            shutdown.subscribe(),
        ));
        tasks.spawn(reap_leases(
            store.clone(),
            cfg.reap_interval,
            shutdown.subscribe(),
        ));
        tasks.spawn(buffer.clone().run(shutdown.subscribe()));
        tasks.spawn(crate::monitoring::fleet_bridge::persist_events(
            store.clone(),
            xds.events().follow(),
            shutdown.subscribe(),
        ));
        let (leading, discovery_leading) = watch::channel(None);
        tasks.spawn(crate::discovery::run(
            store.clone(),
            cfg.db.clone(),
            cfg.discovery.clone(),
            metrics.clone(),
            leading,
            shutdown.subscribe(),
        ));
        let fleet = std::sync::Arc::new(FleetBridge::new(xds.fleet().clone(), store.clone()));
        tasks.spawn(crate::monitoring::run(
            store.clone(),
            cfg.db.clone(),
            fleet,
            metrics.clone(),
            cfg.monitoring.clone(),
            shutdown.subscribe(),
        ));

        tracing::info!(grpc = %grpc_addr, http = %http_addr, db = %redact(&cfg.db), "control plane listening");
        Ok(ControlPlane {
            grpc_addr,
            http_addr,
            store,
            buffer,
            metrics,
            xds,
            discovery_leading,
            shutdown,
            tasks,
        })
    }

    /// Where the gRPC API listens.
    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc_addr
    }

    /// Where `/metrics` and `/healthz` listen.
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// The store this control plane serves.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The control plane's metrics (the xDS server records pushes and ACKs here).
    pub fn metrics(&self) -> &ControlPlaneMetrics {
        &self.metrics
    }

    /// The xDS server: snapshots, fleet registry, xDS events.
    pub fn xds(&self) -> &crate::xds::Xds {
        &self.xds
    }

    /// Whether this replica runs Kubernetes discovery: `None` while discovery is off or has not
    /// tried the leader lock yet.
    pub fn discovery_leading(&self) -> Option<bool> {
        *self.discovery_leading.borrow()
    }

    /// The telemetry ingest buffer (tests flush it to make ingested data visible at once).
    pub fn ingest(&self) -> &Buffer {
        &self.buffer
    }

    /// Stops accepting, lets in-flight calls finish, stops background tasks.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        let drained = async { while self.tasks.join_next().await.is_some() {} };
        if tokio::time::timeout(Duration::from_secs(10), drained)
            .await
            .is_err()
        {
            tracing::warn!("shutdown: tasks still running after 10s; aborting them");
            self.tasks.abort_all();
        }
    }
}

/// A gateway.v1 service behind the token check.
fn guarded<S>(svc: S, auth: &Authenticator) -> InterceptedService<S, Authenticator> {
    InterceptedService::new(svc, auth.clone())
}

/// Deletes expired endpoint leases, so proxies drop them.
async fn reap_leases(store: Store, every: Duration, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stopped(&mut stop) => return,
            _ = tick.tick() => match store.reap_expired().await {
                Ok(0) => {}
                Ok(n) => tracing::info!(expired = n, "endpoint leases expired"),
                Err(e) => tracing::warn!(error = %e, "reaping endpoint leases"),
            },
        }
    }
}

/// Resolves once `stop` turns true (or its sender is gone).
pub(crate) async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// The database URL without its password, for logs.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..s + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn redacts_passwords() {
        assert_eq!(
            super::redact("postgres://u:pw@h/db"),
            "postgres://u:***@h/db"
        );
        assert_eq!(super::redact("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(
            super::redact("sqlite://userdb.sqlite"),
            "sqlite://userdb.sqlite"
        );
    }
}
