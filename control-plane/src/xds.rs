//! xDS: translation of the gw model into Envoy v3 resources, and the ADS server.
//!
//! # Layout
//! - [`translate`]: pure `StoreSnapshot → Snapshot` (Listener, RouteConfiguration, Cluster,
//!   ClusterLoadAssignment); naming rules are documented there.
//! - [`snapshot`]: the published resource set, per-resource versions (content hashes, so they are
//!   equal across restarts and replicas) and the consistency check.
//! - [`publish`]: store revisions → debounce → translate → check → `watch` channel.
//! - [`session`]: per-stream state shared by [`sotw`] and [`delta`] (subscriptions, nonces,
//!   ACK/NACK, make-before-break gate).
//! - [`ads`]: the `AggregatedDiscoveryService` (one task per stream).
//! - [`fleet`]: per-node state and the `gateway.v1.Fleet` service; [`events`]: what happened.
//!
//! Wiring: [`Xds::start`] spawns the publisher; [`Xds::ads`] and [`Xds::fleet_api`] are the two
//! tonic services to add to the gRPC router.

pub mod ads;
pub mod delta;
pub mod events;
mod fingerprint;
#[cfg(test)]
mod fixtures;
pub mod fleet;
pub mod publish;
pub mod session;
pub mod snapshot;
pub mod sotw;
pub mod translate;

pub use ads::AdsServer;
pub use events::{EventLog, XdsEvent};
pub use fleet::api::FleetApi;
pub use fleet::{Fleet, ProxyRecord, SyncStatus};
pub use publish::{PublishOptions, SnapshotSource};
pub use snapshot::{Resource, ResourceType, Snapshot, SnapshotError};

use std::sync::Arc;
use tokio::sync::watch;

/// The running xDS side of a control plane.
#[derive(Debug, Clone)]
pub struct Xds {
    snapshots: watch::Receiver<Option<Arc<Snapshot>>>,
    fleet: Fleet,
    shutdown: watch::Receiver<bool>,
    metrics: Option<crate::metrics::ControlPlaneMetrics>,
}

impl Xds {
    /// Spawns the publisher over `source`; everything stops when `shutdown` turns true.
    pub fn start<S: SnapshotSource>(
        source: S,
        opts: PublishOptions,
        shutdown: watch::Receiver<bool>,
    ) -> (Xds, tokio::task::JoinHandle<()>) {
        let (tx, snapshots) = watch::channel(None);
        let events = EventLog::default();
        let fleet = Fleet::new(snapshots.clone(), events.clone());
        let task = tokio::spawn(publish::run(source, tx, events, opts, shutdown.clone()));
        (
            Xds {
                snapshots,
                fleet,
                shutdown,
                metrics: None,
            },
            task,
        )
    }

    /// The ADS service.
    pub fn ads(&self) -> ads::AdsServer {
        AdsServer::new(
            self.snapshots.clone(),
            self.fleet.clone(),
            self.shutdown.clone(),
        )
        .with_metrics(self.metrics.clone())
    }

    /// Counts pushes, ACKs, NACKs and push-to-ACK latency in `metrics`.
    pub fn with_metrics(mut self, metrics: crate::metrics::ControlPlaneMetrics) -> Xds {
        self.metrics = Some(metrics);
        self
    }

    /// The Fleet service.
    pub fn fleet_api(&self) -> FleetApi {
        FleetApi::new(self.fleet.clone())
    }

    /// Per-node state.
    pub fn fleet(&self) -> &Fleet {
        &self.fleet
    }

    /// xDS events.
    pub fn events(&self) -> &EventLog {
        self.fleet.events()
    }

    /// The snapshot currently served.
    pub fn snapshot(&self) -> Option<Arc<Snapshot>> {
        self.snapshots.borrow().clone()
    }

    /// Follows published snapshots.
    pub fn watch(&self) -> watch::Receiver<Option<Arc<Snapshot>>> {
        self.snapshots.clone()
    }
}
