//! Listeners and their route configurations: the served listener's HTTP connection manager names
//! its routes (RDS, or inline); every held route configuration must compile, served or not, so a
//! bad one is NACKed at once rather than when a listener starts to use it.

use super::cluster::decode;
use super::{type_url, ConfigError, Resources};
use crate::router::RouteTable;
use crate::stats::{ObjStats, StatsRegistry};
use crate::tls::{ServerTls, ServerTlsMade};
use gw_proto::envoy::pb::envoy::config::listener::v3::{filter::ConfigType, FilterChain, Listener};
use gw_proto::envoy::pb::envoy::config::route::v3::RouteConfiguration;
use gw_proto::envoy::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    http_connection_manager::RouteSpecifier, HttpConnectionManager,
};
use prost::Message;
use std::sync::Arc;
use std::time::Duration;

/// The HTTP connection manager of a listener, if it has one, and the filter chain that holds it.
fn hcm(l: &Listener) -> Option<(HttpConnectionManager, &FilterChain)> {
    l.filter_chains.iter().find_map(|fc| {
        fc.filters.iter().find_map(|f| match &f.config_type {
            Some(ConfigType::TypedConfig(any)) => {
                HttpConnectionManager::decode(any.value.as_slice())
                    .ok()
                    .map(|h| (h, fc))
            }
            _ => None,
        })
    })
}

/// Refuses a listener whose connections would not all be served alike: gw-proxy serves one
/// filter chain, for every connection.
fn one_chain(l: &Listener) -> Result<(), String> {
    if l.filter_chains.len() > 1 || l.default_filter_chain.is_some() {
        return Err("more than one filter chain is not supported".into());
    }
    if l.filter_chains
        .iter()
        .any(|fc| fc.filter_chain_match.is_some())
    {
        return Err("filter_chain_match is not supported".into());
    }
    if !l.listener_filters.is_empty() {
        return Err("listener_filters are not supported".into());
    }
    Ok(())
}

/// What of an HTTP connection manager gw-proxy does not follow and which changes what a request
/// gets: NACKed by name rather than served otherwise than Envoy would. Its filters must be the
/// router alone (a disabled one runs nowhere: routes cannot enable it here); every listener is an
/// edge one (`use_remote_address`), whose `x-forwarded-client-cert` from clients is dropped
/// (Envoy's default `SANITIZE`).
#[allow(deprecated)]
fn unfollowed_in_hcm(h: &HttpConnectionManager) -> Option<String> {
    use gw_proto::envoy::pb::envoy::extensions::filters::network::http_connection_manager::v3::http_filter::ConfigType as Filter;
    const ROUTER: &str = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router";
    let not_router = h.http_filters.iter().find(|f| {
        !f.disabled
            && !matches!(&f.config_type, Some(Filter::TypedConfig(any)) if any.type_url == ROUTER)
    });
    if let Some(f) = not_router {
        return Some(format!(
            "http filter {:?} (only the router is supported)",
            f.name
        ));
    }
    // The router's own options gw-proxy does not follow.
    for f in &h.http_filters {
        if let Some(Filter::TypedConfig(any)) = &f.config_type {
            use gw_proto::envoy::pb::envoy::extensions::filters::http::router::v3::Router;
            let r = Router::decode(any.value.as_slice()).unwrap_or_default();
            let what = crate::config::first_set(&[
                ("suppress_envoy_headers", r.suppress_envoy_headers),
                ("strict_check_headers", !r.strict_check_headers.is_empty()),
                ("respect_expected_rq_timeout", r.respect_expected_rq_timeout),
                ("upstream_http_filters", !r.upstream_http_filters.is_empty()),
            ]);
            if let Some(what) = what.filter(|_| any.type_url == ROUTER) {
                return Some(format!("router {what} is not supported"));
            }
        }
    }
    let o = h.common_http_protocol_options.unwrap_or_default();
    crate::config::first_set(&[
        ("codec_type other than AUTO", h.codec_type != 0),
        (
            "add_user_agent",
            h.add_user_agent.as_ref().is_some_and(|b| b.value),
        ),
        (
            "http1_safe_max_connection_duration",
            h.http1_safe_max_connection_duration,
        ),
        ("http_protocol_options", h.http_protocol_options.is_some()),
        ("http2_protocol_options", h.http2_protocol_options.is_some()),
        ("http3_protocol_options", h.http3_protocol_options.is_some()),
        (
            "scheme_header_transformation",
            h.scheme_header_transformation.is_some(),
        ),
        ("max_request_headers_kb", h.max_request_headers_kb.is_some()),
        ("stream_flush_timeout", h.stream_flush_timeout.is_some()),
        (
            "request_timeout",
            h.request_timeout
                .as_ref()
                .is_some_and(|d| d.seconds != 0 || d.nanos != 0),
        ),
        // gw-proxy is an edge proxy: it appends the client to x-forwarded-for, sets
        // x-forwarded-proto and keeps a client's request id; Envoy does so only when told.
        (
            "use_remote_address other than true",
            h.use_remote_address.is_none_or(|b| !b.value),
        ),
        (
            "preserve_external_request_id other than true",
            !h.preserve_external_request_id,
        ),
        ("xff_num_trusted_hops", h.xff_num_trusted_hops != 0),
        (
            "original_ip_detection_extensions",
            !h.original_ip_detection_extensions.is_empty(),
        ),
        (
            "early_header_mutation_extensions",
            !h.early_header_mutation_extensions.is_empty(),
        ),
        (
            "internal_address_config",
            h.internal_address_config.is_some(),
        ),
        ("skip_xff_append", h.skip_xff_append),
        ("via", !h.via.is_empty()),
        (
            "generate_request_id false",
            h.generate_request_id.as_ref().is_some_and(|b| !b.value),
        ),
        (
            "always_set_request_id_in_response",
            h.always_set_request_id_in_response,
        ),
        // Without client certificates every mode but ALWAYS_FORWARD_ONLY drops a client's.
        (
            "forward_client_cert_details ALWAYS_FORWARD_ONLY",
            h.forward_client_cert_details == 4,
        ),
        (
            "forward_client_cert_matcher",
            h.forward_client_cert_matcher.is_some(),
        ),
        ("proxy_100_continue", h.proxy_100_continue),
        (
            "represent_ipv4_remote_address_as_ipv4_mapped_ipv6",
            h.represent_ipv4_remote_address_as_ipv4_mapped_ipv6,
        ),
        (
            "normalize_path",
            h.normalize_path.as_ref().is_some_and(|b| b.value),
        ),
        ("merge_slashes", h.merge_slashes),
        (
            "path_with_escaped_slashes_action",
            h.path_with_escaped_slashes_action > 1,
        ),
        ("request_id_extension", h.request_id_extension.is_some()),
        ("local_reply_config", h.local_reply_config.is_some()),
        ("strip_matching_host_port", h.strip_matching_host_port),
        (
            "path_normalization_options",
            h.path_normalization_options.is_some(),
        ),
        ("strip_trailing_host_dot", h.strip_trailing_host_dot),
        ("proxy_status_config", h.proxy_status_config.is_some()),
        (
            "typed_header_validation_config",
            h.typed_header_validation_config.is_some(),
        ),
        ("append_x_forwarded_port", h.append_x_forwarded_port),
        ("append_local_overload", h.append_local_overload),
        ("forward_proto_config", h.forward_proto_config.is_some()),
        ("strip_port_mode", h.strip_port_mode.is_some()),
        (
            "common_http_protocol_options.max_headers_count",
            o.max_headers_count.is_some(),
        ),
        (
            "common_http_protocol_options.max_response_headers_kb",
            o.max_response_headers_kb.is_some(),
        ),
        (
            "common_http_protocol_options.max_stream_duration",
            o.max_stream_duration.is_some(),
        ),
        (
            "common_http_protocol_options.headers_with_underscores_action",
            o.headers_with_underscores_action != 0,
        ),
        (
            "common_http_protocol_options.max_requests_per_connection",
            o.max_requests_per_connection.is_some(),
        ),
    ])
    .map(|what| format!("{what} is not supported"))
}

/// The listener served: its name, routing table, timeouts and TLS.
#[derive(Debug)]
pub(super) struct Served {
    pub name: String,
    pub table: RouteTable,
    pub timeouts: Timeouts,
    /// TLS from clients; `None`: plaintext.
    pub tls: Option<Arc<ServerTls>>,
}

/// A listener's connection and stream timeouts, from its HTTP connection manager.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// `common_http_protocol_options.idle_timeout`: `Some(0)` never closes an idle connection;
    /// `None` when the listener sets none (the proxy's `--idle-timeout` applies).
    pub idle: Option<Duration>,
    /// `request_headers_timeout`; `None` (or zero) sets no bound of its own.
    pub request_headers: Option<Duration>,
    /// `common_http_protocol_options.max_connection_duration`: a connection older than this is
    /// closed at its next request boundary; `None` (or zero): no bound.
    pub max_connection: Option<Duration>,
    /// `stream_idle_timeout`: the longest a request may go without progress, from its end
    /// until its response has gone whole (Envoy's default, 5 minutes, when unset); `None`: off.
    pub stream_idle: Option<Duration>,
}

/// Envoy's default stream idle timeout.
pub const STREAM_IDLE_DEFAULT: Duration = Duration::from_secs(300);

/// How long a request head may take when the listener sets neither a headers bound nor a stream
/// idle timeout (Envoy would wait for ever).
pub const HEAD_FALLBACK: Duration = Duration::from_secs(300);

impl Default for Timeouts {
    /// What an HTTP connection manager that sets none has.
    fn default() -> Timeouts {
        Timeouts {
            idle: None,
            request_headers: None,
            max_connection: None,
            stream_idle: Some(STREAM_IDLE_DEFAULT),
        }
    }
}

impl Timeouts {
    /// The idle timeout in force (`fallback` when the listener sets none); `None`: never.
    pub fn idle_or(&self, fallback: Duration) -> Option<Duration> {
        Some(self.idle.unwrap_or(fallback)).filter(|d| !d.is_zero())
    }

    /// How long a request head may take from its first byte: the headers bound or the stream
    /// idle timeout, whichever is shorter (in Envoy both run from a stream's first byte).
    pub fn head(&self) -> Duration {
        match (self.request_headers, self.stream_idle) {
            (Some(h), Some(i)) => h.min(i),
            (Some(d), None) | (None, Some(d)) => d,
            (None, None) => HEAD_FALLBACK,
        }
    }
}

/// When a connection waiting for its next request is given up. Until a byte of the head has
/// come, `idle` after `waiting_since` (`None`: never) or at `expires` (its maximum age), whichever
/// comes first; from the head's first byte, `head` after it, and neither runs (in Envoy a stream
/// is active from its first byte, and a connection past its age closes after that stream).
pub fn wait_deadline(
    waiting_since: tokio::time::Instant,
    head_since: Option<tokio::time::Instant>,
    idle: Option<Duration>,
    head: Duration,
    expires: Option<tokio::time::Instant>,
) -> Option<tokio::time::Instant> {
    match head_since {
        Some(t) => Some(t + head),
        None => idle
            .map(|d| waiting_since + d)
            .into_iter()
            .chain(expires)
            .min(),
    }
}

fn timeouts(name: &str, hcm: &HttpConnectionManager) -> Result<Timeouts, ConfigError> {
    let field = |field: &str, d: Option<&gw_proto::envoy::pb::google::protobuf::Duration>| {
        d.map(super::pb_duration)
            .transpose()
            .map_err(|e| ConfigError::Listener {
                name: name.to_owned(),
                reason: format!("{field}: {e}"),
            })
    };
    Ok(Timeouts {
        idle: field(
            "common_http_protocol_options.idle_timeout",
            hcm.common_http_protocol_options
                .as_ref()
                .and_then(|o| o.idle_timeout.as_ref()),
        )?,
        request_headers: field(
            "request_headers_timeout",
            hcm.request_headers_timeout.as_ref(),
        )?
        .filter(|d| !d.is_zero()),
        max_connection: field(
            "common_http_protocol_options.max_connection_duration",
            hcm.common_http_protocol_options
                .as_ref()
                .and_then(|o| o.max_connection_duration.as_ref()),
        )?
        .filter(|d| !d.is_zero()),
        stream_idle: match field("stream_idle_timeout", hcm.stream_idle_timeout.as_ref())? {
            None => Some(STREAM_IDLE_DEFAULT),
            Some(d) => Some(d).filter(|d| !d.is_zero()),
        },
    })
}

/// The listener served (the first held); `None` until its routes arrive.
pub(super) fn compile(
    res: &Resources,
    stats: &StatsRegistry,
    tls_made: &ServerTlsMade,
) -> Result<Option<Served>, ConfigError> {
    let counters = |tenant: &str, name: &str| stats.get("route", tenant, name);
    let route_err = |name: &str| {
        let name = name.to_owned();
        move |source| ConfigError::Routes { name, source }
    };
    for (name, raw) in res.of(type_url::ROUTE) {
        let rc: RouteConfiguration = decode(type_url::ROUTE, name, raw)?;
        RouteTable::compile(&rc, &|_, _| Arc::new(ObjStats::default())).map_err(route_err(name))?;
    }
    let Some((name, raw)) = res.of(type_url::LISTENER).next() else {
        return Ok(None);
    };
    let l: Listener = decode(type_url::LISTENER, name, raw)?;
    let listener_err = |reason| ConfigError::Listener {
        name: name.clone(),
        reason,
    };
    one_chain(&l).map_err(listener_err)?;
    let (hcm, chain) =
        hcm(&l).ok_or_else(|| listener_err("no http_connection_manager filter".into()))?;
    if let Some(why) = unfollowed_in_hcm(&hcm) {
        return Err(listener_err(why));
    }
    let connect_timeout = chain
        .transport_socket_connect_timeout
        .as_ref()
        .map(super::pb_duration)
        .transpose()
        .map_err(|e| listener_err(format!("transport_socket_connect_timeout: {e}")))?
        .filter(|d| !d.is_zero());
    let tls = ServerTls::of(chain.transport_socket.as_ref(), connect_timeout, tls_made)
        .map_err(listener_err)?;
    let t = timeouts(name, &hcm)?;
    let upgrades = crate::router::upgrade_entries(
        hcm.upgrade_configs
            .iter()
            .map(|u| (u.upgrade_type.as_str(), u.enabled.map(|b| b.value))),
    )
    .map_err(|why| ConfigError::Listener {
        name: name.clone(),
        reason: format!("upgrade_configs: {why}"),
    })?;
    let mut table = match hcm.route_specifier {
        Some(RouteSpecifier::Rds(rds)) => {
            let Some(raw) = res
                .by_type
                .get(type_url::ROUTE)
                .and_then(|m| m.get(&rds.route_config_name))
            else {
                return Ok(None);
            };
            let rc: RouteConfiguration = decode(type_url::ROUTE, &rds.route_config_name, raw)?;
            RouteTable::compile(&rc, &counters).map_err(route_err(&rc.name))?
        }
        Some(RouteSpecifier::RouteConfig(rc)) => {
            RouteTable::compile(&rc, &counters).map_err(route_err(name))?
        }
        _ => {
            return Err(ConfigError::Listener {
                name: name.clone(),
                reason: "unsupported route specifier".into(),
            })
        }
    };
    table.upgrades = upgrades;
    if tls.is_some() {
        table.over_tls();
    }
    Ok(Some(Served {
        name: name.clone(),
        table,
        timeouts: t,
        tls,
    }))
}

/// The route-configuration names listeners refer to (what RDS must subscribe to).
pub fn rds_names(res: &Resources) -> Vec<String> {
    let mut out: Vec<String> = res
        .of(type_url::LISTENER)
        .filter_map(|(_, raw)| Listener::decode(raw.body.clone()).ok())
        .filter_map(|l| hcm(&l).map(|(h, _)| h))
        .filter_map(|h| match h.route_specifier {
            Some(RouteSpecifier::Rds(r)) => Some(r.route_config_name),
            _ => None,
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_idle_timer_stops_at_a_heads_first_byte() {
        let t0 = tokio::time::Instant::now();
        let s = Duration::from_secs;
        // Waiting: idle after the last answer; never when idle is off.
        assert_eq!(
            wait_deadline(t0, None, Some(s(5)), s(10), None),
            Some(t0 + s(5))
        );
        assert_eq!(wait_deadline(t0, None, None, s(10), None), None);
        // A maximum age ends the wait when it comes first, idle or not.
        let aged = Some(t0 + s(3));
        assert_eq!(wait_deadline(t0, None, Some(s(5)), s(10), aged), aged);
        assert_eq!(wait_deadline(t0, None, None, s(10), aged), aged);
        assert_eq!(
            wait_deadline(t0, None, Some(s(2)), s(10), aged),
            Some(t0 + s(2))
        );
        // A head under way: its own bound from its first byte, whatever idle says.
        let first = t0 + s(4);
        assert_eq!(
            wait_deadline(t0, Some(first), Some(s(5)), s(10), aged),
            Some(first + s(10))
        );
        assert_eq!(
            wait_deadline(t0, Some(first), None, s(2), None),
            Some(first + s(2))
        );
        // No headers bound: the stream idle timeout (Envoy's default 5 minutes) bounds a head.
        let t = Timeouts::default();
        assert_eq!(t.head(), STREAM_IDLE_DEFAULT);
        assert_eq!(t.idle_or(s(7)), Some(s(7)));
        let off = Timeouts {
            idle: Some(Duration::ZERO),
            request_headers: Some(s(3)),
            max_connection: None,
            stream_idle: Some(s(60)),
        };
        assert_eq!((off.idle_or(s(7)), off.head()), (None, s(3)));
        // The shorter of the two; with both off, gw's own bound.
        let short_idle = Timeouts {
            request_headers: Some(s(30)),
            stream_idle: Some(s(2)),
            ..Timeouts::default()
        };
        assert_eq!(short_idle.head(), s(2));
        let neither = Timeouts {
            stream_idle: None,
            ..Timeouts::default()
        };
        assert_eq!(neither.head(), HEAD_FALLBACK);
    }

    #[test]
    #[allow(deprecated)]
    fn what_a_connection_manager_sets_that_is_not_followed_is_refused_by_name() {
        use gw_proto::envoy::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
            http_filter::ConfigType, HttpFilter,
        };
        use gw_proto::envoy::pb::google::protobuf::{Any, BoolValue, UInt32Value};
        let filter = |name: &str, type_url: &str, disabled| HttpFilter {
            name: name.into(),
            config_type: Some(ConfigType::TypedConfig(Any {
                type_url: type_url.into(),
                value: Vec::new(),
            })),
            disabled,
            ..Default::default()
        };
        let router = filter(
            "envoy.filters.http.router",
            "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router",
            false,
        );
        let authz = |disabled| {
            filter(
                "envoy.filters.http.ext_authz",
                "type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz",
                disabled,
            )
        };
        // What the control plane sends, and a connection manager that names no filter.
        // What the control plane sends (an edge listener keeping clients' request ids); no
        // filter named is the router alone.
        let ours = HttpConnectionManager {
            http_filters: vec![router.clone()],
            use_remote_address: Some(BoolValue { value: true }),
            preserve_external_request_id: true,
            ..Default::default()
        };
        assert_eq!(unfollowed_in_hcm(&ours), None);
        let unnamed = HttpConnectionManager {
            http_filters: Vec::new(),
            ..ours.clone()
        };
        assert_eq!(unfollowed_in_hcm(&unnamed), None);
        // Envoy's defaults are not an edge proxy's: refused.
        let got = unfollowed_in_hcm(&HttpConnectionManager::default()).unwrap_or_default();
        assert!(got.contains("use_remote_address other than true"), "{got}");
        // A filter that runs nowhere (disabled, and no route can enable it here) is no change.
        let off = HttpConnectionManager {
            http_filters: vec![authz(true), router.clone()],
            ..ours.clone()
        };
        assert_eq!(unfollowed_in_hcm(&off), None);
        // A filter gw-proxy does not run (authorization, say) is never skipped silently.
        let mut h = ours.clone();
        h.http_filters.insert(0, authz(false));
        let got = unfollowed_in_hcm(&h).unwrap_or_default();
        assert!(
            got.contains("http filter \"envoy.filters.http.ext_authz\" (only the router"),
            "{got}"
        );
        type Change = fn(&mut HttpConnectionManager);
        let cases: [(&str, Change); 11] = [
            ("xff_num_trusted_hops is not supported", |h| {
                h.xff_num_trusted_hops = 1
            }),
            ("use_remote_address other than true", |h| {
                h.use_remote_address = Some(BoolValue { value: false })
            }),
            ("use_remote_address other than true", |h| {
                h.use_remote_address = None
            }),
            ("preserve_external_request_id other than true", |h| {
                h.preserve_external_request_id = false
            }),
            ("router suppress_envoy_headers", |h| {
                use gw_proto::envoy::pb::envoy::extensions::filters::http::router::v3::Router;
                let r = Router {
                    suppress_envoy_headers: true,
                    ..Default::default()
                };
                if let Some(ConfigType::TypedConfig(any)) = &mut h.http_filters[0].config_type {
                    any.value = prost::Message::encode_to_vec(&r);
                }
            }),
            ("skip_xff_append", |h| h.skip_xff_append = true),
            ("via", |h| h.via = "1.1 gw".into()),
            ("forward_client_cert_details ALWAYS_FORWARD_ONLY", |h| {
                h.forward_client_cert_details = 4
            }),
            ("max_request_headers_kb", |h| {
                h.max_request_headers_kb = Some(UInt32Value { value: 8 })
            }),
            ("normalize_path", |h| {
                h.normalize_path = Some(BoolValue { value: true })
            }),
            (
                "common_http_protocol_options.max_requests_per_connection",
                |h| {
                    h.common_http_protocol_options = Some(
                        gw_proto::envoy::pb::envoy::config::core::v3::HttpProtocolOptions {
                            max_requests_per_connection: Some(UInt32Value { value: 100 }),
                            ..Default::default()
                        },
                    )
                },
            ),
        ];
        for (want, change) in cases {
            let mut h = ours.clone();
            change(&mut h);
            let got = unfollowed_in_hcm(&h).unwrap_or_default();
            assert!(got.contains(want), "{want}: {got}");
        }
    }

    #[test]
    fn durations_a_protobuf_cannot_hold_are_refused() {
        use gw_proto::envoy::pb::google::protobuf::Duration as Pb;
        let hcm = |seconds, nanos| HttpConnectionManager {
            request_headers_timeout: Some(Pb { seconds, nanos }),
            ..Default::default()
        };
        for (secs, nanos) in [
            (-1, 0),
            (0, -1),
            (0, 1_000_000_000),
            (super::super::MAX_DURATION_SECS + 1, 0),
        ] {
            let e = timeouts("l", &hcm(secs, nanos)).unwrap_err().to_string();
            assert!(e.contains("request_headers_timeout"), "{e}");
        }
        let ok = timeouts("l", &hcm(10, 5)).unwrap();
        assert_eq!(ok.request_headers, Some(Duration::new(10, 5)));
        // The maximum connection age: read, zero as none, an unholdable one refused by name.
        let aged = |seconds| HttpConnectionManager {
            common_http_protocol_options: Some(
                gw_proto::envoy::pb::envoy::config::core::v3::HttpProtocolOptions {
                    max_connection_duration: Some(Pb { seconds, nanos: 0 }),
                    ..Default::default()
                },
            ),
            ..Default::default()
        };
        let max = |hcm| timeouts("l", &hcm).unwrap().max_connection;
        assert_eq!(max(aged(600)), Some(Duration::from_secs(600)));
        assert_eq!(max(aged(0)), None);
        let e = timeouts("l", &aged(-1)).unwrap_err().to_string();
        assert!(e.contains("max_connection_duration"), "{e}");
        // The stream idle timeout: Envoy's default when unset, off at zero, refused by name.
        let idle = |d: Option<Pb>| HttpConnectionManager {
            stream_idle_timeout: d,
            ..Default::default()
        };
        let stream_idle = |hcm| timeouts("l", &hcm).unwrap().stream_idle;
        assert_eq!(stream_idle(idle(None)), Some(STREAM_IDLE_DEFAULT));
        assert_eq!(
            stream_idle(idle(Some(Pb {
                seconds: 0,
                nanos: 0
            }))),
            None
        );
        let d = Some(Pb {
            seconds: 2,
            nanos: 500_000_000,
        });
        assert_eq!(stream_idle(idle(d)), Some(Duration::from_millis(2500)));
        let e = timeouts(
            "l",
            &idle(Some(Pb {
                seconds: -5,
                nanos: 0,
            })),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("stream_idle_timeout"), "{e}");
    }
}
