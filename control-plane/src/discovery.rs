//! Kubernetes discovery: the endpoints of a cluster with `spec.kubernetes` follow the
//! EndpointSlices of that Service.
//!
//! - [`SliceSource`] is the boundary to the API server: a watcher stream of one Service's
//!   EndpointSlices (`kubernetes.io/service-name=NAME`). [`KubeSource`] is the real one (kube's
//!   watcher, with its backoff); [`FakeApiServer`] (feature `test-util`) stands in for an API
//!   server in tests, the one part that cannot run here.
//! - [`run`] keeps one watch per such cluster (started, restarted and stopped as clusters are
//!   applied and deleted) and writes each new endpoint set with
//!   [`Store::sync_discovered_endpoints`]: one write per change, none when nothing changed, so
//!   proxies get a new ClusterLoadAssignment only when the set really moved.
//! - Which endpoints: ready ones (`conditions.ready` unset counts as ready, as kube-proxy reads
//!   it), first address, the port named (or numbered) by `spec.kubernetes.port` or the slice's
//!   first port; zone, node and pod go into metadata. A set is written only once the watch has
//!   listed every slice (after `InitDone`), never a partial list.
//! - On PostgreSQL with several replicas one replica (an advisory lock) runs the watches.

mod fake;
mod kube_source;

#[cfg(any(test, feature = "test-util"))]
pub use fake::FakeApiServer;
pub use kube_source::KubeSource;

use crate::monitoring::leader::{Leadership, DISCOVERY_LOCK_KEY};
use crate::server::stopped;
use crate::store::{EventRecord, Store, StoreError};
use futures::stream::BoxStream;
use futures::StreamExt;
use gw_proto::model::{
    Endpoint, EndpointKey, EndpointSource, Kind, KubernetesDiscovery, Object, Spec,
};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::watcher::Event;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// A watcher stream of EndpointSlices: `Init`, `InitApply` for each slice, `InitDone`, then
/// `Apply` / `Delete` as they change; `Init` again whenever the watch relists.
pub type SliceStream = BoxStream<'static, Result<Event<EndpointSlice>, String>>;

/// Where EndpointSlices come from.
pub trait SliceSource: Send + Sync + std::fmt::Debug + 'static {
    /// Watches the slices of Service `service` in `namespace`. The stream retries by itself;
    /// an `Err` is a failure worth logging, not the end.
    fn watch(&self, namespace: &str, service: &str) -> SliceStream;
}

/// How discovery runs.
#[derive(Debug, Clone)]
pub struct DiscoveryConfig {
    /// The API server (None: discovery is off, and clusters that ask for it are logged).
    pub source: Option<Arc<dyn SliceSource>>,
    /// How often leadership is checked and the cluster list re-read without a change signal.
    pub resync: Duration,
    /// Wait before a failed endpoint write is tried again.
    pub retry: Duration,
}

impl Default for DiscoveryConfig {
    fn default() -> Self {
        DiscoveryConfig {
            source: None,
            resync: Duration::from_secs(5),
            retry: Duration::from_secs(1),
        }
    }
}

/// A cluster whose endpoints come from Kubernetes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Target {
    tenant: String,
    cluster: String,
}

/// Runs discovery until `stop`: one watch per cluster with `spec.kubernetes`. `leading` says
/// whether this replica runs the watches (`None` until it has a source and has tried the lock).
pub async fn run(
    store: Store,
    db_url: String,
    cfg: DiscoveryConfig,
    metrics: crate::metrics::ControlPlaneMetrics,
    leading: watch::Sender<Option<bool>>,
    mut stop: watch::Receiver<bool>,
) {
    let mut leader = Leadership::for_job(
        store.backend(),
        db_url,
        DISCOVERY_LOCK_KEY,
        "runs Kubernetes discovery",
    );
    let mut changes = store.subscribe();
    let mut tick = tokio::time::interval(cfg.resync);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut watches: HashMap<Target, (KubernetesDiscovery, JoinHandle<()>)> = HashMap::new();
    let mut warned: HashSet<Target> = HashSet::new();
    loop {
        tokio::select! {
            _ = stopped(&mut stop) => break,
            _ = tick.tick() => {}
            r = changes.changed() => if r.is_err() { break },
        }
        let wanted = match kubernetes_clusters(&store).await {
            Ok(w) => w,
            Err(e) => {
                tracing::warn!(error = %e, "discovery: listing clusters");
                continue;
            }
        };
        let Some(source) = &cfg.source else {
            for t in wanted.keys().filter(|t| !warned.contains(*t)) {
                tracing::warn!(tenant = %t.tenant, cluster = %t.cluster,
                    "cluster takes its endpoints from Kubernetes, but discovery is off (start with --kubernetes)");
            }
            warned = wanted.into_keys().collect();
            continue;
        };
        let lead = leader.ensure().await;
        leading.send_replace(Some(lead));
        let wanted = if lead { wanted } else { BTreeMap::new() };
        // Stop the watches of clusters that are gone or changed (and of watches that ended:
        // a cluster deleted and made again between two rounds). A cluster pointed elsewhere
        // lost the old Service's endpoints in the write that changed its spec.
        watches.retain(|t, (spec, task)| {
            let keep = wanted.get(t) == Some(spec) && !task.is_finished();
            if !keep {
                task.abort();
            }
            keep
        });
        for (t, spec) in wanted {
            if watches.contains_key(&t) {
                continue;
            }
            let stream = source.watch(&spec.namespace, &spec.service);
            let task = tokio::spawn(follow(
                store.clone(),
                t.clone(),
                spec.clone(),
                stream,
                cfg.clone(),
                metrics.discovery_writes.clone(),
            ));
            watches.insert(t, (spec, task));
        }
        metrics.discovery_watches.set(watches.len() as i64);
    }
    for (_, (_, task)) in watches {
        task.abort();
    }
}

/// Every cluster with `spec.kubernetes`, across tenants.
async fn kubernetes_clusters(
    store: &Store,
) -> Result<BTreeMap<Target, KubernetesDiscovery>, StoreError> {
    let mut out = BTreeMap::new();
    let mut token = String::new();
    loop {
        let page = store.list(Kind::Cluster, None, 1000, &token).await?;
        for Object { meta, spec, .. } in page.items {
            if let Spec::Cluster(c) = spec {
                if let Some(k) = c.kubernetes {
                    let t = Target {
                        tenant: meta.tenant.clone(),
                        cluster: meta.name.clone(),
                    };
                    out.insert(t, k);
                }
            }
        }
        match page.next_page_token {
            Some(next) => token = next,
            None => return Ok(out),
        }
    }
}

/// Follows one Service's slices and writes the cluster's endpoint set as it changes, and again
/// every resync (the store writes nothing when the set is already there, so anything that moved
/// the rows meanwhile is put right).
async fn follow(
    store: Store,
    t: Target,
    spec: KubernetesDiscovery,
    mut stream: SliceStream,
    cfg: DiscoveryConfig,
    writes: prometheus::IntCounter,
) {
    let mut slices: BTreeMap<String, EndpointSlice> = BTreeMap::new();
    // Slices of a listing in progress; `slices` is replaced when it completes.
    let mut listing: Option<BTreeMap<String, EndpointSlice>> = None;
    let mut listed = false;
    // Whether the watch is failing (reported once per failing spell).
    let mut failing = false;
    let mut retry_at: Option<tokio::time::Instant> = None;
    // Spread over the interval, so watches started together do not resync together.
    let jitter = cfg.resync.mul_f64(rand::random::<f64>());
    let mut resync = tokio::time::interval_at(tokio::time::Instant::now() + jitter, cfg.resync);
    resync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let event = tokio::select! {
            e = stream.next() => match e {
                Some(e) => Some(e),
                None => return,
            },
            _ = sleep_until(retry_at) => None,
            _ = resync.tick() => None,
        };
        match event {
            None => {}
            Some(Err(e)) => {
                tracing::warn!(error = %e, namespace = %spec.namespace, service = %spec.service,
                    "discovery: watching EndpointSlices");
                if !failing {
                    failing = true;
                    let message = format!(
                        "watching EndpointSlices of Service {}/{}: {e}",
                        spec.namespace, spec.service
                    );
                    record(
                        &store,
                        &t,
                        &spec,
                        "discovery_failed",
                        "warning",
                        message,
                        None,
                    )
                    .await;
                }
                continue;
            }
            Some(Ok(e)) => match e {
                Event::Init => listing = Some(BTreeMap::new()),
                Event::InitApply(s) => {
                    if let Some(l) = listing.as_mut() {
                        l.insert(slice_name(&s), s);
                    }
                }
                Event::InitDone => {
                    slices = listing.take().unwrap_or_default();
                    listed = true;
                    failing = false;
                }
                Event::Apply(s) => {
                    slices.insert(slice_name(&s), s);
                }
                Event::Delete(s) => {
                    slices.remove(&slice_name(&s));
                }
            },
        }
        if !listed || listing.is_some() {
            continue;
        }
        let want = endpoints_of(&t, &spec, slices.values());
        match store
            .sync_discovered_endpoints(&t.tenant, &t.cluster, &spec, &want)
            .await
        {
            Ok(rev) => {
                if let Some(rev) = rev {
                    writes.inc();
                    let n = want.len();
                    let message = format!(
                        "{n} ready endpoint(s) from Service {}/{}",
                        spec.namespace, spec.service
                    );
                    let severity = if n == 0 { "warning" } else { "info" };
                    let detail = Some((n, rev));
                    record(
                        &store,
                        &t,
                        &spec,
                        "endpoints_discovered",
                        severity,
                        message,
                        detail,
                    )
                    .await;
                }
                retry_at = None;
            }
            // The cluster was deleted or no longer asks for this Service; the controller
            // stops (or restarts) this watch.
            Err(StoreError::NotFound(_)) => return,
            Err(e) => {
                tracing::warn!(error = %e, cluster = %t.cluster, "discovery: writing endpoints");
                retry_at = Some(tokio::time::Instant::now() + cfg.retry);
            }
        }
    }
}

async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

fn slice_name(s: &EndpointSlice) -> String {
    s.metadata.name.clone().unwrap_or_default()
}

async fn record(
    store: &Store,
    t: &Target,
    spec: &KubernetesDiscovery,
    kind: &str,
    severity: &str,
    message: String,
    written: Option<(usize, u64)>,
) {
    let mut attributes: BTreeMap<String, String> = [
        ("namespace".to_owned(), spec.namespace.clone()),
        ("service".to_owned(), spec.service.clone()),
    ]
    .into();
    if let Some((n, rev)) = written {
        attributes.insert("endpoints".into(), n.to_string());
        attributes.insert("revision".into(), rev.to_string());
    }
    let e = EventRecord {
        kind: kind.into(),
        severity: severity.into(),
        tenant: t.tenant.clone(),
        object: format!("cluster/{}", t.cluster),
        message,
        attributes,
        ..EventRecord::default()
    };
    if let Err(e) = store.record_event(e).await {
        tracing::warn!(error = %e, "discovery: recording an event");
    }
}

/// The port of `slice` that `spec.port` names: by name, or by number, or the first one when the
/// spec leaves it empty. Only TCP ports count.
fn port_of(spec: &KubernetesDiscovery, slice: &EndpointSlice) -> Option<u32> {
    let tcp = slice
        .ports
        .iter()
        .flatten()
        .filter(|p| p.protocol.as_deref().unwrap_or("TCP") == "TCP");
    let mut tcp = tcp.filter_map(|p| Some((p.name.as_deref().unwrap_or(""), p.port?)));
    let (_, port) = match (spec.port.as_str(), spec.port.parse::<i32>()) {
        ("", _) => tcp.next()?,
        (_, Ok(n)) => tcp.find(|&(_, p)| p == n)?,
        (name, Err(_)) => tcp.find(|&(n, _)| n == name)?,
    };
    u32::try_from(port).ok()
}

/// The ready endpoints of `slices`, one per address and port, in key order.
fn endpoints_of<'a>(
    t: &Target,
    spec: &KubernetesDiscovery,
    slices: impl Iterator<Item = &'a EndpointSlice>,
) -> Vec<Endpoint> {
    let mut out: BTreeMap<EndpointKey, Endpoint> = BTreeMap::new();
    for slice in slices {
        let Some(port) = port_of(spec, slice) else {
            continue;
        };
        for e in &slice.endpoints {
            let ready = e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true);
            let Some(address) = e.addresses.first() else {
                continue;
            };
            if !ready {
                continue;
            }
            let key = EndpointKey {
                tenant: t.tenant.clone(),
                cluster: t.cluster.clone(),
                address: address.clone(),
                port,
            };
            let mut metadata = BTreeMap::new();
            let mut put = |k: &str, v: Option<&String>| {
                if let Some(v) = v.filter(|v| !v.is_empty()) {
                    metadata.insert(k.to_owned(), v.clone());
                }
            };
            put("zone", e.zone.as_ref());
            put("node", e.node_name.as_ref());
            let pod = e
                .target_ref
                .as_ref()
                .filter(|r| r.kind.as_deref() == Some("Pod"));
            put("pod", pod.and_then(|r| r.name.as_ref()));
            let ep = Endpoint {
                key,
                weight: 1,
                metadata,
                source: EndpointSource::Kubernetes,
                ttl: None,
                expires_at_ms: None,
                registered_at_ms: 0,
                resource_version: 0,
                healthy: true,
            };
            match ep.validate() {
                Ok(()) => {
                    out.entry(ep.key.clone()).or_insert(ep);
                }
                Err(err) => tracing::warn!(error = %err, address = %address,
                    "discovery: skipping an endpoint gw cannot use"),
            }
        }
    }
    out.into_values().collect()
}

#[cfg(test)]
mod tests;
