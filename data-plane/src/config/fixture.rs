//! Builders for the Envoy resources the control plane sends, shaped as its translation shapes
//! them: tests and benchmarks feed these to a proxy without a control plane
//! ([`crate::server::Shared::apply`]) or serve them from a scripted ADS server.

use super::{type_url, Raw, Resources};
use gw_proto::envoy::pb::envoy::config::cluster::v3::{cluster, Cluster};
use gw_proto::envoy::pb::envoy::config::core::v3::{
    address, config_source, socket_address, Address, AggregatedConfigSource, ConfigSource,
    Metadata, SocketAddress,
};
use gw_proto::envoy::pb::envoy::config::endpoint::v3::{
    lb_endpoint, ClusterLoadAssignment, Endpoint, LbEndpoint, LocalityLbEndpoints,
};
use gw_proto::envoy::pb::envoy::config::listener::v3::{filter, Filter, FilterChain, Listener};
use gw_proto::envoy::pb::envoy::config::route::v3 as rt;
use gw_proto::envoy::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    http_connection_manager::RouteSpecifier, HttpConnectionManager, Rds,
};
use gw_proto::envoy::pb::google::protobuf::{value, Any, Duration, Struct, UInt32Value, Value};
use prost::Message;
use std::net::SocketAddr;

const HCM: &str =
    "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager";

impl Resources {
    /// Adds (or replaces) one resource, encoded, at `version`.
    pub fn insert<M: Message>(&mut self, type_url: &str, name: &str, version: &str, msg: &M) {
        self.by_type.entry(type_url.to_owned()).or_default().insert(
            name.to_owned(),
            Raw {
                version: version.to_owned(),
                body: msg.encode_to_vec().into(),
            },
        );
    }
}

fn ads() -> ConfigSource {
    ConfigSource {
        config_source_specifier: Some(config_source::ConfigSourceSpecifier::Ads(
            AggregatedConfigSource {},
        )),
        ..Default::default()
    }
}

/// A listener whose HTTP connection manager takes its routes from RDS `route_config`.
pub fn listener(name: &str, port: u32, route_config: &str) -> Listener {
    listener_with(name, port, route_config, |_| {})
}

/// [`listener`], its HTTP connection manager changed by `edit` (timeouts, say).
pub fn listener_with(
    name: &str,
    port: u32,
    route_config: &str,
    edit: impl FnOnce(&mut HttpConnectionManager),
) -> Listener {
    // An edge listener, as the control plane makes every one (gw-proxy refuses others).
    let mut hcm = HttpConnectionManager {
        stat_prefix: name.into(),
        use_remote_address: Some(gw_proto::envoy::pb::google::protobuf::BoolValue { value: true }),
        preserve_external_request_id: true,
        route_specifier: Some(RouteSpecifier::Rds(Rds {
            config_source: Some(ads()),
            route_config_name: route_config.into(),
        })),
        ..Default::default()
    };
    edit(&mut hcm);
    Listener {
        name: name.into(),
        address: Some(socket("0.0.0.0", port)),
        filter_chains: vec![FilterChain {
            filters: vec![Filter {
                name: "envoy.filters.network.http_connection_manager".into(),
                config_type: Some(filter::ConfigType::TypedConfig(Any {
                    type_url: HCM.into(),
                    value: hcm.encode_to_vec(),
                })),
            }],
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn socket(ip: &str, port: u32) -> Address {
    Address {
        address: Some(address::Address::SocketAddress(SocketAddress {
            address: ip.into(),
            port_specifier: Some(socket_address::PortSpecifier::PortValue(port)),
            ..Default::default()
        })),
    }
}

/// A route configuration with one virtual host per `(domains, routes)`.
pub fn route_config(
    name: &str,
    vhosts: Vec<(Vec<&str>, Vec<rt::Route>)>,
) -> rt::RouteConfiguration {
    rt::RouteConfiguration {
        name: name.into(),
        virtual_hosts: vhosts
            .into_iter()
            .enumerate()
            .map(|(i, (domains, routes))| rt::VirtualHost {
                name: format!("vh{i}"),
                domains: domains.into_iter().map(str::to_owned).collect(),
                routes,
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}

/// A route on a path prefix to one cluster.
pub fn prefix_route(name: &str, prefix: &str, cluster: &str) -> rt::Route {
    rt::Route {
        name: name.into(),
        r#match: Some(rt::RouteMatch {
            path_specifier: Some(rt::route_match::PathSpecifier::Prefix(prefix.into())),
            ..Default::default()
        }),
        action: Some(rt::route::Action::Route(rt::RouteAction {
            cluster_specifier: Some(rt::route_action::ClusterSpecifier::Cluster(cluster.into())),
            ..Default::default()
        })),
        ..Default::default()
    }
}

/// The route's action, to adjust timeouts, retries or hash policies.
pub fn action(r: &mut rt::Route) -> Option<&mut rt::RouteAction> {
    match &mut r.action {
        Some(rt::route::Action::Route(a)) => Some(a),
        _ => None,
    }
}

/// A protobuf duration.
pub fn duration(d: std::time::Duration) -> Duration {
    Duration {
        seconds: d.as_secs() as i64,
        nanos: d.subsec_nanos() as i32,
    }
}

/// An EDS cluster with gw's strategy `lb` in `metadata.filter_metadata["gw"]`.
pub fn cluster(name: &str, lb: &str) -> Cluster {
    let envoy_lb = match lb {
        "least_conn" | "response_time" => cluster::LbPolicy::LeastRequest,
        "ip_hash" => cluster::LbPolicy::RingHash,
        _ => cluster::LbPolicy::RoundRobin,
    };
    let meta = Struct {
        fields: [(
            "lb".to_owned(),
            Value {
                kind: Some(value::Kind::StringValue(lb.into())),
            },
        )]
        .into(),
    };
    Cluster {
        name: name.into(),
        cluster_discovery_type: Some(cluster::ClusterDiscoveryType::Type(
            cluster::DiscoveryType::Eds as i32,
        )),
        eds_cluster_config: Some(cluster::EdsClusterConfig {
            eds_config: Some(ads()),
            service_name: String::new(),
        }),
        lb_policy: envoy_lb as i32,
        connect_timeout: Some(duration(std::time::Duration::from_secs(1))),
        metadata: Some(Metadata {
            filter_metadata: [("gw".to_owned(), meta)].into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Makes `c` speak HTTP/2 to its endpoints, as the control plane says it (Envoy's upstream
/// `http2_protocol_options`, spelled out).
pub fn http2(c: &mut Cluster) {
    c.typed_extension_protocol_options.insert(
        gw_proto::http_protocol::KEY.into(),
        gw_proto::http_protocol::http2(),
    );
}

/// Gives `c` gw's health check, as the control plane sends it in the cluster's metadata: every
/// 50 ms, 1 s timeout, one probe to flip either way; HTTP to `path`, else a TCP connect.
pub fn health_check(c: &mut Cluster, path: Option<&str>) {
    let text = |s: &str| Value {
        kind: Some(value::Kind::StringValue(s.into())),
    };
    let num = |n: f64| Value {
        kind: Some(value::Kind::NumberValue(n)),
    };
    let mut fields: std::collections::HashMap<String, Value> = [
        ("interval".to_owned(), text("50ms")),
        ("timeout".to_owned(), text("1s")),
        ("healthyThreshold".to_owned(), num(1.0)),
        ("unhealthyThreshold".to_owned(), num(1.0)),
    ]
    .into();
    if let Some(path) = path {
        fields.insert("path".to_owned(), text(path));
    }
    let hc = Value {
        kind: Some(value::Kind::StructValue(Struct {
            fields: fields.into_iter().collect(),
        })),
    };
    if let Some(gw) = c
        .metadata
        .as_mut()
        .and_then(|m| m.filter_metadata.get_mut("gw"))
    {
        gw.fields.insert("healthCheck".into(), hc);
    }
}

/// Makes `c` speak TLS to its endpoints with `ctx` (Envoy's TLS transport socket).
pub fn tls(
    c: &mut Cluster,
    ctx: &gw_proto::envoy::pb::envoy::extensions::transport_sockets::tls::v3::UpstreamTlsContext,
) {
    c.transport_socket = Some(tls_socket(crate::tls::UPSTREAM_TLS_CONTEXT, ctx));
}

/// Makes `l`'s filter chain speak TLS to clients with `ctx` (Envoy's TLS transport socket).
pub fn listener_tls(
    l: &mut Listener,
    ctx: &gw_proto::envoy::pb::envoy::extensions::transport_sockets::tls::v3::DownstreamTlsContext,
) {
    for fc in &mut l.filter_chains {
        fc.transport_socket = Some(tls_socket(crate::tls::DOWNSTREAM_TLS_CONTEXT, ctx));
    }
}

/// Envoy's TLS transport socket with `ctx`, a context of type `type_url`.
fn tls_socket(
    type_url: &str,
    ctx: &impl Message,
) -> gw_proto::envoy::pb::envoy::config::core::v3::TransportSocket {
    use gw_proto::envoy::pb::envoy::config::core::v3::{transport_socket, TransportSocket};
    TransportSocket {
        name: crate::tls::TLS_SOCKET.into(),
        config_type: Some(transport_socket::ConfigType::TypedConfig(
            gw_proto::envoy::pb::google::protobuf::Any {
                type_url: type_url.into(),
                value: ctx.encode_to_vec(),
            },
        )),
    }
}

/// The endpoints of `cluster`: `(address, weight)`.
pub fn endpoints(cluster: &str, eps: &[(SocketAddr, u32)]) -> ClusterLoadAssignment {
    ClusterLoadAssignment {
        cluster_name: cluster.into(),
        endpoints: vec![LocalityLbEndpoints {
            lb_endpoints: eps
                .iter()
                .map(|(a, w)| LbEndpoint {
                    host_identifier: Some(lb_endpoint::HostIdentifier::Endpoint(Endpoint {
                        address: Some(socket(&a.ip().to_string(), u32::from(a.port()))),
                        ..Default::default()
                    })),
                    load_balancing_weight: Some(UInt32Value { value: *w }),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// A cluster for [`simple`]: `(name, lb, endpoints as (address, weight))`.
pub type ClusterDef<'a> = (&'a str, &'a str, Vec<(SocketAddr, u32)>);

/// A whole config: listener `ingress` → route config `ingress` with `routes` on `*`, and
/// `clusters` as `(name, lb, endpoints)`.
pub fn simple(routes: Vec<rt::Route>, clusters: &[ClusterDef<'_>]) -> Resources {
    let mut res = Resources::default();
    res.insert(
        type_url::LISTENER,
        "ingress",
        "1",
        &listener("ingress", 8080, "ingress"),
    );
    res.insert(
        type_url::ROUTE,
        "ingress",
        "1",
        &route_config("ingress", vec![(vec!["*"], routes)]),
    );
    for (name, lb, eps) in clusters {
        res.insert(type_url::CLUSTER, name, "1", &cluster(name, lb));
        res.insert(type_url::ENDPOINT, name, "1", &endpoints(name, eps));
    }
    res
}
