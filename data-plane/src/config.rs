//! Runtime config: the xDS resources a proxy holds, compiled into an immutable routing table and
//! cluster set that the request path reads through one atomic pointer load.
//!
//! Compilation is all-or-nothing: a resource that cannot be applied fails the whole candidate
//! with a message naming it (the NACK `error_detail`), and the previous config keeps serving.
//! Endpoint state lives in the [`EndpointRegistry`] and counters in the [`StatsRegistry`], so both
//! survive updates that keep the endpoint / object.

pub mod fixture;

use crate::endpoint::{Endpoint, EndpointRegistry};
use crate::lb::{self, Balancer, PickContext};
use crate::router::RouteTable;
use crate::stats::{ObjStats, StatsRegistry};
use gw_proto::envoy::pb::envoy::config::cluster::v3::{cluster, Cluster};
use gw_proto::envoy::pb::envoy::config::core::v3::{address, socket_address, HealthStatus};
use gw_proto::envoy::pb::envoy::config::endpoint::v3::{lb_endpoint, ClusterLoadAssignment};
use gw_proto::envoy::pb::envoy::config::listener::v3::Listener;
use gw_proto::envoy::pb::envoy::config::route::v3::RouteConfiguration;
use gw_proto::envoy::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    http_connection_manager::RouteSpecifier, HttpConnectionManager,
};
use gw_proto::envoy::pb::google::protobuf::{value, Struct, Value};
use gw_proto::model::{ClusterSpec, LbPolicy};
use prost::Message;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::AtomicU32;
use std::sync::Arc;
use std::time::Duration;

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
#[derive(Debug, Clone, PartialEq)]
pub struct Raw {
    /// Per-resource version.
    pub version: String,
    /// Protobuf encoding.
    pub body: bytes::Bytes,
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
    balancer: Box<dyn Balancer>,
    /// Cluster counters.
    pub stats: Arc<ObjStats>,
    /// Envoy name of the cluster that takes traffic when none of ours is usable.
    pub fallback: Option<String>,
    /// Max concurrent requests (Envoy `max_requests`).
    pub max_requests: u32,
    /// Max concurrent retries (Envoy `max_retries`).
    pub max_retries: u32,
    /// Requests in flight now (shared across config versions).
    pub active: Arc<AtomicU32>,
    /// Retries in flight now.
    pub active_retries: Arc<AtomicU32>,
    /// gw's cluster spec, when the control plane sent one.
    pub spec: Option<ClusterSpec>,
}

impl ClusterRt {
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
    /// Clusters by Envoy name.
    pub clusters: HashMap<String, Arc<ClusterRt>>,
    /// EDS clusters whose endpoints have not arrived yet.
    pub awaiting_endpoints: usize,
}

impl RuntimeConfig {
    /// Whether a listener, its routes and every cluster's endpoints are in place (as Envoy's
    /// init manager: no traffic before the config is complete).
    pub fn is_ready(&self) -> bool {
        self.listener.is_some() && self.awaiting_endpoints == 0
    }
}

/// A cluster's requests-in-flight and retries-in-flight counters.
type ClusterCounters = (Arc<AtomicU32>, Arc<AtomicU32>);

/// Shared state that outlives config versions.
#[derive(Debug, Default)]
pub struct Registries {
    /// Endpoint state.
    pub endpoints: EndpointRegistry,
    /// Counters.
    pub stats: StatsRegistry,
    counters: std::sync::Mutex<HashMap<String, ClusterCounters>>,
}

impl Registries {
    fn cluster_counters(&self, name: &str) -> (Arc<AtomicU32>, Arc<AtomicU32>) {
        let mut m = match self.counters.lock() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        };
        m.entry(name.to_owned()).or_default().clone()
    }
}

fn decode<M: Message + Default>(type_url: &str, name: &str, raw: &Raw) -> Result<M, String> {
    M::decode(raw.body.clone()).map_err(|e| format!("{type_url} {name}: cannot decode: {e}"))
}

fn split(name: &str) -> (String, String) {
    name.split_once('/')
        .map_or((String::new(), name.to_owned()), |(t, n)| {
            (t.into(), n.into())
        })
}

fn struct_to_json(s: &Struct) -> serde_json::Value {
    fn v(x: &Value) -> serde_json::Value {
        match &x.kind {
            Some(value::Kind::NumberValue(n)) => serde_json::json!(n),
            Some(value::Kind::StringValue(s)) => serde_json::json!(s),
            Some(value::Kind::BoolValue(b)) => serde_json::json!(b),
            Some(value::Kind::StructValue(s)) => struct_to_json(s),
            Some(value::Kind::ListValue(l)) => {
                serde_json::Value::Array(l.values.iter().map(v).collect())
            }
            Some(value::Kind::NullValue(_)) | None => serde_json::Value::Null,
        }
    }
    serde_json::Value::Object(s.fields.iter().map(|(k, x)| (k.clone(), v(x))).collect())
}

/// gw's cluster spec and fallback from `metadata.filter_metadata["gw"]`.
fn gw_spec(c: &Cluster) -> (Option<ClusterSpec>, Option<String>) {
    let Some(s) = c
        .metadata
        .as_ref()
        .and_then(|m| m.filter_metadata.get("gw"))
    else {
        return (None, None);
    };
    let mut json = struct_to_json(s);
    let fallback = json
        .get("fallbackClusterName")
        .and_then(|v| v.as_str())
        .map(str::to_owned);
    if let Some(m) = json.as_object_mut() {
        for k in ["tenant", "name", "fallbackClusterName"] {
            m.remove(k);
        }
        // Struct numbers are floats; the spec wants integers where it says so.
        for v in m.values_mut() {
            integerize(v);
        }
    }
    (serde_json::from_value(json).ok(), fallback)
}

fn integerize(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Number(n) => {
            if let Some(f) = n.as_f64() {
                if f.fract() == 0.0 && (0.0..1e15).contains(&f) {
                    *v = serde_json::json!(f as u64);
                }
            }
        }
        serde_json::Value::Object(m) => m.values_mut().for_each(integerize),
        serde_json::Value::Array(a) => a.iter_mut().for_each(integerize),
        _ => {}
    }
}

fn endpoints_of(
    cla: &ClusterLoadAssignment,
    cluster: &str,
    reg: &Registries,
) -> Result<Vec<Arc<Endpoint>>, String> {
    let mut out = Vec::new();
    for locality in &cla.endpoints {
        for lbe in &locality.lb_endpoints {
            let Some(lb_endpoint::HostIdentifier::Endpoint(e)) = &lbe.host_identifier else {
                return Err(format!(
                    "ClusterLoadAssignment {cluster}: endpoint without an address"
                ));
            };
            let Some(address::Address::SocketAddress(sa)) =
                e.address.as_ref().and_then(|a| a.address.as_ref())
            else {
                return Err(format!(
                    "ClusterLoadAssignment {cluster}: only socket addresses are supported"
                ));
            };
            let Some(socket_address::PortSpecifier::PortValue(port)) = sa.port_specifier else {
                return Err(format!(
                    "ClusterLoadAssignment {cluster}: named ports are not supported"
                ));
            };
            let addr = if sa.address.contains(':') {
                format!("[{}]:{port}", sa.address)
            } else {
                format!("{}:{port}", sa.address)
            };
            let weight = lbe.load_balancing_weight.as_ref().map_or(1, |w| w.value);
            let ep = reg.endpoints.get(cluster, &addr, weight);
            let healthy = !matches!(
                HealthStatus::try_from(lbe.health_status),
                Ok(HealthStatus::Unhealthy | HealthStatus::Draining | HealthStatus::Timeout)
            );
            ep.healthy
                .store(healthy, std::sync::atomic::Ordering::Relaxed);
            out.push(ep);
        }
    }
    Ok(out)
}

fn lb_of(c: &Cluster, spec: Option<&ClusterSpec>) -> LbPolicy {
    if let Some(s) = spec {
        return s.lb;
    }
    match cluster::LbPolicy::try_from(c.lb_policy) {
        Ok(cluster::LbPolicy::LeastRequest) => LbPolicy::LeastConn,
        Ok(cluster::LbPolicy::RingHash | cluster::LbPolicy::Maglev) => LbPolicy::IpHash,
        _ => LbPolicy::RoundRobin,
    }
}

fn compile_cluster(
    c: &Cluster,
    res: &Resources,
    reg: &Registries,
) -> Result<(ClusterRt, bool), String> {
    use cluster::ClusterDiscoveryType as T;
    let cla = match &c.cluster_discovery_type {
        Some(T::Type(t)) if *t == cluster::DiscoveryType::Eds as i32 => {
            let service = c
                .eds_cluster_config
                .as_ref()
                .map(|e| e.service_name.clone())
                .filter(|s| !s.is_empty());
            let key = service.unwrap_or_else(|| c.name.clone());
            match res
                .by_type
                .get(type_url::ENDPOINT)
                .and_then(|m| m.get(&key))
            {
                Some(raw) => Some(decode::<ClusterLoadAssignment>(
                    type_url::ENDPOINT,
                    &key,
                    raw,
                )?),
                None => None,
            }
        }
        Some(T::Type(t)) if *t == cluster::DiscoveryType::Static as i32 => {
            c.load_assignment.clone()
        }
        _ => {
            return Err(format!(
                "Cluster {}: only EDS and STATIC clusters are supported",
                c.name
            ))
        }
    };
    let awaiting = cla.is_none();
    let endpoints = match &cla {
        Some(cla) => endpoints_of(cla, &c.name, reg)?,
        None => Vec::new(),
    };
    let (spec, fallback) = gw_spec(c);
    let lb = lb_of(c, spec.as_ref());
    let (tenant, short) = split(&c.name);
    let thresholds = c
        .circuit_breakers
        .as_ref()
        .and_then(|b| b.thresholds.first());
    let max_requests = thresholds
        .and_then(|t| t.max_requests.as_ref())
        .map_or(1024, |v| v.value);
    let max_retries = thresholds
        .and_then(|t| t.max_retries.as_ref())
        .map_or(3, |v| v.value);
    let connect_timeout = c
        .connect_timeout
        .as_ref()
        .map_or(Duration::from_secs(5), |d| {
            Duration::new(d.seconds.max(0) as u64, d.nanos.max(0) as u32)
        });
    let endpoint_stats = endpoints
        .iter()
        .map(|e| {
            reg.stats
                .get("endpoint", &tenant, &format!("{short}/{}", e.address))
        })
        .collect();
    let (active, active_retries) = reg.cluster_counters(&c.name);
    Ok((
        ClusterRt {
            balancer: lb::build(lb, &endpoints),
            stats: reg.stats.get("cluster", &tenant, &short),
            name: c.name.clone(),
            tenant,
            short,
            lb,
            connect_timeout,
            endpoints,
            endpoint_stats,
            fallback,
            max_requests,
            max_retries,
            active,
            active_retries,
            spec,
        },
        awaiting,
    ))
}

/// Compiles `res`; `Err` names the resource that cannot be applied.
pub fn compile(res: &Resources, reg: &Registries) -> Result<RuntimeConfig, String> {
    let mut clusters = HashMap::new();
    let mut live = HashSet::new();
    let mut awaiting_endpoints = 0;
    for (name, raw) in res.of(type_url::CLUSTER) {
        let c: Cluster = decode(type_url::CLUSTER, name, raw)?;
        let (rt, awaiting) = compile_cluster(&c, res, reg)?;
        awaiting_endpoints += usize::from(awaiting);
        for e in &rt.endpoints {
            live.insert((rt.name.clone(), e.address.clone()));
        }
        clusters.insert(c.name.clone(), Arc::new(rt));
    }
    let stats = |tenant: &str, name: &str| reg.stats.get("route", tenant, name);
    let mut listener = None;
    let mut routes = Arc::new(RouteTable::default());
    if let Some((name, raw)) = res.of(type_url::LISTENER).next() {
        let l: Listener = decode(type_url::LISTENER, name, raw)?;
        let hcm = l
            .filter_chains
            .iter()
            .flat_map(|fc| &fc.filters)
            .find_map(|f| match &f.config_type {
                Some(gw_proto::envoy::pb::envoy::config::listener::v3::filter::ConfigType::TypedConfig(any)) => {
                    HttpConnectionManager::decode(any.value.as_slice()).ok()
                }
                _ => None,
            })
            .ok_or_else(|| format!("Listener {name}: no http_connection_manager filter"))?;
        match hcm.route_specifier {
            Some(RouteSpecifier::Rds(rds)) => {
                // Until RDS arrives the listener is known but not ready.
                if let Some(raw) = res
                    .by_type
                    .get(type_url::ROUTE)
                    .and_then(|m| m.get(&rds.route_config_name))
                {
                    let rc: RouteConfiguration =
                        decode(type_url::ROUTE, &rds.route_config_name, raw)?;
                    routes = Arc::new(
                        RouteTable::compile(&rc, &stats)
                            .map_err(|e| format!("RouteConfiguration {}: {e}", rc.name))?,
                    );
                    listener = Some(name.clone());
                }
            }
            Some(RouteSpecifier::RouteConfig(rc)) => {
                routes = Arc::new(
                    RouteTable::compile(&rc, &stats)
                        .map_err(|e| format!("Listener {name}: {e}"))?,
                );
                listener = Some(name.clone());
            }
            _ => return Err(format!("Listener {name}: unsupported route specifier")),
        }
    }
    // Every route configuration must compile, served or not: a NACK must not wait for LDS.
    for (name, raw) in res.of(type_url::ROUTE) {
        let rc: RouteConfiguration = decode(type_url::ROUTE, name, raw)?;
        RouteTable::compile(&rc, &|_, _| Arc::new(ObjStats::default()))
            .map_err(|e| format!("RouteConfiguration {name}: {e}"))?;
    }
    reg.endpoints.retain(&live);
    Ok(RuntimeConfig {
        resources: res.clone(),
        listener,
        routes,
        clusters,
        awaiting_endpoints,
    })
}

/// The route-configuration names listeners refer to (what RDS must subscribe to).
pub fn rds_names(res: &Resources) -> Vec<String> {
    let mut out = Vec::new();
    for (_, raw) in res.of(type_url::LISTENER) {
        let Ok(l) = Listener::decode(raw.body.clone()) else {
            continue;
        };
        for f in l.filter_chains.iter().flat_map(|fc| &fc.filters) {
            if let Some(
                gw_proto::envoy::pb::envoy::config::listener::v3::filter::ConfigType::TypedConfig(
                    any,
                ),
            ) = &f.config_type
            {
                if let Ok(h) = HttpConnectionManager::decode(any.value.as_slice()) {
                    if let Some(RouteSpecifier::Rds(r)) = h.route_specifier {
                        out.push(r.route_config_name);
                    }
                }
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

/// The ClusterLoadAssignment names clusters refer to (what EDS must subscribe to).
pub fn eds_names(res: &Resources) -> Vec<String> {
    let mut out: Vec<String> = res
        .of(type_url::CLUSTER)
        .filter_map(|(_, raw)| Cluster::decode(raw.body.clone()).ok())
        .filter(|c| matches!(c.cluster_discovery_type, Some(cluster::ClusterDiscoveryType::Type(t)) if t == cluster::DiscoveryType::Eds as i32))
        .map(|c| c.eds_cluster_config.map(|e| e.service_name).filter(|s| !s.is_empty()).unwrap_or(c.name))
        .collect();
    out.sort();
    out
}
