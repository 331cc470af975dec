//! A published, internally consistent set of Envoy resources, and the check that guards publishing.
//!
//! Modelled on go-control-plane's `Snapshot.Consistent()`: a snapshot whose routes name a cluster
//! that is not in it, or whose listeners name a route configuration that is not in it, is refused,
//! and the previous snapshot keeps being served.

use super::fingerprint::Fingerprint;
use gw_proto::envoy::pb::google::protobuf::Any;
use std::collections::BTreeMap;
use std::sync::Arc;

/// The four resource types gw serves, in make-before-break push order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ResourceType {
    /// CDS: `envoy.config.cluster.v3.Cluster`.
    Cluster,
    /// EDS: `envoy.config.endpoint.v3.ClusterLoadAssignment`.
    Endpoints,
    /// LDS: `envoy.config.listener.v3.Listener`.
    Listener,
    /// RDS: `envoy.config.route.v3.RouteConfiguration`.
    Route,
}

impl ResourceType {
    /// Push order: clusters and their endpoints before the listeners and routes that use them.
    pub const ORDER: [ResourceType; 4] = [
        ResourceType::Cluster,
        ResourceType::Endpoints,
        ResourceType::Listener,
        ResourceType::Route,
    ];

    /// The xDS type URL.
    pub fn type_url(self) -> &'static str {
        match self {
            ResourceType::Cluster => "type.googleapis.com/envoy.config.cluster.v3.Cluster",
            ResourceType::Endpoints => {
                "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"
            }
            ResourceType::Listener => "type.googleapis.com/envoy.config.listener.v3.Listener",
            ResourceType::Route => "type.googleapis.com/envoy.config.route.v3.RouteConfiguration",
        }
    }

    /// Parses a type URL.
    pub fn from_type_url(url: &str) -> Option<ResourceType> {
        Self::ORDER.into_iter().find(|t| t.type_url() == url)
    }

    /// `CDS`, `EDS`, `LDS`, `RDS`.
    pub fn short(self) -> &'static str {
        match self {
            ResourceType::Cluster => "CDS",
            ResourceType::Endpoints => "EDS",
            ResourceType::Listener => "LDS",
            ResourceType::Route => "RDS",
        }
    }

    /// Whether an Envoy client subscribes to everything when it names nothing (LDS, CDS).
    pub fn legacy_wildcard(self) -> bool {
        matches!(self, ResourceType::Cluster | ResourceType::Listener)
    }

    /// Index into per-type arrays.
    pub fn index(self) -> usize {
        self as usize
    }
}

/// One translated resource, encoded once and shared by every stream that sends it.
#[derive(Debug, Clone, PartialEq)]
pub struct Resource {
    /// Resource name (`acme/users-svc`, `ingress`).
    pub name: String,
    /// Content version: a stable hash of what the resource was built from.
    pub version: String,
    /// The encoded Envoy message.
    pub body: Any,
    /// The gw objects it came from (`cluster/acme/users-svc`, `route/acme/users`), for NACK reports.
    pub origin: Vec<String>,
    /// Names of resources it depends on: clusters for a route configuration, the route
    /// configuration for a listener.
    pub refs: Vec<String>,
    /// For listeners: the node cluster whose proxies get it.
    pub node_cluster: Option<String>,
    /// `(needle, object)`: when a NACK's message contains the needle (a route name, a regex, a
    /// cluster name), the object is to blame. Also names the routes using a missing cluster.
    pub hints: Vec<(String, String)>,
    /// Hash of `refs` (set by [`Snapshot::new`]): equal references compare in O(1).
    pub refs_version: u64,
}

/// Resources of one type by name.
pub type ResourceMap = BTreeMap<String, Arc<Resource>>;

/// A consistent set of resources at one store revision.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Store revision the snapshot was translated from.
    pub revision: u64,
    resources: [Arc<ResourceMap>; 4],
}

/// Why a snapshot was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotError {
    /// A route configuration names a cluster that is not in the snapshot.
    #[error("route configuration {route_config} ({origin}) names missing cluster {cluster}")]
    MissingCluster {
        /// The route configuration.
        route_config: String,
        /// The gw objects behind it.
        origin: String,
        /// The missing cluster.
        cluster: String,
    },
    /// A listener names a route configuration that is not in the snapshot.
    #[error("listener {listener} names missing route configuration {route_config}")]
    MissingRouteConfig {
        /// The listener.
        listener: String,
        /// The missing route configuration.
        route_config: String,
    },
    /// A cluster has no load assignment.
    #[error("cluster {cluster} has no ClusterLoadAssignment")]
    MissingEndpoints {
        /// The cluster.
        cluster: String,
    },
    /// Two resources of one type share a name.
    #[error("duplicate {kind} resource {name}")]
    Duplicate {
        /// `CDS`, `EDS`, `LDS` or `RDS`.
        kind: &'static str,
        /// The name.
        name: String,
    },
}

impl Snapshot {
    /// Builds a snapshot and checks it: every reference resolves, no name appears twice.
    pub fn new(revision: u64, by_type: [Vec<Resource>; 4]) -> Result<Snapshot, SnapshotError> {
        let mut resources: [ResourceMap; 4] = Default::default();
        for (t, list) in ResourceType::ORDER.into_iter().zip(by_type) {
            for mut r in list {
                let mut f = Fingerprint::new();
                for x in &r.refs {
                    f = f.str(x);
                }
                r.refs_version = f.value();
                let name = r.name.clone();
                if resources[t.index()]
                    .insert(name.clone(), Arc::new(r))
                    .is_some()
                {
                    return Err(SnapshotError::Duplicate {
                        kind: t.short(),
                        name,
                    });
                }
            }
        }
        let snap = Snapshot {
            revision,
            resources: resources.map(Arc::new),
        };
        snap.check()?;
        Ok(snap)
    }

    /// The consistency check.
    fn check(&self) -> Result<(), SnapshotError> {
        let clusters = self.of(ResourceType::Cluster);
        let cla = self.of(ResourceType::Endpoints);
        let routes = self.of(ResourceType::Route);
        for r in routes.values() {
            if let Some(c) = r.refs.iter().find(|c| !clusters.contains_key(*c)) {
                let users: Vec<&str> = r
                    .hints
                    .iter()
                    .filter(|(needle, _)| needle == c)
                    .map(|(_, o)| o.as_str())
                    .collect();
                let origin = if users.is_empty() {
                    r.origin.join(", ")
                } else {
                    users.join(", ")
                };
                return Err(SnapshotError::MissingCluster {
                    route_config: r.name.clone(),
                    origin,
                    cluster: c.clone(),
                });
            }
        }
        for c in clusters.values() {
            if let Some(f) = c.refs.iter().find(|f| !clusters.contains_key(*f)) {
                return Err(SnapshotError::MissingCluster {
                    route_config: format!("(fallback of {})", c.name),
                    origin: c.origin.join(", "),
                    cluster: f.clone(),
                });
            }
            if !cla.contains_key(&c.name) {
                return Err(SnapshotError::MissingEndpoints {
                    cluster: c.name.clone(),
                });
            }
        }
        for l in self.of(ResourceType::Listener).values() {
            if let Some(rc) = l.refs.iter().find(|rc| !routes.contains_key(*rc)) {
                return Err(SnapshotError::MissingRouteConfig {
                    listener: l.name.clone(),
                    route_config: rc.clone(),
                });
            }
        }
        Ok(())
    }

    /// All resources of a type.
    pub fn of(&self, t: ResourceType) -> &ResourceMap {
        &self.resources[t.index()]
    }

    /// All resources of a type, shared: unchanged types are the same `Arc` as in the previous
    /// snapshot (see [`share_unchanged`](Self::share_unchanged)), so streams can skip them.
    pub fn shared(&self, t: ResourceType) -> &Arc<ResourceMap> {
        &self.resources[t.index()]
    }

    /// Reuses `prev`'s map for every type whose names and versions are unchanged.
    pub fn share_unchanged(&mut self, prev: &Snapshot) {
        for (mine, old) in self.resources.iter_mut().zip(&prev.resources) {
            let same = mine.len() == old.len()
                && mine
                    .iter()
                    .zip(old.iter())
                    .all(|((n, r), (m, o))| n == m && r.version == o.version);
            if same {
                *mine = old.clone();
            }
        }
    }

    /// Listeners a proxy of `node_cluster` gets (an empty node cluster counts as `ingress`).
    pub fn listeners_for<'a>(
        &'a self,
        node_cluster: &'a str,
    ) -> impl Iterator<Item = &'a Arc<Resource>> + 'a {
        let nc = effective_node_cluster(node_cluster);
        self.of(ResourceType::Listener)
            .values()
            .filter(move |l| l.node_cluster.as_deref().is_none_or(|c| c == nc))
    }

    /// A hash over every resource version: equal for equal content, across restarts.
    pub fn version(&self) -> String {
        let mut f = Fingerprint::new();
        for map in self.resources.iter() {
            for r in map.values() {
                f = f.str(&r.name).str(&r.version);
            }
        }
        f.version()
    }
}

/// Proxies that send no node cluster are treated as `ingress`, the default listener's.
pub fn effective_node_cluster(node_cluster: &str) -> &str {
    if node_cluster.is_empty() {
        "ingress"
    } else {
        node_cluster
    }
}
