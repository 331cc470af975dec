//! Compiling a `Cluster` (and its `ClusterLoadAssignment`) into a [`ClusterRt`]: strategy from
//! gw's metadata (else the nearest Envoy `lb_policy`), limits from `circuit_breakers`, endpoints
//! resolved through the [`Registries`] so their state survives the update.

use super::{type_url, ClusterRt, ConfigError, Raw, Registries, Resources};
use crate::endpoint::Endpoint;
use crate::lb;
use crate::limits::{ClusterLoad, Maxima};
use gw_proto::envoy::pb::envoy::config::cluster::v3::{cluster, Cluster};
use gw_proto::envoy::pb::envoy::config::core::v3::{address, socket_address, HealthStatus};
use gw_proto::envoy::pb::envoy::config::endpoint::v3::{lb_endpoint, ClusterLoadAssignment};
use gw_proto::envoy::pb::google::protobuf::{value, Struct, Value};
use gw_proto::model::{ClusterSpec, LbPolicy};
use prost::Message;
use std::sync::Arc;
use std::time::Duration;

/// Decodes one held resource.
pub(super) fn decode<M: Message + Default>(
    type_url: &'static str,
    name: &str,
    raw: &Raw,
) -> Result<M, ConfigError> {
    M::decode(raw.body.clone()).map_err(|source| ConfigError::Decode {
        type_url,
        name: name.to_owned(),
        source,
    })
}

pub(super) fn split(name: &str) -> (String, String) {
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

/// gw's knobs from `metadata.filter_metadata["gw"]`: the strategy (read on its own, so a newer
/// control plane's extra fields never lose it), the whole spec when it parses, the fallback.
fn gw_spec(c: &Cluster) -> (Option<LbPolicy>, Option<ClusterSpec>, Option<String>) {
    let Some(s) = c
        .metadata
        .as_ref()
        .and_then(|m| m.filter_metadata.get("gw"))
    else {
        return (None, None, None);
    };
    let mut json = struct_to_json(s);
    let lb = json
        .get("lb")
        .and_then(|v| serde_json::from_value::<LbPolicy>(v.clone()).ok());
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
    (lb, serde_json::from_value(json).ok(), fallback)
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
    breaker: &crate::breaker::BreakerConfig,
    load: &Arc<ClusterLoad>,
    tls: Option<&Arc<crate::tls::UpstreamTls>>,
) -> Result<Vec<Arc<Endpoint>>, ConfigError> {
    let bad = |reason: &str| ConfigError::Endpoints {
        cluster: cluster.to_owned(),
        reason: reason.to_owned(),
    };
    let mut out = Vec::new();
    for locality in &cla.endpoints {
        for lbe in &locality.lb_endpoints {
            let Some(lb_endpoint::HostIdentifier::Endpoint(e)) = &lbe.host_identifier else {
                return Err(bad("endpoint without an address"));
            };
            let Some(address::Address::SocketAddress(sa)) =
                e.address.as_ref().and_then(|a| a.address.as_ref())
            else {
                return Err(bad("only socket addresses are supported"));
            };
            let Some(socket_address::PortSpecifier::PortValue(port)) = sa.port_specifier else {
                return Err(bad("named ports are not supported"));
            };
            let addr = if sa.address.contains(':') {
                format!("[{}]:{port}", sa.address)
            } else {
                format!("{}:{port}", sa.address)
            };
            let weight = lbe.load_balancing_weight.as_ref().map_or(1, |w| w.value);
            let ep = reg
                .endpoints
                .get_with(cluster, &addr, weight, breaker, load, tls);
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

fn lb_of(c: &Cluster, gw: Option<LbPolicy>) -> LbPolicy {
    if let Some(lb) = gw {
        return lb;
    }
    match cluster::LbPolicy::try_from(c.lb_policy) {
        Ok(cluster::LbPolicy::LeastRequest) => LbPolicy::LeastConn,
        Ok(cluster::LbPolicy::RingHash | cluster::LbPolicy::Maglev) => LbPolicy::IpHash,
        _ => LbPolicy::RoundRobin,
    }
}

/// What of a cluster gw-proxy does not follow and which changes what its requests get: NACKed
/// by name rather than ignored. gw's own load balancing, breaker and health settings come in the
/// cluster's `gw` metadata; a cluster without them is balanced by its `lb_policy`.
#[allow(deprecated)]
fn unfollowed_in_cluster(c: &Cluster) -> Option<&'static str> {
    use cluster::LbPolicy as P;
    let lb_known = matches!(
        P::try_from(c.lb_policy),
        Ok(P::RoundRobin | P::LeastRequest | P::RingHash | P::Maglev)
    );
    let thresholds = c
        .circuit_breakers
        .as_ref()
        .map_or(&[][..], |b| &b.thresholds[..]);
    crate::config::first_set(&[
        (
            "lb_policy other than ROUND_ROBIN, LEAST_REQUEST, RING_HASH and MAGLEV",
            !lb_known,
        ),
        ("load_balancing_policy", c.load_balancing_policy.is_some()),
        ("lb_subset_config", c.lb_subset_config.is_some()),
        (
            "transport_socket_matcher",
            c.transport_socket_matcher.is_some(),
        ),
        (
            "max_requests_per_connection",
            c.max_requests_per_connection.is_some(),
        ),
        (
            "upstream_http_protocol_options",
            c.upstream_http_protocol_options.is_some(),
        ),
        (
            "common_http_protocol_options",
            c.common_http_protocol_options.is_some(),
        ),
        ("http_protocol_options", c.http_protocol_options.is_some()),
        ("http2_protocol_options", c.http2_protocol_options.is_some()),
        ("upstream_bind_config", c.upstream_bind_config.is_some()),
        (
            "protocol_selection USE_DOWNSTREAM_PROTOCOL",
            c.protocol_selection != 0,
        ),
        ("filters", !c.filters.is_empty()),
        ("upstream_config", c.upstream_config.is_some()),
        (
            "connection_pool_per_downstream_connection",
            c.connection_pool_per_downstream_connection,
        ),
        ("queuing_policies", c.queuing_policies.is_some()),
        (
            "close_connections_on_host_health_failure",
            c.close_connections_on_host_health_failure,
        ),
        (
            "circuit_breakers other than one DEFAULT-priority threshold",
            thresholds.len() > 1 || thresholds.iter().any(|t| t.priority != 0),
        ),
    ])
}

/// Compiles one cluster; the flag says its EDS endpoints have not arrived yet.
pub(super) fn compile_cluster(
    c: &Cluster,
    res: &Resources,
    reg: &Registries,
) -> Result<(ClusterRt, bool), ConfigError> {
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
            return Err(ConfigError::Cluster {
                name: c.name.clone(),
                reason: "only EDS and STATIC clusters are supported".into(),
            })
        }
    };
    if let Some(what) = unfollowed_in_cluster(c) {
        return Err(ConfigError::Cluster {
            name: c.name.clone(),
            reason: format!("{what} is not supported"),
        });
    }
    let awaiting = cla.is_none();
    let http2 = http2_of(c)?;
    let bad = |reason: String| ConfigError::Cluster {
        name: c.name.clone(),
        reason,
    };
    if !c.transport_socket_matches.is_empty() {
        return Err(bad("transport_socket_matches is not supported".into()));
    }
    let tls =
        crate::tls::UpstreamTls::of(c.transport_socket.as_ref(), http2, &reg.tls).map_err(bad)?;
    let (gw_lb, spec, fallback) = gw_spec(c);
    // gw's breaker settings when the control plane sent them; the origin's defaults otherwise.
    let breaker = spec
        .as_ref()
        .map(|s| crate::breaker::BreakerConfig::from(&s.circuit_breaker))
        .unwrap_or_default();
    let load = reg.cluster_load(&c.name);
    let endpoints = match &cla {
        Some(cla) => endpoints_of(cla, &c.name, reg, &breaker, &load, tls.as_ref())?,
        None => Vec::new(),
    };
    let lb = lb_of(c, gw_lb);
    let (tenant, short) = split(&c.name);
    let thresholds = c
        .circuit_breakers
        .as_ref()
        .and_then(|b| b.thresholds.first());
    // Envoy's defaults for what the threshold leaves out.
    let default = Maxima::default().0;
    let maxima = Maxima(match thresholds {
        Some(t) => [
            t.max_connections.as_ref().map_or(default[0], |v| v.value),
            t.max_pending_requests
                .as_ref()
                .map_or(default[1], |v| v.value),
            t.max_requests.as_ref().map_or(default[2], |v| v.value),
            t.max_retries.as_ref().map_or(default[3], |v| v.value),
        ],
        None => default,
    });
    let connect_timeout = c
        .connect_timeout
        .as_ref()
        .map_or(Duration::from_secs(5), super::pb_duration_clamped);
    let endpoint_stats = endpoints
        .iter()
        .map(|e| {
            reg.stats
                .get("endpoint", &tenant, &format!("{short}/{}", e.address))
        })
        .collect();
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
            fail_on: spec
                .as_ref()
                .map(|s| crate::breaker::FailOn::from(&s.circuit_breaker))
                .unwrap_or_default(),
            maxima,
            load,
            spec,
            http2,
            tls,
        },
        awaiting,
    ))
}

/// Whether the cluster's endpoints speak HTTP/2: Envoy's upstream HTTP protocol options, spelled
/// out (`explicit_http_config`); what gw-proxy cannot follow (choosing by the downstream's
/// protocol or by ALPN) is refused.
fn http2_of(c: &Cluster) -> Result<bool, ConfigError> {
    use gw_proto::envoy::pb::envoy::extensions::upstreams::http::v3::http_protocol_options::{
        explicit_http_config::ProtocolConfig, UpstreamProtocolOptions,
    };
    use gw_proto::envoy::pb::envoy::extensions::upstreams::http::v3::HttpProtocolOptions;
    use gw_proto::http_protocol::KEY;
    let bad = |reason: String| ConfigError::Cluster {
        name: c.name.clone(),
        reason,
    };
    let Some(any) = c.typed_extension_protocol_options.get(KEY) else {
        return Ok(false);
    };
    let o = HttpProtocolOptions::decode(any.value.as_slice())
        .map_err(|e| bad(format!("typed_extension_protocol_options[{KEY}]: {e}")))?;
    match o.upstream_protocol_options {
        None => Ok(false),
        Some(UpstreamProtocolOptions::ExplicitHttpConfig(e)) => match e.protocol_config {
            None | Some(ProtocolConfig::HttpProtocolOptions(_)) => Ok(false),
            Some(ProtocolConfig::Http2ProtocolOptions(_)) => Ok(true),
            Some(ProtocolConfig::Http3ProtocolOptions(_)) => {
                Err(bad("unsupported upstream protocol: HTTP/3".into()))
            }
        },
        Some(_) => Err(bad(
            "unsupported upstream protocol options: only explicit_http_config (HTTP/1.1 or \
             HTTP/2) is supported"
                .into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::super::{compile, fixture, type_url, Registries};
    use gw_proto::envoy::pb::google::protobuf::{value, Value};
    use gw_proto::model::LbPolicy;
    use std::sync::Arc;

    fn res(lb: &str, eps: u16) -> super::Resources {
        let addrs = (0..eps)
            .map(|i| {
                (
                    format!("127.0.0.1:{}", 9000 + i)
                        .parse()
                        .unwrap_or_else(|_| unreachable!()),
                    1,
                )
            })
            .collect();
        fixture::simple(
            vec![fixture::prefix_route("t/r", "/", "t/a")],
            &[("t/a", lb, addrs)],
        )
    }

    #[test]
    fn strategy_survives_unknown_metadata_fields() {
        let mut r = res("response_time", 2);
        let mut c = fixture::cluster("t/a", "response_time");
        if let Some(m) = c.metadata.as_mut() {
            if let Some(s) = m.filter_metadata.get_mut("gw") {
                s.fields.insert(
                    "someFutureKnob".into(),
                    Value {
                        kind: Some(value::Kind::BoolValue(true)),
                    },
                );
            }
        }
        r.insert(type_url::CLUSTER, "t/a", "2", &c);
        let rt = compile(&r, &Registries::default()).expect("compiles");
        assert_eq!(rt.clusters["t/a"].lb, LbPolicy::ResponseTime);
        assert!(rt.is_ready());
    }

    #[test]
    fn endpoint_state_survives_updates_and_removed_ones_go() {
        let reg = Registries::default();
        let v1 = compile(&res("least_conn", 3), &reg).expect("v1");
        let kept = v1.clusters["t/a"].endpoints[0].clone();
        let _busy = kept.start();
        let v2 = compile(&res("least_conn", 2), &reg).expect("v2");
        let again = &v2.clusters["t/a"].endpoints[0];
        assert!(Arc::ptr_eq(&kept, again));
        assert_eq!(again.in_flight(), 1);
        let v3 = compile(&res("least_conn", 3), &reg).expect("v3");
        assert_eq!(
            v3.clusters["t/a"].endpoints[2].in_flight(),
            0,
            "a re-added endpoint starts fresh"
        );
    }

    #[test]
    fn unusable_resources_name_themselves() {
        let mut r = res("round_robin", 1);
        r.insert(type_url::CLUSTER, "t/x", "1", &{
            let mut c = fixture::cluster("t/x", "round_robin");
            c.cluster_discovery_type = Some(
                gw_proto::envoy::pb::envoy::config::cluster::v3::cluster::ClusterDiscoveryType::Type(
                    gw_proto::envoy::pb::envoy::config::cluster::v3::cluster::DiscoveryType::StrictDns as i32,
                ),
            );
            c
        });
        let err = compile(&r, &Registries::default())
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some("Cluster t/x: only EDS and STATIC clusters are supported")
        );
    }

    #[test]
    fn counts_survive_updates_and_go_with_their_cluster() {
        let reg = Registries::default();
        let first = compile(&res("round_robin", 2), &reg).unwrap_or_else(|e| panic!("{e}"));
        let again = compile(&res("round_robin", 3), &reg).unwrap_or_else(|e| panic!("{e}"));
        assert!(Arc::ptr_eq(
            &first.clusters["t/a"].load,
            &again.clusters["t/a"].load
        ));
        // A config without the cluster forgets its counts; one that brings it back starts anew.
        let mut other = res("round_robin", 1);
        if let Some(clusters) = other.by_type.get_mut(type_url::CLUSTER) {
            clusters.remove("t/a");
        }
        compile(&other, &reg).unwrap_or_else(|e| panic!("{e}"));
        assert!(reg.loads().is_empty());
        let back = compile(&res("round_robin", 2), &reg).unwrap_or_else(|e| panic!("{e}"));
        assert!(!Arc::ptr_eq(
            &first.clusters["t/a"].load,
            &back.clusters["t/a"].load
        ));
    }

    #[test]
    #[allow(deprecated)]
    fn what_a_cluster_sets_that_is_not_followed_is_refused_by_name() {
        use gw_proto::envoy::pb::envoy::config::cluster::v3::{
            circuit_breakers::Thresholds, cluster, CircuitBreakers, Cluster,
        };
        use gw_proto::envoy::pb::envoy::config::core::v3::RoutingPriority;
        use gw_proto::envoy::pb::google::protobuf::UInt32Value;
        let base = fixture::cluster("t/a", "round_robin");
        assert_eq!(super::unfollowed_in_cluster(&base), None);
        let threshold = |priority: RoutingPriority| Thresholds {
            priority: priority as i32,
            ..Default::default()
        };
        type Change = fn(&mut Cluster);
        let cases: [(&str, Change); 5] = [
            ("lb_policy other than", |c| {
                c.lb_policy = cluster::LbPolicy::Random as i32
            }),
            ("lb_subset_config", |c| {
                c.lb_subset_config = Some(Default::default())
            }),
            ("max_requests_per_connection", |c| {
                c.max_requests_per_connection = Some(UInt32Value { value: 1 })
            }),
            ("upstream_http_protocol_options", |c| {
                c.upstream_http_protocol_options = Some(Default::default())
            }),
            ("protocol_selection", |c| c.protocol_selection = 1),
        ];
        for (want, change) in cases {
            let mut c = base.clone();
            change(&mut c);
            let got = super::unfollowed_in_cluster(&c).unwrap_or_default();
            assert!(got.contains(want), "{want}: {got}");
        }
        // One threshold of default priority is followed; a HIGH one is not.
        let mut c = base.clone();
        c.circuit_breakers = Some(CircuitBreakers {
            thresholds: vec![threshold(RoutingPriority::Default)],
            ..Default::default()
        });
        assert_eq!(super::unfollowed_in_cluster(&c), None);
        c.circuit_breakers = Some(CircuitBreakers {
            thresholds: vec![threshold(RoutingPriority::High)],
            ..Default::default()
        });
        assert!(super::unfollowed_in_cluster(&c)
            .unwrap_or_default()
            .contains("circuit_breakers"));
        // Through a whole config: NACKed by the cluster's name.
        let mut r = res("round_robin", 1);
        let mut bad = fixture::cluster("t/a", "round_robin");
        bad.lb_policy = cluster::LbPolicy::Random as i32;
        r.insert(type_url::CLUSTER, "t/a", "2", &bad);
        let e = compile(&r, &Registries::default()).unwrap_err().to_string();
        assert!(
            e.contains("t/a") && e.contains("lb_policy other than"),
            "{e}"
        );
    }
}
