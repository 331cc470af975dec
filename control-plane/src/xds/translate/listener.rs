//! Listener (HTTP connection manager with RDS over ADS) and its RouteConfiguration.

use super::{any, duration, resource, route, Model, DEFAULT_LISTENER};
use crate::xds::snapshot::Resource;
use gw_proto::envoy::pb::envoy::config::accesslog::v3::{
    access_log, access_log_filter, comparison_filter, AccessLog, AccessLogFilter, ComparisonFilter,
    OrFilter, ResponseFlagFilter, RuntimeFilter, StatusCodeFilter,
};
use gw_proto::envoy::pb::envoy::config::core::v3::{
    address, config_source, socket_address, Address, AggregatedConfigSource, ApiVersion,
    ConfigSource, HttpProtocolOptions, SocketAddress,
};
use gw_proto::envoy::pb::envoy::config::core::v3::{grpc_service, GrpcService, RuntimeUInt32};
use gw_proto::envoy::pb::envoy::config::listener::v3::{filter, Filter, FilterChain, Listener};
use gw_proto::envoy::pb::envoy::extensions::access_loggers::grpc::v3::{
    CommonGrpcAccessLogConfig, HttpGrpcAccessLogConfig,
};
use gw_proto::envoy::pb::envoy::extensions::filters::http::router::v3::Router;
use gw_proto::envoy::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    http_connection_manager, http_filter, HttpConnectionManager, HttpFilter, Rds,
};
use gw_proto::envoy::pb::envoy::r#type::v3::FractionalPercent;
use gw_proto::model::ListenerSpec;

/// The cluster a stock Envoy's bootstrap must give the control plane for its access logs to
/// reach gw (gw-proxy streams to the control plane it gets xDS from, whatever this says).
pub const CONTROL_PLANE_CLUSTER: &str = "gw-xds";

/// Percent of successful requests a stock Envoy logs (runtime key
/// `gw.access_log.success_sample_percent` overrides it); errors are always logged.
pub const SUCCESS_SAMPLE_PERCENT: u32 = 1;

/// The HCM access log: Envoy's gRPC `AccessLogService` to the control plane, for every response
/// ≥ 500, every request with a response flag (upstream failure, timeout, overflow…), and a sample
/// of the rest — the same records gw-proxy sends.
pub fn access_log() -> AccessLog {
    let f = |s: access_log_filter::FilterSpecifier| AccessLogFilter {
        filter_specifier: Some(s),
    };
    let errors = f(access_log_filter::FilterSpecifier::StatusCodeFilter(
        StatusCodeFilter {
            comparison: Some(ComparisonFilter {
                op: comparison_filter::Op::Ge as i32,
                value: Some(RuntimeUInt32 {
                    default_value: 500,
                    runtime_key: "gw.access_log.min_error_status".into(),
                }),
            }),
        },
    ));
    let flagged = f(access_log_filter::FilterSpecifier::ResponseFlagFilter(
        ResponseFlagFilter { flags: Vec::new() },
    ));
    let sampled = f(access_log_filter::FilterSpecifier::RuntimeFilter(
        RuntimeFilter {
            runtime_key: "gw.access_log.success_sample_percent".into(),
            percent_sampled: Some(FractionalPercent {
                numerator: SUCCESS_SAMPLE_PERCENT,
                denominator: 0,
            }),
            use_independent_randomness: true,
        },
    ));
    let config = HttpGrpcAccessLogConfig {
        common_config: Some(CommonGrpcAccessLogConfig {
            log_name: "gw".into(),
            grpc_service: Some(GrpcService {
                target_specifier: Some(grpc_service::TargetSpecifier::EnvoyGrpc(
                    grpc_service::EnvoyGrpc {
                        cluster_name: CONTROL_PLANE_CLUSTER.into(),
                        ..Default::default()
                    },
                )),
                ..Default::default()
            }),
            transport_api_version: ApiVersion::V3 as i32,
            ..Default::default()
        }),
        ..Default::default()
    };
    AccessLog {
        name: "envoy.access_loggers.http_grpc".into(),
        filter: Some(f(access_log_filter::FilterSpecifier::OrFilter(OrFilter {
            filters: vec![errors, flagged, sampled],
        }))),
        config_type: Some(access_log::ConfigType::TypedConfig(any(&config))),
    }
}

/// A `ConfigSource` that says "over the ADS stream, v3".
pub fn ads_source() -> ConfigSource {
    ConfigSource {
        resource_api_version: ApiVersion::V3 as i32,
        config_source_specifier: Some(config_source::ConfigSourceSpecifier::Ads(
            AggregatedConfigSource {},
        )),
        ..Default::default()
    }
}

/// Listeners and one RouteConfiguration per listener (same name).
pub fn listeners(
    model: &Model<'_>,
    cache: &mut route::RouteCache,
) -> (Vec<Resource>, Vec<Resource>) {
    let default = ListenerSpec::default();
    let defined: Vec<(&str, &ListenerSpec, bool)> = if model.listeners.is_empty() {
        vec![(DEFAULT_LISTENER, &default, false)]
    } else {
        model
            .listeners
            .iter()
            .map(|(n, l)| (*n, *l, true))
            .collect()
    };
    let mut listeners = Vec::new();
    let mut configs = Vec::new();
    for (name, spec, from_object) in defined {
        let mut l = listener(name, spec);
        if from_object {
            l.origin = vec![format!("listener/{name}")];
            l.node_cluster = Some(spec.node_cluster.clone());
        }
        listeners.push(l);
        configs.push(if spec.https_redirect {
            route::https_redirect_configuration(name)
        } else {
            route::route_configuration(name, model, cache)
        });
    }
    (listeners, configs)
}

/// One listener.
fn listener(name: &str, spec: &ListenerSpec) -> Resource {
    let hcm = HttpConnectionManager {
        stat_prefix: name.to_owned(),
        codec_type: http_connection_manager::CodecType::Auto as i32,
        common_http_protocol_options: Some(HttpProtocolOptions {
            idle_timeout: Some(duration(spec.idle_timeout)),
            max_connection_duration: (!spec.max_connection_duration.is_zero())
                .then(|| duration(spec.max_connection_duration)),
            ..Default::default()
        }),
        request_headers_timeout: (!spec.request_headers_timeout.is_zero())
            .then(|| duration(spec.request_headers_timeout)),
        // Always set: 0s turns Envoy's stream idle timeout off, unset would mean its 5 min.
        stream_idle_timeout: Some(duration(spec.stream_idle_timeout)),
        // An edge proxy, as gw-proxy is: the client's address is appended to x-forwarded-for
        // and x-forwarded-proto is the connection's scheme, whatever the client sent.
        use_remote_address: Some(gw_proto::envoy::pb::google::protobuf::BoolValue { value: true }),
        // A request id a client sends is kept (gw-proxy's behaviour); Envoy would replace it on
        // an edge listener otherwise.
        preserve_external_request_id: true,
        access_log: vec![access_log()],
        route_specifier: Some(http_connection_manager::RouteSpecifier::Rds(Rds {
            config_source: Some(ads_source()),
            route_config_name: name.to_owned(),
        })),
        http_filters: vec![HttpFilter {
            name: "envoy.filters.http.router".into(),
            config_type: Some(http_filter::ConfigType::TypedConfig(
                any(&Router::default()),
            )),
            ..Default::default()
        }],
        ..Default::default()
    };
    let l = Listener {
        name: name.to_owned(),
        address: Some(Address {
            address: Some(address::Address::SocketAddress(SocketAddress {
                address: spec.address.clone(),
                port_specifier: Some(socket_address::PortSpecifier::PortValue(u32::from(
                    spec.port,
                ))),
                ..Default::default()
            })),
        }),
        filter_chains: vec![FilterChain {
            filters: vec![Filter {
                name: "envoy.filters.network.http_connection_manager".into(),
                config_type: Some(filter::ConfigType::TypedConfig(any(&hcm))),
            }],
            transport_socket: spec.tls.as_ref().map(transport_socket),
            // A handshake gets this long (Envoy's default is no bound; gw-proxy's would be a
            // request head's).
            transport_socket_connect_timeout: spec
                .tls
                .as_ref()
                .map(|_| duration(HANDSHAKE_TIMEOUT)),
            ..Default::default()
        }],
        ..Default::default()
    };
    resource(
        name.to_owned(),
        any(&l),
        vec![format!("listener/{name}")],
        vec![name.to_owned()],
    )
}

/// How long a client's TLS handshake may take on a TLS listener.
pub const HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Envoy's TLS transport socket for a listener (`DownstreamTlsContext`): every certificate in
/// one context (Envoy picks among them by the client's SNI, the first when none matches), ALPN
/// `h2` then `http/1.1` (the HCM's codec follows what was negotiated), TLS 1.2 (or 1.3) to 1.3.
fn transport_socket(
    tls: &gw_proto::model::ListenerTls,
) -> gw_proto::envoy::pb::envoy::config::core::v3::TransportSocket {
    use gw_proto::envoy::pb::envoy::config::core::v3::{
        data_source, transport_socket, DataSource, TransportSocket,
    };
    use gw_proto::envoy::pb::envoy::extensions::transport_sockets::tls::v3::{
        tls_parameters::TlsProtocol, CommonTlsContext, DownstreamTlsContext, TlsCertificate,
        TlsParameters,
    };
    let inline = |pem: &str| {
        Some(DataSource {
            specifier: Some(data_source::Specifier::InlineString(pem.to_owned())),
            ..Default::default()
        })
    };
    let ctx = DownstreamTlsContext {
        common_tls_context: Some(CommonTlsContext {
            tls_certificates: tls
                .certificates
                .iter()
                .map(|c| TlsCertificate {
                    certificate_chain: inline(&c.cert_chain),
                    private_key: inline(&c.private_key),
                    ..Default::default()
                })
                .collect(),
            alpn_protocols: vec!["h2".to_owned(), "http/1.1".to_owned()],
            tls_params: Some(TlsParameters {
                tls_minimum_protocol_version: match tls.accepts_tls12() {
                    true => TlsProtocol::TlSv12,
                    false => TlsProtocol::TlSv13,
                } as i32,
                tls_maximum_protocol_version: TlsProtocol::TlSv13 as i32,
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    TransportSocket {
        name: "envoy.transport_sockets.tls".to_owned(),
        config_type: Some(transport_socket::ConfigType::TypedConfig(any(&ctx))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;
    use std::time::Duration;

    fn hcm(spec: &ListenerSpec) -> HttpConnectionManager {
        let r = listener("edge", spec);
        let l = Listener::decode(&r.body.value[..]).unwrap();
        let Some(filter::ConfigType::TypedConfig(any)) = &l.filter_chains[0].filters[0].config_type
        else {
            panic!("no HCM")
        };
        HttpConnectionManager::decode(&any.value[..]).unwrap()
    }

    fn secs(s: i64) -> Option<gw_proto::envoy::pb::google::protobuf::Duration> {
        Some(gw_proto::envoy::pb::google::protobuf::Duration {
            seconds: s,
            nanos: 0,
        })
    }

    #[test]
    fn hcm_carries_the_listener_timeouts() {
        let h = hcm(&ListenerSpec {
            idle_timeout: Duration::from_secs(90),
            request_headers_timeout: Duration::from_secs(10),
            max_connection_duration: Duration::from_secs(600),
            stream_idle_timeout: Duration::from_secs(30),
            ..Default::default()
        });
        let o = h.common_http_protocol_options.as_ref().unwrap();
        assert_eq!(o.idle_timeout, secs(90));
        assert_eq!(o.max_connection_duration, secs(600));
        assert_eq!(h.request_headers_timeout, secs(10));
        assert_eq!(h.stream_idle_timeout, secs(30));
        // Defaults: Envoy's (no headers bound or age limit, 5 min stream idle, said explicitly).
        let h = hcm(&ListenerSpec::default());
        assert_eq!(h.request_headers_timeout, None);
        assert_eq!(
            h.common_http_protocol_options
                .unwrap()
                .max_connection_duration,
            None
        );
        assert_eq!(h.stream_idle_timeout, secs(300));
        // 0s is sent as 0s (off in Envoy), not left unset (which would be Envoy's 5 min).
        let h = hcm(&ListenerSpec {
            stream_idle_timeout: Duration::ZERO,
            ..Default::default()
        });
        assert_eq!(h.stream_idle_timeout, secs(0));
    }

    #[test]
    fn a_tls_listener_gets_envoys_tls_transport_socket() {
        use gw_proto::envoy::pb::envoy::config::core::v3::{data_source, transport_socket};
        use gw_proto::envoy::pb::envoy::extensions::transport_sockets::tls::v3::{
            tls_parameters::TlsProtocol, DownstreamTlsContext,
        };
        use gw_proto::model::{ListenerTls, TlsCertificate};
        let chain = |tls: Option<ListenerTls>| {
            let r = listener(
                "edge",
                &ListenerSpec {
                    tls,
                    ..Default::default()
                },
            );
            Listener::decode(&r.body.value[..]).unwrap().filter_chains[0].clone()
        };
        let socket = |tls: Option<ListenerTls>| chain(tls).transport_socket;
        assert_eq!(chain(None).transport_socket_connect_timeout, None);
        let tls = Some(ListenerTls {
            certificates: vec![TlsCertificate::default()],
            min_version: String::new(),
        });
        assert_eq!(chain(tls).transport_socket_connect_timeout, secs(10));
        assert_eq!(socket(None), None);
        // An edge proxy's headers: the client's address appended, its scheme the connection's.
        assert_eq!(
            hcm(&ListenerSpec::default()).use_remote_address,
            Some(gw_proto::envoy::pb::google::protobuf::BoolValue { value: true })
        );
        let pair = |n: &str| TlsCertificate {
            cert_chain: format!("chain {n}"),
            private_key: format!("key {n}"),
        };
        let ts = socket(Some(ListenerTls {
            certificates: vec![pair("a"), pair("b")],
            min_version: "1.3".into(),
        }))
        .unwrap();
        assert_eq!(ts.name, "envoy.transport_sockets.tls");
        let Some(transport_socket::ConfigType::TypedConfig(any)) = ts.config_type else {
            panic!("no config")
        };
        assert_eq!(
            any.type_url,
            "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext"
        );
        let common = DownstreamTlsContext::decode(&any.value[..])
            .unwrap()
            .common_tls_context
            .unwrap();
        let inline = |d: &Option<gw_proto::envoy::pb::envoy::config::core::v3::DataSource>| match d
            .as_ref()
            .and_then(|d| d.specifier.clone())
        {
            Some(data_source::Specifier::InlineString(s)) => s,
            other => panic!("{other:?}"),
        };
        let got: Vec<(String, String)> = common
            .tls_certificates
            .iter()
            .map(|c| (inline(&c.certificate_chain), inline(&c.private_key)))
            .collect();
        assert_eq!(
            got,
            [("chain a", "key a"), ("chain b", "key b")].map(|(c, k)| (c.to_owned(), k.to_owned()))
        );
        assert_eq!(common.alpn_protocols, ["h2", "http/1.1"]);
        let p = common.tls_params.unwrap();
        assert_eq!(
            (
                p.tls_minimum_protocol_version,
                p.tls_maximum_protocol_version
            ),
            (TlsProtocol::TlSv13 as i32, TlsProtocol::TlSv13 as i32)
        );
    }
}
