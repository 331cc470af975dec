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
