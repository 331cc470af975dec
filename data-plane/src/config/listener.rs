//! Listeners and their route configurations: the served listener's HTTP connection manager names
//! its routes (RDS, or inline); every held route configuration must compile, served or not, so a
//! bad one is NACKed at once rather than when a listener starts to use it.

use super::cluster::decode;
use super::{type_url, ConfigError, Resources};
use crate::router::RouteTable;
use crate::stats::{ObjStats, StatsRegistry};
use gw_proto::envoy::pb::envoy::config::listener::v3::{filter::ConfigType, Listener};
use gw_proto::envoy::pb::envoy::config::route::v3::RouteConfiguration;
use gw_proto::envoy::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    http_connection_manager::RouteSpecifier, HttpConnectionManager,
};
use prost::Message;
use std::sync::Arc;
use std::time::Duration;

/// The HTTP connection manager of a listener, if it has one.
fn hcm(l: &Listener) -> Option<HttpConnectionManager> {
    l.filter_chains
        .iter()
        .flat_map(|fc| &fc.filters)
        .find_map(|f| match &f.config_type {
            Some(ConfigType::TypedConfig(any)) => {
                HttpConnectionManager::decode(any.value.as_slice()).ok()
            }
            _ => None,
        })
}

/// A listener's connection timeouts, from its HTTP connection manager.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Timeouts {
    /// `common_http_protocol_options.idle_timeout`: `Some(0)` never closes an idle connection;
    /// `None` when the listener sets none (the proxy's `--idle-timeout` applies).
    pub idle: Option<Duration>,
    /// `request_headers_timeout`; `None` (or zero) sets no bound.
    pub request_headers: Option<Duration>,
}

impl Timeouts {
    /// The idle timeout in force (`fallback` when the listener sets none); `None`: never.
    pub fn idle_or(&self, fallback: Duration) -> Option<Duration> {
        Some(self.idle.unwrap_or(fallback)).filter(|d| !d.is_zero())
    }
}

fn timeouts(name: &str, hcm: &HttpConnectionManager) -> Result<Timeouts, ConfigError> {
    let field = |field: &str, d: Option<&gw_proto::envoy::pb::google::protobuf::Duration>| match d {
        None => Ok(None),
        Some(d) if d.seconds < 0 || d.nanos < 0 || d.nanos >= 1_000_000_000 => {
            Err(ConfigError::Listener {
                name: name.to_owned(),
                reason: format!(
                    "{field}: {}s {}ns is not a valid duration",
                    d.seconds, d.nanos
                ),
            })
        }
        Some(d) => Ok(Some(Duration::new(d.seconds as u64, d.nanos as u32))),
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
    })
}

/// The listener served (the first held), its routing table and its timeouts; `None` until its
/// routes arrive.
pub(super) fn compile(
    res: &Resources,
    stats: &StatsRegistry,
) -> Result<Option<(String, RouteTable, Timeouts)>, ConfigError> {
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
    let hcm = hcm(&l).ok_or_else(|| ConfigError::Listener {
        name: name.clone(),
        reason: "no http_connection_manager filter".into(),
    })?;
    let t = timeouts(name, &hcm)?;
    match hcm.route_specifier {
        Some(RouteSpecifier::Rds(rds)) => {
            let Some(raw) = res
                .by_type
                .get(type_url::ROUTE)
                .and_then(|m| m.get(&rds.route_config_name))
            else {
                return Ok(None);
            };
            let rc: RouteConfiguration = decode(type_url::ROUTE, &rds.route_config_name, raw)?;
            let table = RouteTable::compile(&rc, &counters).map_err(route_err(&rc.name))?;
            Ok(Some((name.clone(), table, t)))
        }
        Some(RouteSpecifier::RouteConfig(rc)) => {
            let table = RouteTable::compile(&rc, &counters).map_err(route_err(name))?;
            Ok(Some((name.clone(), table, t)))
        }
        _ => Err(ConfigError::Listener {
            name: name.clone(),
            reason: "unsupported route specifier".into(),
        }),
    }
}

/// The route-configuration names listeners refer to (what RDS must subscribe to).
pub fn rds_names(res: &Resources) -> Vec<String> {
    let mut out: Vec<String> = res
        .of(type_url::LISTENER)
        .filter_map(|(_, raw)| Listener::decode(raw.body.clone()).ok())
        .filter_map(|l| hcm(&l))
        .filter_map(|h| match h.route_specifier {
            Some(RouteSpecifier::Rds(r)) => Some(r.route_config_name),
            _ => None,
        })
        .collect();
    out.sort();
    out.dedup();
    out
}
