//! Per-stream xDS state shared by the SotW and Delta protocols: subscriptions, what the client has,
//! what it ACKed, outstanding nonces, and which resources a push should contain.
//!
//! A `Session` is plain data driven step by step ([`sotw`](super::sotw) and
//! [`delta`](super::delta) feed it requests and ask it for responses), so the protocol is tested
//! without a network.
//!
//! Make-before-break: a RouteConfiguration that names a cluster the client has not yet ACKed
//! (in CDS, and in EDS when the client uses EDS) is held back — the client keeps its previous
//! version — until it has, or for at most [`GATE_TIMEOUT`]. A cluster that disappeared from the
//! snapshot stays in the client's CDS/EDS view while a route configuration the client still has
//! (sent or ACKed) names it, so routes move away before their cluster goes.

use super::fingerprint::Fingerprint;
use super::snapshot::{Resource, ResourceMap, ResourceType, Snapshot};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Longest time a route configuration is held back waiting for its clusters.
pub const GATE_TIMEOUT: Duration = Duration::from_secs(3);

/// Outstanding responses kept per stream; older ones can no longer be ACKed.
const MAX_PENDING: usize = 64;

/// What the client has of one resource, as far as the server knows.
#[derive(Debug, Clone)]
pub struct Known {
    /// Its version.
    pub version: String,
    /// The resource, unless the client told us about it (Delta `initial_resource_versions`).
    pub resource: Option<Arc<Resource>>,
}

/// A rejected response.
#[derive(Debug, Clone, PartialEq)]
pub struct Nack {
    /// Version the client refused.
    pub version: String,
    /// The client's `error_detail.message`.
    pub error: String,
    /// The gw objects behind the refused resources (`route/acme/users`, `cluster/acme/api`).
    pub objects: Vec<String>,
    /// When, ms since the epoch.
    pub at_ms: i64,
}

/// Per-type state.
#[derive(Debug, Clone, Default)]
pub struct TypeState {
    /// The client asked for this type at least once.
    pub requested: bool,
    /// Subscribed to everything.
    pub wildcard: bool,
    /// Explicitly subscribed names.
    pub names: BTreeSet<String>,
    /// What the client has been sent (optimistically: as of our last response).
    pub known: BTreeMap<String, Known>,
    /// What the client ACKed.
    pub acked: ResourceMap,
    /// At least one response was sent.
    pub responded: bool,
    /// Version of the last response.
    pub sent_version: String,
    /// Nonce of the last response.
    pub last_nonce: String,
    /// Version of the last ACKed response.
    pub acked_version: String,
    /// The last NACK, cleared by a later ACK.
    pub nack: Option<Nack>,
}

impl TypeState {
    /// Whether `name` is subscribed.
    pub fn subscribed(&self, name: &str) -> bool {
        self.wildcard || self.names.contains(name)
    }
}

/// One sent, not yet ACKed response.
#[derive(Debug, Clone)]
struct Pending {
    nonce: String,
    ty: ResourceType,
    version: String,
    /// Sent resources (`Some`) and removed names (`None`).
    content: Vec<(String, Option<Arc<Resource>>)>,
    /// Whether the response replaced the whole set (SotW) or changed part of it (Delta).
    full: bool,
}

/// How a request's `response_nonce` / `error_detail` were taken.
#[derive(Debug, Clone, PartialEq)]
pub enum AckOutcome {
    /// No nonce: a first or subscription-only request.
    Initial,
    /// The nonce is not one we have outstanding (superseded or unknown).
    Stale,
    /// The response was accepted.
    Ack,
    /// The response was refused.
    Nack(Nack),
}

/// The state of one ADS stream.
#[derive(Debug, Clone)]
pub struct Session {
    /// `node.cluster` (empty counts as `ingress`).
    pub node_cluster: String,
    /// Per-type state, indexed by [`ResourceType::index`].
    pub types: [TypeState; 4],
    pending: VecDeque<Pending>,
    next_nonce: u64,
    held_since: Option<Instant>,
    /// Revision of the last snapshot fully pushed (nothing held back).
    pub pushed_revision: u64,
    /// Per type: something other than the snapshot changed what the client should have.
    dirty: [bool; 4],
    /// Per type: the snapshot map the last target was computed from.
    seen: [Option<Arc<ResourceMap>>; 4],
    /// Reference hashes of the route configurations the client has or ACKed, as of the last
    /// CDS/EDS retention decision.
    in_use_refs: BTreeSet<u64>,
}

impl Session {
    /// A fresh session for a proxy of `node_cluster`.
    pub fn new(node_cluster: String) -> Session {
        Session {
            node_cluster,
            types: Default::default(),
            pending: VecDeque::new(),
            next_nonce: 0,
            held_since: None,
            pushed_revision: 0,
            dirty: [true; 4],
            seen: Default::default(),
            in_use_refs: BTreeSet::new(),
        }
    }

    /// Marks `t` for recomputation (a request of that type arrived).
    pub fn touch(&mut self, t: ResourceType) {
        self.dirty[t.index()] = true;
    }

    /// Whether `t` must be recomputed against `snap`: its map changed, the session changed, or
    /// the make-before-break gate is holding routes back. Unchanged types are skipped, which is
    /// what keeps a route write from costing every stream a walk over every cluster.
    pub fn needs_push(&self, t: ResourceType, snap: &Snapshot) -> bool {
        let i = t.index();
        self.dirty[i]
            || !self.seen[i]
                .as_ref()
                .is_some_and(|m| Arc::ptr_eq(m, snap.shared(t)))
            || (t == ResourceType::Route && (self.held_since.is_some() || self.ty(t).wildcard))
    }

    /// Records that `t` was computed against `snap`.
    pub fn pushed(&mut self, t: ResourceType, snap: &Snapshot) {
        self.dirty[t.index()] = false;
        self.seen[t.index()] = Some(snap.shared(t).clone());
    }

    /// After the client's route configurations changed (sent or ACKed): if the clusters they
    /// reference changed, CDS and EDS retention must be recomputed.
    fn refresh_in_use(&mut self) {
        let routes = self.ty(ResourceType::Route);
        let refs: BTreeSet<u64> = routes
            .known
            .values()
            .filter_map(|k| k.resource.as_ref())
            .chain(routes.acked.values())
            .map(|r| r.refs_version)
            .collect();
        if refs != self.in_use_refs {
            self.dirty[ResourceType::Cluster.index()] = true;
            self.dirty[ResourceType::Endpoints.index()] = true;
            self.in_use_refs = refs;
        }
    }

    /// Per-type state.
    pub fn ty(&self, t: ResourceType) -> &TypeState {
        &self.types[t.index()]
    }

    /// Per-type state, mutable.
    pub fn ty_mut(&mut self, t: ResourceType) -> &mut TypeState {
        &mut self.types[t.index()]
    }

    /// Whether every response was answered and nothing is held back.
    pub fn settled(&self) -> bool {
        self.pending.is_empty() && self.held_since.is_none()
    }

    /// When a held-back route configuration will be released anyway.
    pub fn gate_deadline(&self) -> Option<Instant> {
        self.held_since.map(|t| t + GATE_TIMEOUT)
    }

    /// Takes `response_nonce` and `error_detail` of a request for `t`. With `latest_only` (SotW)
    /// only the newest response of the type can be answered; Delta answers each response.
    pub fn acknowledge(
        &mut self,
        t: ResourceType,
        nonce: &str,
        error: Option<&str>,
        now_ms: i64,
        latest_only: bool,
    ) -> AckOutcome {
        if nonce.is_empty() {
            return AckOutcome::Initial;
        }
        let Some(pos) = self
            .pending
            .iter()
            .position(|p| p.ty == t && p.nonce == nonce)
        else {
            // Answered already: a request that only changes the subscription (SotW clients
            // repeat the last nonce, e.g. Envoy asking EDS for a new cluster).
            if self.types[t.index()].last_nonce == nonce {
                return AckOutcome::Initial;
            }
            return AckOutcome::Stale;
        };
        if latest_only && self.pending.iter().skip(pos + 1).any(|p| p.ty == t) {
            return AckOutcome::Stale;
        }
        // Responses of this type sent before the answered one are superseded.
        let mut i = 0;
        let mut answered = None;
        self.pending.retain(|p| {
            let keep = p.ty != t || i > pos;
            if i == pos {
                answered = Some(p.clone());
            }
            i += 1;
            keep
        });
        let Some(p) = answered else {
            return AckOutcome::Stale;
        };
        let state = &mut self.types[t.index()];
        match error {
            Some(error) => {
                let nack = Nack {
                    version: p.version.clone(),
                    error: error.to_owned(),
                    objects: blame(error, &p.content),
                    at_ms: now_ms,
                };
                state.nack = Some(nack.clone());
                AckOutcome::Nack(nack)
            }
            None => {
                if p.full {
                    state.acked.clear();
                }
                for (name, r) in p.content {
                    match r {
                        Some(r) => state.acked.insert(name, r),
                        None => state.acked.remove(&name),
                    };
                }
                state.acked_version = p.version;
                state.nack = None;
                match t {
                    ResourceType::Cluster | ResourceType::Endpoints => {
                        self.dirty[ResourceType::Route.index()] = true;
                    }
                    ResourceType::Route => self.refresh_in_use(),
                    ResourceType::Listener => {}
                }
                AckOutcome::Ack
            }
        }
    }

    /// Records a response about to be sent; returns its nonce.
    pub fn record_sent(
        &mut self,
        t: ResourceType,
        version: String,
        content: Vec<(String, Option<Arc<Resource>>)>,
        full: bool,
    ) -> String {
        self.next_nonce += 1;
        let nonce = self.next_nonce.to_string();
        let state = &mut self.types[t.index()];
        if full {
            state.known.clear();
        }
        for (name, r) in &content {
            match r {
                Some(r) => state.known.insert(
                    name.clone(),
                    Known {
                        version: r.version.clone(),
                        resource: Some(r.clone()),
                    },
                ),
                None => state.known.remove(name),
            };
        }
        state.responded = true;
        state.sent_version = version.clone();
        state.last_nonce = nonce.clone();
        if self.pending.len() == MAX_PENDING {
            self.pending.pop_front();
        }
        self.pending.push_back(Pending {
            nonce: nonce.clone(),
            ty: t,
            version,
            content,
            full,
        });
        if t == ResourceType::Route {
            self.refresh_in_use();
        }
        nonce
    }

    /// The resources of type `t` the client should have now. Also updates the make-before-break
    /// gate: call for every type in [`ResourceType::ORDER`], then [`finish_push`](Self::finish_push).
    pub fn target(&mut self, t: ResourceType, snap: &Snapshot, now: Instant) -> ResourceMap {
        let state = self.ty(t);
        let mut out: ResourceMap = match t {
            ResourceType::Listener => snap
                .listeners_for(&self.node_cluster)
                .filter(|l| state.subscribed(&l.name))
                .map(|l| (l.name.clone(), l.clone()))
                .collect(),
            ResourceType::Route if state.wildcard => {
                let mine: BTreeSet<&String> = snap
                    .listeners_for(&self.node_cluster)
                    .flat_map(|l| l.refs.iter())
                    .collect();
                pick(snap.of(t), |n| {
                    mine.contains(&n.to_owned()) || state.names.contains(n)
                })
            }
            _ => pick(snap.of(t), |n| state.subscribed(n)),
        };
        match t {
            ResourceType::Cluster | ResourceType::Endpoints => {
                // Keep what routes the client still has point at.
                for name in self.in_use_clusters() {
                    if out.contains_key(&name) || !state.subscribed(&name) {
                        continue;
                    }
                    let old = state.known.get(&name).and_then(|k| k.resource.clone());
                    if let Some(r) = old.or_else(|| state.acked.get(&name).cloned()) {
                        out.insert(name, r);
                    }
                }
            }
            ResourceType::Route => self.gate_routes(&mut out, now),
            ResourceType::Listener => {}
        }
        out
    }

    /// Ends a push of `revision`: if nothing was held back, the client is being given it all.
    pub fn finish_push(&mut self, revision: u64) {
        if self.held_since.is_none() {
            self.pushed_revision = revision;
        }
    }

    /// Whether the gate held anything back in the last [`target`](Self::target) of routes.
    pub fn holding(&self) -> bool {
        self.held_since.is_some()
    }

    /// Clusters named by route configurations the client has or ACKed.
    fn in_use_clusters(&self) -> BTreeSet<String> {
        let routes = self.ty(ResourceType::Route);
        routes
            .known
            .values()
            .filter_map(|k| k.resource.as_ref())
            .chain(routes.acked.values())
            .flat_map(|r| r.refs.iter().cloned())
            .collect()
    }

    fn cluster_ready(&self, name: &str) -> bool {
        let cds = self.ty(ResourceType::Cluster);
        let eds = self.ty(ResourceType::Endpoints);
        (!cds.requested || cds.acked.contains_key(name))
            && (!eds.requested || eds.acked.contains_key(name))
    }

    /// Replaces route configurations whose clusters are not ready by what the client has.
    fn gate_routes(&mut self, out: &mut ResourceMap, now: Instant) {
        let expired = self.held_since.is_some_and(|t| now >= t + GATE_TIMEOUT);
        let mut held = false;
        let routes = self.ty(ResourceType::Route);
        let blocked: Vec<String> = out
            .values()
            .filter(|r| {
                let known = routes.known.get(&r.name);
                let changed = known.map(|k| &k.version) != Some(&r.version);
                // Same clusters as the version the client has: they were ready then.
                let same_refs = known
                    .and_then(|k| k.resource.as_ref())
                    .is_some_and(|old| old.refs_version == r.refs_version);
                changed && !same_refs && r.refs.iter().any(|c| !self.cluster_ready(c))
            })
            .map(|r| r.name.clone())
            .collect();
        if !expired {
            for name in blocked {
                held = true;
                match routes.known.get(&name).and_then(|k| k.resource.clone()) {
                    Some(old) => out.insert(name, old),
                    None => out.remove(&name),
                };
            }
        }
        if held {
            self.held_since.get_or_insert(now);
        } else {
            self.held_since = None;
        }
    }
}

fn pick(all: &ResourceMap, keep: impl Fn(&str) -> bool) -> ResourceMap {
    all.iter()
        .filter(|(n, _)| keep(n))
        .map(|(n, r)| (n.clone(), r.clone()))
        .collect()
}

/// A version for a set of resources (SotW `version_info`, Delta `system_version_info`).
pub fn set_version(set: &ResourceMap) -> String {
    let mut f = Fingerprint::new();
    for (n, r) in set {
        f = f.str(n).str(&r.version);
    }
    f.version()
}

/// The gw objects a NACK is about: those whose hints (route names, regexes) the message
/// contains; else the origins of resources named in the message; else of every sent resource.
fn blame(error: &str, content: &[(String, Option<Arc<Resource>>)]) -> Vec<String> {
    let sent: Vec<&Arc<Resource>> = content.iter().filter_map(|(_, r)| r.as_ref()).collect();
    let hinted: BTreeSet<String> = sent
        .iter()
        .flat_map(|r| r.hints.iter())
        .filter(|(needle, _)| mentions(error, needle))
        .map(|(_, object)| object.clone())
        .collect();
    if !hinted.is_empty() {
        return hinted.into_iter().collect();
    }
    let named: Vec<&Arc<Resource>> = sent
        .iter()
        .copied()
        .filter(|r| mentions(error, &r.name))
        .collect();
    let suspects = if named.is_empty() { sent } else { named };
    let objects: BTreeSet<String> = suspects
        .into_iter()
        .flat_map(|r| r.origin.iter().cloned())
        .collect();
    objects.into_iter().collect()
}

/// Whether `text` contains `needle` as a whole name (`acme/users` is not in `acme/users-write`).
fn mentions(text: &str, needle: &str) -> bool {
    let name_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    !needle.is_empty()
        && text.match_indices(needle).any(|(i, _)| {
            let before = text[..i].chars().next_back();
            let after = text[i + needle.len()..].chars().next();
            !before.is_some_and(name_char) && !after.is_some_and(name_char)
        })
}
