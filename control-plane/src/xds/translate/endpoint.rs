//! ClusterLoadAssignment: a cluster's static endpoints plus its registered and discovered ones.

use super::{any, cluster_name, resource};
use crate::xds::snapshot::Resource;
use gw_proto::envoy::pb::envoy::config::core::v3::{
    address, socket_address, Address, HealthStatus, SocketAddress,
};
use gw_proto::envoy::pb::envoy::config::endpoint::v3::{
    lb_endpoint, ClusterLoadAssignment, Endpoint as EnvoyEndpoint, LbEndpoint, LocalityLbEndpoints,
};
use gw_proto::envoy::pb::google::protobuf::UInt32Value;
use gw_proto::model::{ClusterSpec, Endpoint};
use std::collections::BTreeMap;

/// The load assignment of one cluster. Static endpoints win over a registration of the same
/// address; registry health is passed on (`UNHEALTHY`), static ones are left to health checks.
pub fn load_assignment(
    tenant: &str,
    name: &str,
    spec: &ClusterSpec,
    dynamic: &[&Endpoint],
) -> Resource {
    let mut by_addr: BTreeMap<(&str, u32), (u32, HealthStatus)> = BTreeMap::new();
    for e in dynamic {
        let health = if e.healthy {
            HealthStatus::Healthy
        } else {
            HealthStatus::Unhealthy
        };
        by_addr.insert((&e.key.address, e.key.port), (e.weight, health));
    }
    for e in &spec.endpoints {
        by_addr.insert((&e.address, e.port), (e.weight, HealthStatus::Unknown));
    }
    let lb_endpoints = by_addr
        .into_iter()
        .map(|((addr, port), (weight, health))| LbEndpoint {
            host_identifier: Some(lb_endpoint::HostIdentifier::Endpoint(EnvoyEndpoint {
                address: Some(socket(addr, port)),
                ..Default::default()
            })),
            health_status: health as i32,
            load_balancing_weight: Some(UInt32Value {
                value: weight.max(1),
            }),
            ..Default::default()
        })
        .collect();
    let full = cluster_name(tenant, name);
    let cla = ClusterLoadAssignment {
        cluster_name: full.clone(),
        endpoints: vec![LocalityLbEndpoints {
            lb_endpoints,
            ..Default::default()
        }],
        ..Default::default()
    };
    resource(
        full,
        any(&cla),
        vec![format!("cluster/{tenant}/{name}")],
        Vec::new(),
    )
}

/// A TCP socket address.
pub fn socket(addr: &str, port: u32) -> Address {
    Address {
        address: Some(address::Address::SocketAddress(SocketAddress {
            address: addr.to_owned(),
            port_specifier: Some(socket_address::PortSpecifier::PortValue(port)),
            ..Default::default()
        })),
    }
}
