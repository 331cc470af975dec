//! Runtime config: the xDS resources a proxy holds, compiled into an immutable routing table and
//! cluster set that the request path reads through one atomic pointer load.
//!
//! Compilation is all-or-nothing: a resource that cannot be applied fails the whole candidate
//! with a message naming it (the NACK `error_detail`), and the previous config keeps serving.
//! Endpoint state lives in the [`EndpointRegistry`] and counters in the [`StatsRegistry`], so both
//! survive updates that keep the endpoint / object.
//!
//! - [`cluster`]: `Cluster` + `ClusterLoadAssignment` → [`ClusterRt`];
//!   [`listener`]: `Listener` + `RouteConfiguration` → [`RouteTable`];
//!   [`fixture`]: builders of the resources the control plane sends (tests, benchmarks).

pub mod cluster;
pub mod fixture;
pub mod listener;

pub use listener::rds_names;

use crate::breaker::FailOn;
use crate::endpoint::{Endpoint, EndpointRegistry};
use crate::lb::{Balancer, PickContext};
use crate::limits::{ClusterLoad, Maxima};
use crate::router::{RouteError, RouteTable};
use crate::stats::{ObjStats, StatsRegistry};
use gw_proto::envoy::pb::envoy::config::cluster::v3::{cluster as pb_cluster, Cluster};
use gw_proto::model::{ClusterSpec, LbPolicy};
use prost::Message;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

/// The first of `fields` that is set: something gw-proxy would otherwise ignore, which changes
/// what a request gets (a proxy NACKs it by name rather than serve it otherwise than Envoy).
pub(crate) fn first_set(fields: &[(&'static str, bool)]) -> Option<&'static str> {
    fields.iter().find(|(_, set)| *set).map(|(name, _)| *name)
}

/// Why a candidate config cannot be served (the NACK `error_detail` is its text).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A resource does not decode.
    #[error("{type_url} {name}: cannot decode: {source}")]
    Decode {
        /// Its type.
        type_url: &'static str,
        /// Its name.
        name: String,
        /// Why.
        source: prost::DecodeError,
    },
    /// A cluster gw-proxy cannot use.
    #[error("Cluster {name}: {reason}")]
    Cluster {
        /// Envoy name.
        name: String,
        /// Why.
        reason: String,
    },
    /// Endpoints gw-proxy cannot use.
    #[error("ClusterLoadAssignment {cluster}: {reason}")]
    Endpoints {
        /// Cluster name.
        cluster: String,
        /// Why.
        reason: String,
    },
    /// A listener gw-proxy cannot serve.
    #[error("Listener {name}: {reason}")]
    Listener {
        /// Its name.
        name: String,
        /// Why.
        reason: String,
    },
    /// A route configuration that does not compile.
    #[error("RouteConfiguration {name}: {source}")]
    Routes {
        /// Its name.
        name: String,
        /// Why.
        source: RouteError,
    },
}

/// The longest duration a protobuf `Duration` may hold (10,000 years, as Envoy checks).
pub const MAX_DURATION_SECS: i64 = 315_576_000_000;

/// A protobuf duration, or why it is not one (negative, nanos out of range, too long).
pub fn pb_duration(
    d: &gw_proto::envoy::pb::google::protobuf::Duration,
) -> Result<std::time::Duration, String> {
    if d.seconds < 0 || !(0..1_000_000_000).contains(&d.nanos) || d.seconds > MAX_DURATION_SECS {
        return Err(format!(
            "{}s {}ns is not a valid duration",
            d.seconds, d.nanos
        ));
    }
    Ok(std::time::Duration::new(d.seconds as u64, d.nanos as u32))
}

/// [`pb_duration`] for fields that have always taken what they were given: out-of-range parts
/// are clamped (negative to zero, too long to the maximum) rather than refused.
pub fn pb_duration_clamped(
    d: &gw_proto::envoy::pb::google::protobuf::Duration,
) -> std::time::Duration {
    std::time::Duration::new(
        d.seconds.clamp(0, MAX_DURATION_SECS) as u64,
        d.nanos.clamp(0, 999_999_999) as u32,
    )
}

/// Type URLs of the four resource types.
pub mod type_url {
    /// LDS.
    pub const LISTENER: &str = "type.googleapis.com/envoy.config.listener.v3.Listener";
    /// RDS.
    pub const ROUTE: &str = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration";
    /// CDS.
    pub const CLUSTER: &str = "type.googleapis.com/envoy.config.cluster.v3.Cluster";
    /// EDS.
    pub const ENDPOINT: &str = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment";
    /// All, in make-before-break order.
    pub const ALL: [&str; 4] = [CLUSTER, ENDPOINT, LISTENER, ROUTE];
}

/// One resource as received: its version and encoded body.
#[derive(Clone, PartialEq)]
pub struct Raw {
    /// Per-resource version.
    pub version: String,
    /// Protobuf encoding.
    pub body: bytes::Bytes,
}

impl std::fmt::Debug for Raw {
    // The body's length only: a listener's private keys are in its bytes.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Raw")
            .field("version", &self.version)
            .field("body", &format_args!("{} bytes", self.body.len()))
            .finish()
    }
}

/// Every resource the proxy holds, by type URL and name.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Resources {
    /// type URL → name → resource.
    pub by_type: BTreeMap<String, BTreeMap<String, Raw>>,
}

impl Resources {
    /// Resources of one type.
    pub fn of(&self, type_url: &str) -> impl Iterator<Item = (&String, &Raw)> {
        self.by_type.get(type_url).into_iter().flatten()
    }

    /// Names held of one type.
    pub fn names(&self, type_url: &str) -> Vec<String> {
        self.of(type_url).map(|(n, _)| n.clone()).collect()
    }
}

/// A compiled cluster.
#[derive(Debug)]
pub struct ClusterRt {
    /// Envoy name (`tenant/name`).
    pub name: String,
    /// Tenant part.
    pub tenant: String,
    /// Name part.
    pub short: String,
    /// Strategy.
    pub lb: LbPolicy,
    /// Upstream connect timeout.
    pub connect_timeout: Duration,
    /// Endpoints, in EDS order.
    pub endpoints: Vec<Arc<Endpoint>>,
    /// Counters per endpoint (same order).
    pub endpoint_stats: Vec<Arc<ObjStats>>,
    pub(crate) balancer: Box<dyn Balancer>,
    /// Cluster counters.
    pub stats: Arc<ObjStats>,
    /// Envoy name of the cluster that takes traffic when none of ours is usable.
    pub fallback: Option<String>,
    /// What counts as an endpoint failure.
    pub fail_on: FailOn,
    /// Limits (Envoy `circuit_breakers` thresholds) of this config version.
    pub maxima: Maxima,
    /// Connections, pending requests, requests and retries now (shared across versions).
    pub load: Arc<ClusterLoad>,
    /// gw's cluster spec, when the control plane sent one.
    pub spec: Option<ClusterSpec>,
    /// Its endpoints speak HTTP/2 (cleartext, prior knowledge): Envoy's upstream
    /// `http2_protocol_options`. Requests to it take hyper's client, multiplexed over one
    /// connection per endpoint and worker.
    pub http2: bool,
    /// TLS to its endpoints (Envoy's `transport_socket`); requests to it take hyper's client.
    pub tls: Option<Arc<crate::tls::UpstreamTls>>,
}

impl ClusterRt {
    /// Whether requests to it take hyper's client rather than the native path's raw
    /// connections: it speaks HTTP/2, or TLS.
    pub fn takes_hyper(&self) -> bool {
        self.http2 || self.tls.is_some()
    }

    /// Picks an endpoint index.
    pub fn pick(&self, ctx: PickContext) -> Option<usize> {
        self.balancer.pick(&self.endpoints, ctx)
    }
}

/// What the request path reads.
#[derive(Debug, Default)]
pub struct RuntimeConfig {
    /// The resources it was compiled from.
    pub resources: Resources,
    /// Name of the listener served.
    pub listener: Option<String>,
    /// Routing table of that listener.
    pub routes: Arc<RouteTable>,
    /// That listener's connection timeouts.
    pub timeouts: listener::Timeouts,
    /// That listener's TLS: connections accepted under this config start with a handshake.
    /// `None`: plaintext.
    pub listener_tls: Option<Arc<crate::tls::ServerTls>>,
    /// Clusters by Envoy name.
    pub clusters: ClusterMap,
    /// EDS clusters whose endpoints have not arrived yet.
    pub awaiting_endpoints: usize,
    /// Whether some cluster's requests take hyper's client ([`ClusterRt::takes_hyper`]), or
    /// some route answers directly: when neither (the common case), the native path need not
    /// ask of each request's route.
    pub any_hyper: bool,
}

impl RuntimeConfig {
    /// Whether a request on `route` may go to a cluster whose requests take hyper's client
    /// (HTTP/2, or TLS): one of its clusters, or their fallbacks, is one.
    #[inline]
    pub fn takes_hyper(&self, route: &crate::router::Route) -> bool {
        self.any_hyper && self.reaches_hyper(route)
    }

    #[cold]
    #[inline(never)]
    fn reaches_hyper(&self, route: &crate::router::Route) -> bool {
        // A direct response or a redirect is answered on hyper's path: the native path stays as
        // it is.
        matches!(
            route.target,
            crate::router::Target::Direct(..) | crate::router::Target::Redirect(..)
        ) || self.reaches(route, ClusterRt::takes_hyper)
    }

    /// Whether a request on `route` may go to an HTTP/2 cluster.
    pub fn reaches_http2(&self, route: &crate::router::Route) -> bool {
        self.any_hyper && self.reaches(route, |c| c.http2)
    }

    /// Whether one of `route`'s clusters, or their fallbacks, is `such`.
    fn reaches(&self, route: &crate::router::Route, such: impl Fn(&ClusterRt) -> bool) -> bool {
        let reaches = |name: &str| {
            self.clusters
                .get(name)
                .is_some_and(|c| such(c) || self.fallback_of(c).is_some_and(|f| such(f)))
        };
        match &route.target {
            crate::router::Target::Cluster(name) => reaches(name),
            crate::router::Target::Weighted(list, _) => list.iter().any(|(name, _)| reaches(name)),
            crate::router::Target::Direct(..) | crate::router::Target::Redirect(..) => false,
        }
    }

    /// The cluster that takes `c`'s traffic when none of its endpoints is usable.
    pub fn fallback_of(&self, c: &ClusterRt) -> Option<&Arc<ClusterRt>> {
        c.fallback.as_ref().and_then(|f| self.clusters.get(f))
    }

    /// Whether a listener, its routes and every cluster's endpoints are in place (as Envoy's
    /// init manager: no traffic before the config is complete).
    pub fn is_ready(&self) -> bool {
        self.listener.is_some() && self.awaiting_endpoints == 0
    }
}

/// Shared state that outlives config versions.
#[derive(Debug, Default)]
pub struct Registries {
    /// Endpoint state.
    pub endpoints: EndpointRegistry,
    /// Counters.
    pub stats: StatsRegistry,
    /// Upstream TLS settings in use.
    pub tls: crate::tls::TlsMade,
    /// The listener's TLS settings in use.
    pub listener_tls: crate::tls::ServerTlsMade,
    loads: std::sync::Mutex<HashMap<String, Arc<ClusterLoad>>>,
}

impl Registries {
    /// The live counts of a cluster (compile time only, never on the request path).
    pub(crate) fn cluster_load(&self, name: &str) -> Arc<ClusterLoad> {
        self.loads().entry(name.to_owned()).or_default().clone()
    }

    fn loads(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<ClusterLoad>>> {
        self.loads.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Forgets the counts of clusters no longer configured, as the endpoint registry forgets
    /// their endpoints (connections still open keep their own reference until they close).
    fn retain_loads(&self, live: &ClusterMap) {
        self.loads().retain(|name, _| live.contains_key(name));
    }
}

/// Compiles `res`; `Err` names the resource that cannot be applied.
pub fn compile(res: &Resources, reg: &Registries) -> Result<RuntimeConfig, ConfigError> {
    let mut clusters = ClusterMap::default();
    let mut live = HashSet::new();
    let mut awaiting_endpoints = 0;
    for (name, raw) in res.of(type_url::CLUSTER) {
        let c: Cluster = cluster::decode(type_url::CLUSTER, name, raw)?;
        let (rt, awaiting) = cluster::compile_cluster(&c, res, reg)?;
        awaiting_endpoints += usize::from(awaiting);
        for e in &rt.endpoints {
            live.insert((rt.name.clone(), e.address.clone()));
        }
        clusters.insert(c.name.clone(), Arc::new(rt));
    }
    let (listener, routes, timeouts, listener_tls) =
        match listener::compile(res, &reg.stats, &reg.listener_tls)? {
            Some(s) => (Some(s.name), Arc::new(s.table), s.timeouts, s.tls),
            None => (
                None,
                Arc::new(RouteTable::default()),
                Default::default(),
                None,
            ),
        };
    reg.endpoints.retain(&live);
    reg.retain_loads(&clusters);
    let any_hyper = clusters.values().any(|c| c.takes_hyper()) || routes.any_local;
    Ok(RuntimeConfig {
        resources: res.clone(),
        listener,
        routes,
        timeouts,
        listener_tls,
        clusters,
        awaiting_endpoints,
        any_hyper,
    })
}

/// Clusters by name. Looked up once per request (a route names its cluster), so with foldhash:
/// SipHash, std's default, showed in the request path's profile. The names come from the
/// control plane, not from clients.
pub type ClusterMap = HashMap<String, Arc<ClusterRt>, foldhash::fast::RandomState>;

/// The ClusterLoadAssignment names clusters refer to (what EDS must subscribe to).
pub fn eds_names(res: &Resources) -> Vec<String> {
    let mut out: Vec<String> = res
        .of(type_url::CLUSTER)
        .filter_map(|(_, raw)| Cluster::decode(raw.body.clone()).ok())
        .filter(|c| matches!(c.cluster_discovery_type, Some(pb_cluster::ClusterDiscoveryType::Type(t)) if t == pb_cluster::DiscoveryType::Eds as i32))
        .map(|c| c.eds_cluster_config.map(|e| e.service_name).filter(|s| !s.is_empty()).unwrap_or(c.name))
        .collect();
    out.sort();
    out
}
