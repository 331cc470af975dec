use super::{handle, responses};
use crate::xds::fixtures::snapshot;
use crate::xds::session::{AckOutcome, Session, GATE_TIMEOUT};
use crate::xds::snapshot::ResourceType::{self, *};
use gw_proto::envoy::pb::envoy::service::discovery::v3::{DiscoveryRequest, DiscoveryResponse};
use gw_proto::envoy::pb::google::rpc::Status;
use std::time::Instant;

fn req(t: ResourceType, names: &[&str], nonce: &str, version: &str) -> DiscoveryRequest {
    DiscoveryRequest {
        type_url: t.type_url().into(),
        resource_names: names.iter().map(|s| s.to_string()).collect(),
        response_nonce: nonce.into(),
        version_info: version.into(),
        ..Default::default()
    }
}

fn ack(r: &DiscoveryResponse, names: &[&str]) -> DiscoveryRequest {
    let t = ResourceType::from_type_url(&r.type_url).unwrap();
    req(t, names, &r.nonce, &r.version_info)
}

fn names(s: &Session, t: ResourceType) -> Vec<String> {
    s.ty(t).known.keys().cloned().collect()
}

/// Envoy's start: CDS and LDS wildcard, then EDS and RDS by name after each ACK.
fn connect(s: &mut Session, snap: &crate::xds::Snapshot, now: Instant) {
    for t in [Cluster, Listener] {
        handle(s, &req(t, &[], "", ""), 0).unwrap();
    }
    let out = responses(s, snap, now);
    assert_eq!(out.len(), 2, "CDS and LDS");
    assert_eq!(out[0].type_url, Cluster.type_url(), "clusters first");
    let clusters: Vec<String> = names(s, Cluster);
    let cl: Vec<&str> = clusters.iter().map(String::as_str).collect();
    handle(s, &ack(&out[0], &[]), 0).unwrap();
    handle(s, &req(Endpoints, &cl, "", ""), 0).unwrap();
    handle(s, &ack(&out[1], &[]), 0).unwrap();
    handle(s, &req(Route, &["ingress"], "", ""), 0).unwrap();
    let out = responses(s, snap, now);
    assert_eq!(
        out.iter().map(|r| r.type_url.as_str()).collect::<Vec<_>>(),
        [Endpoints.type_url()]
    );
    handle(s, &ack(&out[0], &cl), 0).unwrap();
    let out = responses(s, snap, now);
    assert_eq!(out.len(), 1, "RDS once the clusters are ready");
    assert_eq!(out[0].type_url, Route.type_url());
    handle(s, &ack(&out[0], &["ingress"]), 0).unwrap();
    assert!(responses(s, snap, now).is_empty());
    assert!(s.settled());
}

#[test]
fn initial_sync_acks_and_settles() {
    let snap = snapshot(1, &["a", "b"], &[("r", "a")]);
    let mut s = Session::new(String::new());
    connect(&mut s, &snap, Instant::now());
    assert_eq!(names(&s, Cluster), ["acme/a", "acme/b"]);
    assert_eq!(names(&s, Endpoints), ["acme/a", "acme/b"]);
    assert_eq!(names(&s, Listener), ["ingress"]);
    assert_eq!(s.pushed_revision, 1);
    assert!(s.types.iter().all(|t| t.sent_version == t.acked_version));
}

#[test]
fn unchanged_snapshot_sends_nothing_and_changed_one_sends_the_type() {
    let now = Instant::now();
    let mut s = Session::new(String::new());
    connect(&mut s, &snapshot(1, &["a", "b"], &[("r", "a")]), now);
    assert!(responses(&mut s, &snapshot(2, &["a", "b"], &[("r", "a")]), now).is_empty());
    assert_eq!(s.pushed_revision, 2);
    let out = responses(&mut s, &snapshot(3, &["a", "b"], &[("r", "b")]), now);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].type_url, Route.type_url());
}

#[test]
fn nack_is_recorded_with_objects_and_not_retried() {
    let now = Instant::now();
    let mut s = Session::new(String::new());
    connect(&mut s, &snapshot(1, &["a"], &[("r", "a")]), now);
    let out = responses(&mut s, &snapshot(2, &["a"], &[("r", "a"), ("q", "a")]), now);
    let mut nack = ack(&out[0], &["ingress"]);
    nack.version_info = s.ty(Route).acked_version.clone();
    nack.error_detail = Some(Status {
        code: 3,
        message: "route acme/q: bad regex".into(),
        details: vec![],
    });
    let (_, outcome) = handle(&mut s, &nack, 5).unwrap();
    let AckOutcome::Nack(n) = outcome else {
        panic!("{outcome:?}")
    };
    assert_eq!(n.objects, ["route/acme/q"]);
    assert_eq!(n.error, "route acme/q: bad regex");
    assert!(s.ty(Route).nack.is_some());
    assert!(
        responses(&mut s, &snapshot(2, &["a"], &[("r", "a"), ("q", "a")]), now).is_empty(),
        "same config is not resent"
    );
    let out = responses(&mut s, &snapshot(3, &["a"], &[("r", "a")]), now);
    handle(&mut s, &ack(&out[0], &["ingress"]), 6).unwrap();
    assert!(s.ty(Route).nack.is_none(), "a later ACK clears the NACK");
}

#[test]
fn stale_nonce_is_ignored() {
    let now = Instant::now();
    let mut s = Session::new(String::new());
    connect(&mut s, &snapshot(1, &["a"], &[("r", "a")]), now);
    let first = responses(&mut s, &snapshot(2, &["a"], &[("r", "a"), ("q", "a")]), now);
    let second = responses(&mut s, &snapshot(3, &["a"], &[("q", "a")]), now);
    let (_, o) = handle(&mut s, &ack(&first[0], &["ingress", "other"]), 0).unwrap();
    assert_eq!(o, AckOutcome::Stale);
    assert_eq!(
        s.ty(Route).names.len(),
        1,
        "subscription of a stale request ignored"
    );
    let (_, o) = handle(&mut s, &ack(&second[0], &["ingress"]), 0).unwrap();
    assert_eq!(o, AckOutcome::Ack);
    assert!(s.settled());
}

#[test]
fn make_before_break_holds_routes_until_new_cluster_is_acked() {
    let now = Instant::now();
    let mut s = Session::new(String::new());
    connect(&mut s, &snapshot(1, &["a"], &[("r", "a")]), now);
    let next = snapshot(2, &["a", "b"], &[("r", "b")]);
    let out = responses(&mut s, &next, now);
    assert_eq!(out.len(), 1, "only CDS; RDS waits: {out:?}");
    assert_eq!(out[0].type_url, Cluster.type_url());
    assert!(!s.settled());
    handle(&mut s, &ack(&out[0], &[]), 0).unwrap();
    handle(&mut s, &req(Endpoints, &["acme/a", "acme/b"], "", ""), 0).unwrap();
    let out = responses(&mut s, &next, now);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].type_url, Endpoints.type_url());
    handle(&mut s, &ack(&out[0], &["acme/a", "acme/b"]), 0).unwrap();
    let out = responses(&mut s, &next, now);
    assert_eq!(out.len(), 1);
    assert_eq!(
        out[0].type_url,
        Route.type_url(),
        "routes after their cluster is warm"
    );
}

#[test]
fn gate_gives_up_after_timeout() {
    let now = Instant::now();
    let mut s = Session::new(String::new());
    connect(&mut s, &snapshot(1, &["a"], &[("r", "a")]), now);
    let next = snapshot(2, &["a", "b"], &[("r", "b")]);
    assert_eq!(responses(&mut s, &next, now).len(), 1);
    assert_eq!(s.gate_deadline(), Some(now + GATE_TIMEOUT));
    let later = now + GATE_TIMEOUT;
    let out = responses(&mut s, &next, later);
    assert_eq!(
        out.iter().map(|r| r.type_url.as_str()).collect::<Vec<_>>(),
        [Route.type_url()]
    );
}

#[test]
fn removed_cluster_stays_until_routes_moved_away() {
    let now = Instant::now();
    let mut s = Session::new(String::new());
    connect(&mut s, &snapshot(1, &["a", "b"], &[("r", "a")]), now);
    let next = snapshot(2, &["b"], &[("r", "b")]);
    let out = responses(&mut s, &next, now);
    let types: Vec<_> = out.iter().map(|r| r.type_url.as_str()).collect();
    assert_eq!(
        types,
        [Route.type_url()],
        "routes move first; CDS still has a"
    );
    assert_eq!(names(&s, Cluster), ["acme/a", "acme/b"]);
    handle(&mut s, &ack(&out[0], &["ingress"]), 0).unwrap();
    let out = responses(&mut s, &next, now);
    assert_eq!(out[0].type_url, Cluster.type_url());
    assert_eq!(names(&s, Cluster), ["acme/b"]);
}

#[test]
fn subscription_change_repeating_an_acked_nonce_is_served() {
    let now = Instant::now();
    let mut s = Session::new(String::new());
    connect(&mut s, &snapshot(1, &["a"], &[("r", "a")]), now);
    let eds_nonce = s.ty(Endpoints).last_nonce.clone();
    let next = snapshot(2, &["a", "b"], &[("r", "b")]);
    let out = responses(&mut s, &next, now);
    handle(&mut s, &ack(&out[0], &[]), 0).unwrap();
    // Envoy asks EDS for the new cluster with the nonce of its last (ACKed) EDS response.
    let (_, o) = handle(
        &mut s,
        &req(Endpoints, &["acme/a", "acme/b"], &eds_nonce, "v"),
        0,
    )
    .unwrap();
    assert_eq!(o, AckOutcome::Initial);
    let out = responses(&mut s, &next, now);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].resources.len(), 2);
}
