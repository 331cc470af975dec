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
use gw_proto::model::{
    ClusterSpec, Endpoint, ListenerSpec, Object, RouteSpec, Spec, StaticEndpoint,
};
use prost::Message;
use std::collections::{BTreeMap, HashMap};
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
    Translator::default().translate(snap)
}

/// Translation with memory: resources whose inputs did not change since the last call are
/// reused instead of rebuilt, so a write costs in proportion to what it changed (plus the
/// assembly of the one RouteConfiguration from cached route encodings).
#[derive(Debug, Default)]
pub struct Translator {
    clusters: HashMap<(String, String), (ClusterSpec, Resource)>,
    endpoints: HashMap<(String, String), (EndpointInputs, Resource)>,
    routes: route::RouteCache,
}

/// What a ClusterLoadAssignment is built from.
type EndpointInputs = (Vec<StaticEndpoint>, Vec<(String, u32, u32, bool)>);

impl Translator {
    /// Translates and checks `snap`.
    pub fn translate(&mut self, snap: &StoreSnapshot) -> Result<Snapshot, SnapshotError> {
        let model = Model::index(snap);
        let mut clusters = Vec::with_capacity(model.clusters.len());
        let mut endpoints = Vec::with_capacity(model.clusters.len());
        for (&(t, n), c) in &model.clusters {
            let key = (t.to_owned(), n.to_owned());
            match self.clusters.get(&key) {
                Some((spec, r)) if spec == *c => clusters.push(r.clone()),
                _ => {
                    let r = cluster::cluster(t, n, c);
                    self.clusters.insert(key.clone(), ((*c).clone(), r.clone()));
                    clusters.push(r);
                }
            }
            let dynamic = model
                .endpoints
                .get(&(t, n))
                .map(Vec::as_slice)
                .unwrap_or_default();
            let inputs: EndpointInputs = (
                c.endpoints.clone(),
                dynamic
                    .iter()
                    .map(|e| (e.key.address.clone(), e.key.port, e.weight, e.healthy))
                    .collect(),
            );
            match self.endpoints.get(&key) {
                Some((i, r)) if *i == inputs => endpoints.push(r.clone()),
                _ => {
                    let r = endpoint::load_assignment(t, n, c, dynamic);
                    self.endpoints.insert(key, (inputs, r.clone()));
                    endpoints.push(r);
                }
            }
        }
        let live =
            |k: &(String, String)| model.clusters.contains_key(&(k.0.as_str(), k.1.as_str()));
        self.clusters.retain(|k, _| live(k));
        self.endpoints.retain(|k, _| live(k));
        self.routes
            .retain(|k, _| model.routes.contains_key(&(k.0.as_str(), k.1.as_str())));
        let (listeners, route_configs) = listener::listeners(&model, &mut self.routes);
        Snapshot::new(
            snap.revision,
            [clusters, endpoints, listeners, route_configs],
        )
    }
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
        refs_version: 0,
    }
}

#[cfg(test)]
mod golden;
