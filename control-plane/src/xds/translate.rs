//! Pure translation of a [`StoreSnapshot`] into Envoy v3 resources (no I/O, no clock).
//!
//! Naming, which the data plane and `gwctl` rely on:
//! - Cluster and ClusterLoadAssignment: `<tenant>/<cluster>` (`acme/users-svc`); cluster names are
//!   only unique within a tenant, and `/` cannot occur in a gw name.
//! - Route (inside a RouteConfiguration): `<tenant>/<route>`.
//! - Listener and its RouteConfiguration: the Listener object's name; with no Listener objects,
//!   one `ingress` listener on `0.0.0.0:8080` that every proxy gets.
//! - gw-only knobs: `Cluster.metadata.filter_metadata["gw"]` (see [`cluster`]).
//!
//! Every Listener's RouteConfiguration holds every tenant's routes: tenants are told apart by
//! host and header matches, not by listener.

pub mod cluster;
pub mod endpoint;
pub mod listener;
pub mod route;

use super::fingerprint::Fingerprint;
use super::snapshot::{Resource, Snapshot, SnapshotError};
use crate::store::StoreSnapshot;
use gw_proto::envoy::pb::google::protobuf::{Any, Duration as PbDuration};
use gw_proto::model::{ClusterSpec, Endpoint, ListenerSpec, Object, RouteSpec, Spec};
use prost::Message;
use std::collections::BTreeMap;
use std::time::Duration;

/// Name of the built-in listener (and its route configuration).
pub const DEFAULT_LISTENER: &str = "ingress";

/// The `filter_metadata` key of gw-only knobs.
pub const GW_METADATA: &str = "gw";

/// Envoy's name for a gw cluster: `<tenant>/<name>`.
pub fn cluster_name(tenant: &str, name: &str) -> String {
    format!("{tenant}/{name}")
}

/// Envoy's name for a gw route: `<tenant>/<name>`.
pub fn route_name(tenant: &str, name: &str) -> String {
    format!("{tenant}/{name}")
}

/// The model objects translation works on, borrowed from a store snapshot.
#[derive(Debug, Default)]
pub struct Model<'a> {
    /// Listeners by name.
    pub listeners: BTreeMap<&'a str, &'a ListenerSpec>,
    /// Clusters by (tenant, name).
    pub clusters: BTreeMap<(&'a str, &'a str), &'a ClusterSpec>,
    /// Routes by (tenant, name).
    pub routes: BTreeMap<(&'a str, &'a str), &'a RouteSpec>,
    /// Registered and discovered endpoints by (tenant, cluster).
    pub endpoints: BTreeMap<(&'a str, &'a str), Vec<&'a Endpoint>>,
}

impl<'a> Model<'a> {
    /// Indexes a store snapshot.
    pub fn index(snap: &'a StoreSnapshot) -> Model<'a> {
        let mut m = Model::default();
        for Object { meta, spec } in &snap.objects {
            let key = (meta.tenant.as_str(), meta.name.as_str());
            match spec {
                Spec::Listener(l) => {
                    m.listeners.insert(&meta.name, l);
                }
                Spec::Cluster(c) => {
                    m.clusters.insert(key, c);
                }
                Spec::Route(r) => {
                    m.routes.insert(key, r);
                }
                _ => {}
            }
        }
        for e in &snap.endpoints {
            m.endpoints
                .entry((e.key.tenant.as_str(), e.key.cluster.as_str()))
                .or_default()
                .push(e);
        }
        m
    }
}

/// Translates and checks: the snapshot every proxy is served from.
pub fn translate(snap: &StoreSnapshot) -> Result<Snapshot, SnapshotError> {
    let model = Model::index(snap);
    let clusters = model
        .clusters
        .iter()
        .map(|(&(t, n), c)| cluster::cluster(t, n, c))
        .collect();
    let endpoints = model
        .clusters
        .iter()
        .map(|(&(t, n), c)| {
            let dynamic = model.endpoints.get(&(t, n)).map(Vec::as_slice);
            endpoint::load_assignment(t, n, c, dynamic.unwrap_or_default())
        })
        .collect();
    let (listeners, route_configs) = listener::listeners(&model);
    Snapshot::new(
        snap.revision,
        [clusters, endpoints, listeners, route_configs],
    )
}

/// Packs a message into an `Any`.
pub(crate) fn any<M: Message + prost::Name>(m: &M) -> Any {
    Any {
        type_url: M::type_url(),
        value: m.encode_to_vec(),
    }
}

/// A protobuf duration.
pub(crate) fn duration(d: Duration) -> PbDuration {
    PbDuration {
        seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        nanos: i32::try_from(d.subsec_nanos()).unwrap_or(0),
    }
}

/// Builds a [`Resource`] versioned by its encoding. Only for messages without `map` fields set:
/// prost encodes maps in `HashMap` order, which differs between processes.
pub(crate) fn resource(
    name: String,
    body: Any,
    origin: Vec<String>,
    refs: Vec<String>,
) -> Resource {
    let version = Fingerprint::new()
        .str(&body.type_url)
        .bytes(&body.value)
        .version();
    versioned(name, version, body, origin, refs)
}

/// Builds a [`Resource`] with a version computed by the caller.
pub(crate) fn versioned(
    name: String,
    version: String,
    body: Any,
    origin: Vec<String>,
    refs: Vec<String>,
) -> Resource {
    Resource {
        name,
        version,
        body,
        origin,
        refs,
        node_cluster: None,
        hints: Vec::new(),
    }
}

#[cfg(test)]
mod golden;
