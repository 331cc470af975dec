//! Cluster: EDS over ADS, connect timeout, load-balancing policy per DESIGN.md's mapping, circuit
//! breaker thresholds from `limits`, outlier detection from `circuitBreaker`, active health checks
//! from `healthCheck`.
//!
//! `metadata.filter_metadata["gw"]` (ignored by Envoy) carries what Envoy cannot express, for
//! gw-proxy: the cluster spec in manifest form (camelCase, durations as `"30s"`, without
//! `endpoints` and `tls`, which the transport socket carries) plus `tenant`, `name` and, when set, `fallbackClusterName` (the Envoy name of
//! `fallbackCluster`). A gw-proxy can deserialize it into `gw_proto::model::ClusterSpec`.

use super::listener::ads_source;
use super::{any, cluster_name, duration, versioned, GW_METADATA};
use crate::xds::fingerprint::Fingerprint;
use crate::xds::snapshot::Resource;
use gw_proto::envoy::pb::envoy::config::cluster::v3::{
    circuit_breakers, cluster, CircuitBreakers, Cluster, OutlierDetection,
};
use gw_proto::envoy::pb::envoy::config::core::v3::{
    health_check, HealthCheck as EnvoyHealthCheck, Metadata, RoutingPriority,
};
use gw_proto::envoy::pb::envoy::r#type::v3::{CodecClientType, Int64Range};
use gw_proto::envoy::pb::google::protobuf::{
    value, ListValue, Struct, UInt32Value, Value as PbValue,
};
use gw_proto::model::{ClusterSpec, HealthCheck, LbPolicy, UpstreamProtocol};
use prost::Message;

/// One cluster.
pub fn cluster(tenant: &str, name: &str, spec: &ClusterSpec) -> Resource {
    let full = cluster_name(tenant, name);
    let (lb, lb_config) = lb_policy(spec.lb);
    let mut c = Cluster {
        name: full.clone(),
        connect_timeout: Some(duration(spec.connect_timeout)),
        cluster_discovery_type: Some(cluster::ClusterDiscoveryType::Type(
            cluster::DiscoveryType::Eds as i32,
        )),
        eds_cluster_config: Some(cluster::EdsClusterConfig {
            eds_config: Some(ads_source()),
            service_name: String::new(),
        }),
        lb_policy: lb as i32,
        lb_config,
        circuit_breakers: Some(circuit_breakers_of(spec)),
        outlier_detection: Some(outlier_detection(spec)),
        health_checks: spec
            .health_check
            .iter()
            .map(|h| health_check_of(h, &full, spec.protocol))
            .collect(),
        typed_extension_protocol_options: protocol_options(spec.protocol),
        transport_socket: spec
            .tls
            .as_ref()
            .map(|t| transport_socket(t, spec.protocol)),
        ..Default::default()
    };
    // Version over the metadata-free encoding plus the canonical JSON of the metadata (see
    // `fingerprint`: map fields do not encode deterministically).
    let meta = gw_metadata(tenant, name, spec);
    let version = Fingerprint::new()
        .str("cluster")
        .bytes(&c.encode_to_vec())
        .str(&meta.to_string())
        .version();
    c.metadata = Some(Metadata {
        filter_metadata: [(GW_METADATA.to_owned(), to_struct(&meta))].into(),
        ..Default::default()
    });
    let refs = spec
        .fallback_cluster
        .iter()
        .map(|f| cluster_name(tenant, f))
        .collect();
    versioned(
        full,
        version,
        any(&c),
        vec![format!("cluster/{tenant}/{name}")],
        refs,
    )
}

/// Envoy's TLS transport socket for `tls`: the SNI; unless `insecureSkipVerify`, a validation
/// context with the CA (inline, or the system's file) and, with an SNI, that name as the only
/// subject alt name accepted (Envoy checks no name otherwise); `h2` offered by ALPN to an HTTP/2
/// cluster (gRPC servers require it over TLS).
fn transport_socket(
    tls: &gw_proto::model::UpstreamTls,
    protocol: UpstreamProtocol,
) -> gw_proto::envoy::pb::envoy::config::core::v3::TransportSocket {
    use gw_proto::envoy::pb::envoy::config::core::v3::{
        data_source, transport_socket, DataSource, TransportSocket,
    };
    use gw_proto::envoy::pb::envoy::extensions::transport_sockets::tls::v3::{
        common_tls_context::ValidationContextType, subject_alt_name_matcher::SanType,
        tls_parameters::TlsProtocol, CertificateValidationContext, CommonTlsContext,
        SubjectAltNameMatcher, TlsParameters, UpstreamTlsContext,
    };
    use gw_proto::envoy::pb::envoy::r#type::matcher::v3::{string_matcher, StringMatcher};
    let validation = (!tls.insecure_skip_verify).then(|| {
        let ca = match tls.ca.as_str() {
            "" => data_source::Specifier::Filename(gw_proto::model::SYSTEM_CA_FILE.to_owned()),
            pem => data_source::Specifier::InlineString(pem.to_owned()),
        };
        let names = (!tls.sni.is_empty()).then(|| SubjectAltNameMatcher {
            san_type: SanType::Dns as i32,
            matcher: Some(StringMatcher {
                match_pattern: Some(string_matcher::MatchPattern::Exact(tls.sni.clone())),
                ..Default::default()
            }),
            ..Default::default()
        });
        ValidationContextType::ValidationContext(CertificateValidationContext {
            trusted_ca: Some(DataSource {
                specifier: Some(ca),
                ..Default::default()
            }),
            match_typed_subject_alt_names: names.into_iter().collect(),
            ..Default::default()
        })
    });
    let alpn = match protocol {
        UpstreamProtocol::Http2 => vec!["h2".to_owned()],
        UpstreamProtocol::Http1 => Vec::new(),
    };
    // TLS 1.3 allowed (Envoy's client default stops at 1.2).
    let params = TlsParameters {
        tls_minimum_protocol_version: TlsProtocol::TlSv12 as i32,
        tls_maximum_protocol_version: TlsProtocol::TlSv13 as i32,
        ..Default::default()
    };
    let ctx = UpstreamTlsContext {
        common_tls_context: Some(CommonTlsContext {
            alpn_protocols: alpn,
            validation_context_type: validation,
            tls_params: Some(params),
            ..Default::default()
        }),
        sni: tls.sni.clone(),
        ..Default::default()
    };
    TransportSocket {
        name: "envoy.transport_sockets.tls".to_owned(),
        config_type: Some(transport_socket::ConfigType::TypedConfig(any(&ctx))),
    }
}

/// Envoy's upstream protocol options for `protocol`: HTTP/2 spelled out (Envoy's default,
/// HTTP/1.1, needs none).
fn protocol_options(
    protocol: UpstreamProtocol,
) -> std::collections::HashMap<String, gw_proto::envoy::pb::google::protobuf::Any> {
    match protocol {
        UpstreamProtocol::Http1 => Default::default(),
        UpstreamProtocol::Http2 => [(
            gw_proto::http_protocol::KEY.to_owned(),
            gw_proto::http_protocol::http2(),
        )]
        .into(),
    }
}

fn lb_policy(lb: LbPolicy) -> (cluster::LbPolicy, Option<cluster::LbConfig>) {
    match lb {
        LbPolicy::RoundRobin | LbPolicy::Weighted | LbPolicy::Availability => {
            (cluster::LbPolicy::RoundRobin, None)
        }
        LbPolicy::LeastConn | LbPolicy::ResponseTime => (
            cluster::LbPolicy::LeastRequest,
            Some(cluster::LbConfig::LeastRequestLbConfig(
                cluster::LeastRequestLbConfig {
                    choice_count: Some(UInt32Value { value: 2 }),
                    ..Default::default()
                },
            )),
        ),
        LbPolicy::IpHash => (
            cluster::LbPolicy::RingHash,
            Some(cluster::LbConfig::RingHashLbConfig(
                cluster::RingHashLbConfig::default(),
            )),
        ),
    }
}

fn u32v(value: u32) -> Option<UInt32Value> {
    Some(UInt32Value { value })
}

fn circuit_breakers_of(spec: &ClusterSpec) -> CircuitBreakers {
    let l = &spec.limits;
    CircuitBreakers {
        thresholds: vec![circuit_breakers::Thresholds {
            priority: RoutingPriority::Default as i32,
            max_connections: u32v(l.max_connections),
            max_pending_requests: u32v(l.max_pending_requests),
            max_requests: u32v(l.max_requests),
            max_retries: u32v(l.max_retries),
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// The nearest Envoy equivalent of gw's per-endpoint breaker: eject after `consecutiveFailures`
/// failures or when the failure rate over `minimumRequests` passes `failureRateThreshold`, for
/// `openTimeout`.
///
/// `failOn` picks Envoy's counter: `5xx` → `consecutive_5xx`; `gateway-error` alone →
/// `consecutive_gateway_failure`. Envoy cannot tell connect failures, resets and timeouts apart
/// for ejection: any of them in `failOn` counts all three (Envoy's default), none of them splits
/// local-origin errors out and never ejects on them.
fn outlier_detection(spec: &ClusterSpec) -> OutlierDetection {
    let cb = &spec.circuit_breaker;
    let percent = (cb.failure_rate_threshold * 100.0)
        .round()
        .clamp(1.0, 100.0) as u32;
    let any_5xx = cb.fails_on("5xx");
    let gateway_only = !any_5xx && cb.fails_on("gateway-error");
    let local = ["connect-failure", "reset", "timeout"]
        .iter()
        .any(|k| cb.fails_on(k));
    let n = cb.consecutive_failures;
    OutlierDetection {
        consecutive_5xx: u32v(n),
        enforcing_consecutive_5xx: u32v(if any_5xx { 100 } else { 0 }),
        consecutive_gateway_failure: gateway_only.then_some(UInt32Value { value: n }),
        enforcing_consecutive_gateway_failure: gateway_only.then_some(UInt32Value { value: 100 }),
        split_external_local_origin_errors: !local,
        enforcing_consecutive_local_origin_failure: (!local).then_some(UInt32Value { value: 0 }),
        enforcing_local_origin_success_rate: (!local).then_some(UInt32Value { value: 0 }),
        failure_percentage_threshold: u32v(percent),
        enforcing_failure_percentage: u32v(100),
        failure_percentage_request_volume: u32v(cb.minimum_requests.max(1)),
        failure_percentage_minimum_hosts: u32v(1),
        base_ejection_time: Some(duration(cb.open_timeout)),
        interval: Some(duration(std::time::Duration::from_secs(1))),
        // Each endpoint has its own breaker in gw-proxy, so any number may be out; Envoy's panic
        // threshold (below 50 % healthy, use all) keeps a cluster from being emptied. Envoy's
        // default (10 %) would eject nobody in a cluster of fewer than ten endpoints.
        max_ejection_percent: u32v(100),
        ..Default::default()
    }
}

fn health_check_of(h: &HealthCheck, cluster: &str, protocol: UpstreamProtocol) -> EnvoyHealthCheck {
    // An HTTP/2 cluster's endpoints are probed over HTTP/2 (they may speak nothing else).
    let codec = match protocol {
        UpstreamProtocol::Http1 => CodecClientType::Http1,
        UpstreamProtocol::Http2 => CodecClientType::Http2,
    };
    let checker = match &h.path {
        Some(path) => health_check::HealthChecker::HttpHealthCheck(health_check::HttpHealthCheck {
            host: h.host.clone().unwrap_or_else(|| cluster.to_owned()),
            path: path.clone(),
            codec_client_type: codec as i32,
            expected_statuses: h
                .expected_statuses
                .iter()
                .map(|s| Int64Range {
                    start: i64::from(*s),
                    end: i64::from(*s) + 1,
                })
                .collect(),
            ..Default::default()
        }),
        None => {
            health_check::HealthChecker::TcpHealthCheck(health_check::TcpHealthCheck::default())
        }
    };
    EnvoyHealthCheck {
        timeout: Some(duration(h.timeout)),
        interval: Some(duration(h.interval)),
        unhealthy_threshold: u32v(h.unhealthy_threshold),
        healthy_threshold: u32v(h.healthy_threshold),
        health_checker: Some(checker),
        ..Default::default()
    }
}

/// The `gw` metadata as JSON.
pub fn gw_metadata(tenant: &str, name: &str, spec: &ClusterSpec) -> serde_json::Value {
    let mut v = serde_json::to_value(spec).unwrap_or_default();
    if let Some(m) = v.as_object_mut() {
        m.remove("endpoints");
        // The transport socket says it all (and a CA bundle need not travel twice).
        m.remove("tls");
        m.insert("tenant".into(), tenant.into());
        m.insert("name".into(), name.into());
        if let Some(f) = &spec.fallback_cluster {
            m.insert("fallbackClusterName".into(), cluster_name(tenant, f).into());
        }
    }
    v
}

/// JSON to a protobuf `Struct` (non-objects are wrapped as `{"value": …}`).
pub fn to_struct(v: &serde_json::Value) -> Struct {
    match to_value(v).kind {
        Some(value::Kind::StructValue(s)) => s,
        other => Struct {
            fields: [("value".to_owned(), PbValue { kind: other })].into(),
        },
    }
}

fn to_value(v: &serde_json::Value) -> PbValue {
    use serde_json::Value as J;
    let kind = match v {
        J::Null => value::Kind::NullValue(0),
        J::Bool(b) => value::Kind::BoolValue(*b),
        J::Number(n) => value::Kind::NumberValue(n.as_f64().unwrap_or(0.0)),
        J::String(s) => value::Kind::StringValue(s.clone()),
        J::Array(a) => value::Kind::ListValue(ListValue {
            values: a.iter().map(to_value).collect(),
        }),
        J::Object(o) => value::Kind::StructValue(Struct {
            fields: o.iter().map(|(k, v)| (k.clone(), to_value(v))).collect(),
        }),
    };
    PbValue { kind: Some(kind) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec_failing_on(kinds: &[&str]) -> ClusterSpec {
        let mut s = ClusterSpec::default();
        s.circuit_breaker.fail_on = kinds.iter().map(|k| (*k).to_owned()).collect();
        s
    }

    #[test]
    fn fail_on_picks_envoys_ejection_counter() {
        let on = |v: &Option<UInt32Value>| v.as_ref().map(|v| v.value);
        let d = outlier_detection(&ClusterSpec::default());
        assert_eq!(on(&d.enforcing_consecutive_5xx), Some(100));
        assert_eq!(on(&d.enforcing_consecutive_gateway_failure), None);
        assert!(
            !d.split_external_local_origin_errors,
            "connect failures, resets and timeouts count, as gw's default says"
        );

        let g = outlier_detection(&spec_failing_on(&["gateway-error"]));
        assert_eq!(on(&g.enforcing_consecutive_5xx), Some(0));
        assert_eq!(on(&g.consecutive_gateway_failure), Some(5));
        assert_eq!(on(&g.enforcing_consecutive_gateway_failure), Some(100));
        assert!(g.split_external_local_origin_errors);
        assert_eq!(on(&g.enforcing_consecutive_local_origin_failure), Some(0));

        let t = outlier_detection(&spec_failing_on(&["5xx", "timeout"]));
        assert!(!t.split_external_local_origin_errors);
    }

    #[test]
    fn a_tls_cluster_gets_envoys_tls_transport_socket() {
        use gw_proto::envoy::pb::envoy::config::core::v3::{data_source, transport_socket};
        use gw_proto::envoy::pb::envoy::extensions::transport_sockets::tls::v3::{
            common_tls_context::ValidationContextType, UpstreamTlsContext,
        };
        use gw_proto::model::UpstreamTls;
        let ctx = |tls: UpstreamTls, protocol| {
            let s = transport_socket(&tls, protocol);
            assert_eq!(s.name, "envoy.transport_sockets.tls");
            let Some(transport_socket::ConfigType::TypedConfig(any)) = s.config_type else {
                panic!("no typed config")
            };
            assert_eq!(
                any.type_url,
                "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext"
            );
            let ctx = UpstreamTlsContext::decode(any.value.as_slice()).unwrap();
            let common = ctx.common_tls_context.clone().unwrap();
            // TLS 1.2 to 1.3 (Envoy's client default stops at 1.2).
            let p = common.tls_params.clone().unwrap();
            assert_eq!(
                (
                    p.tls_minimum_protocol_version,
                    p.tls_maximum_protocol_version
                ),
                (3, 4)
            );
            let v = match common.validation_context_type {
                Some(ValidationContextType::ValidationContext(v)) => Some(v),
                None => None,
                Some(other) => panic!("{other:?}"),
            };
            (ctx.sni, common.alpn_protocols, v)
        };
        let (sni, alpn, v) = ctx(
            UpstreamTls {
                sni: "api.example.com".into(),
                ca: "PEM".into(),
                ..Default::default()
            },
            UpstreamProtocol::Http2,
        );
        assert_eq!(
            (sni.as_str(), alpn),
            ("api.example.com", vec!["h2".to_owned()])
        );
        let v = v.unwrap();
        assert_eq!(
            v.trusted_ca.unwrap().specifier,
            Some(data_source::Specifier::InlineString("PEM".into()))
        );
        assert_eq!(v.match_typed_subject_alt_names.len(), 1);
        let m = &v.match_typed_subject_alt_names[0];
        assert_eq!(m.san_type, 2, "DNS");
        assert_eq!(
            m.matcher.as_ref().unwrap().match_pattern,
            Some(gw_proto::envoy::pb::envoy::r#type::matcher::v3::string_matcher::MatchPattern::Exact(
                "api.example.com".into()
            ))
        );
        // No CA: the system's file; no SNI: no name checked; HTTP/1.1: no ALPN given (Envoy's
        // pool offers its own).
        let (sni, alpn, v) = ctx(UpstreamTls::default(), UpstreamProtocol::Http1);
        assert!(sni.is_empty() && alpn.is_empty());
        let v = v.unwrap();
        assert_eq!(
            v.trusted_ca.unwrap().specifier,
            Some(data_source::Specifier::Filename(
                gw_proto::model::SYSTEM_CA_FILE.into()
            ))
        );
        assert!(v.match_typed_subject_alt_names.is_empty());
        // insecureSkipVerify: no validation context at all.
        let (_, _, v) = ctx(
            UpstreamTls {
                sni: "a.test".into(),
                insecure_skip_verify: true,
                ..Default::default()
            },
            UpstreamProtocol::Http1,
        );
        assert!(v.is_none());
    }

    #[test]
    fn an_http2_cluster_spells_out_envoys_upstream_protocol() {
        use gw_proto::envoy::pb::envoy::extensions::upstreams::http::v3::http_protocol_options::{
            explicit_http_config::ProtocolConfig, UpstreamProtocolOptions,
        };
        use gw_proto::envoy::pb::envoy::extensions::upstreams::http::v3::HttpProtocolOptions;
        use prost::Message;
        assert!(protocol_options(UpstreamProtocol::Http1).is_empty());
        // Its endpoints are health-checked over HTTP/2 too (they may speak nothing else).
        let hc = HealthCheck {
            path: Some("/health".into()),
            ..Default::default()
        };
        for (protocol, codec) in [
            (UpstreamProtocol::Http1, CodecClientType::Http1),
            (UpstreamProtocol::Http2, CodecClientType::Http2),
        ] {
            let Some(health_check::HealthChecker::HttpHealthCheck(h)) =
                health_check_of(&hc, "c", protocol).health_checker
            else {
                panic!("not an HTTP check");
            };
            assert_eq!(h.codec_client_type, codec as i32);
        }
        let o = protocol_options(UpstreamProtocol::Http2);
        let any = &o["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"];
        assert_eq!(
            any.type_url,
            "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
        );
        let h = HttpProtocolOptions::decode(any.value.as_slice()).unwrap();
        assert!(matches!(
            h.upstream_protocol_options,
            Some(UpstreamProtocolOptions::ExplicitHttpConfig(e))
                if matches!(e.protocol_config, Some(ProtocolConfig::Http2ProtocolOptions(_)))
        ));
    }
}
