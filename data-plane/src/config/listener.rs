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

/// The listener served (the first held) and its routing table; `None` until its routes arrive.
pub(super) fn compile(
    res: &Resources,
    stats: &StatsRegistry,
) -> Result<Option<(String, RouteTable)>, ConfigError> {
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
            Ok(Some((name.clone(), table)))
        }
        Some(RouteSpecifier::RouteConfig(rc)) => {
            let table = RouteTable::compile(&rc, &counters).map_err(route_err(name))?;
            Ok(Some((name.clone(), table)))
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
