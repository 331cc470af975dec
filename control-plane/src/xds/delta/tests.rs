use super::{handle, responses};
use crate::xds::fixtures::snapshot;
use crate::xds::session::{AckOutcome, Session};
use crate::xds::snapshot::ResourceType::{self, *};
use gw_proto::envoy::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse,
};
use gw_proto::envoy::pb::google::rpc::Status;
use std::collections::HashMap;
use std::time::Instant;

fn sub(t: ResourceType, names: &[&str]) -> DeltaDiscoveryRequest {
    DeltaDiscoveryRequest {
        type_url: t.type_url().into(),
        resource_names_subscribe: names.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

fn ack(r: &DeltaDiscoveryResponse) -> DeltaDiscoveryRequest {
    DeltaDiscoveryRequest {
        type_url: r.type_url.clone(),
        response_nonce: r.nonce.clone(),
        ..Default::default()
    }
}

fn sent(r: &DeltaDiscoveryResponse) -> Vec<&str> {
    r.resources.iter().map(|r| r.name.as_str()).collect()
}

#[test]
fn wildcard_then_only_changes_and_removals() {
    let now = Instant::now();
    let mut s = Session::new(String::new());
    handle(&mut s, &sub(Cluster, &[]), 0).unwrap();
    let out = responses(&mut s, &snapshot(1, &["a", "b", "c"], &[]), now);
    assert_eq!(sent(&out[0]), ["acme/a", "acme/b", "acme/c"]);
    assert_eq!(handle(&mut s, &ack(&out[0]), 0).unwrap().1, AckOutcome::Ack);
    assert!(s.settled());

    // b changes (its endpoint moves: same cluster resource, so nothing for CDS) — use a new
    // cluster d and drop c instead.
    let out = responses(&mut s, &snapshot(2, &["a", "b", "d"], &[]), now);
    assert_eq!(out.len(), 1);
    assert_eq!(sent(&out[0]), ["acme/d"]);
    assert_eq!(out[0].removed_resources, ["acme/c"]);
    handle(&mut s, &ack(&out[0]), 0).unwrap();
    assert!(responses(&mut s, &snapshot(3, &["a", "b", "d"], &[]), now).is_empty());
}

#[test]
fn empty_wildcard_still_gets_a_first_answer() {
    let mut s = Session::new(String::new());
    handle(&mut s, &sub(Cluster, &[]), 0).unwrap();
    let out = responses(&mut s, &snapshot(1, &[], &[]), Instant::now());
    assert_eq!(out.len(), 1);
    assert!(out[0].resources.is_empty());
}

#[test]
fn reconnect_with_initial_versions_resends_nothing_unchanged() {
    let now = Instant::now();
    let snap = snapshot(1, &["a", "b"], &[]);
    let mut first = Session::new(String::new());
    handle(&mut first, &sub(Cluster, &[]), 0).unwrap();
    responses(&mut first, &snap, now);
    let mut versions: HashMap<String, String> = first
        .ty(Cluster)
        .known
        .iter()
        .map(|(n, k)| (n.clone(), k.version.clone()))
        .collect();
    versions.insert("acme/gone".into(), "x".into());
    versions.insert("acme/b".into(), "stale".into());

    // A new control plane process (same content → same versions).
    let mut s = Session::new(String::new());
    let mut req = sub(Cluster, &[]);
    req.initial_resource_versions = versions;
    handle(&mut s, &req, 0).unwrap();
    let out = responses(&mut s, &snapshot(1, &["a", "b"], &[]), now);
    assert_eq!(
        sent(&out[0]),
        ["acme/b"],
        "only the one whose version differs"
    );
    assert_eq!(out[0].removed_resources, ["acme/gone"]);
}

#[test]
fn named_subscribe_and_unsubscribe() {
    let now = Instant::now();
    let snap = snapshot(1, &["a", "b"], &[]);
    let mut s = Session::new(String::new());
    handle(&mut s, &sub(Endpoints, &["acme/a"]), 0).unwrap();
    let out = responses(&mut s, &snap, now);
    assert_eq!(sent(&out[0]), ["acme/a"]);
    let mut req = ack(&out[0]);
    req.resource_names_subscribe = vec!["acme/b".into()];
    req.resource_names_unsubscribe = vec!["acme/a".into()];
    handle(&mut s, &req, 0).unwrap();
    let out = responses(&mut s, &snap, now);
    assert_eq!(sent(&out[0]), ["acme/b"]);
    assert!(
        out[0].removed_resources.is_empty(),
        "unsubscribed names are not 'removed'"
    );
    assert_eq!(s.ty(Endpoints).known.keys().collect::<Vec<_>>(), ["acme/b"]);
}

#[test]
fn nack_names_the_cluster() {
    let mut s = Session::new(String::new());
    handle(&mut s, &sub(Cluster, &[]), 0).unwrap();
    let out = responses(&mut s, &snapshot(1, &["a", "b"], &[]), Instant::now());
    let mut nack = ack(&out[0]);
    nack.error_detail = Some(Status {
        code: 3,
        message: "cluster 'acme/b': invalid".into(),
        details: vec![],
    });
    let (_, o) = handle(&mut s, &nack, 1).unwrap();
    let AckOutcome::Nack(n) = o else {
        panic!("{o:?}")
    };
    assert_eq!(n.objects, ["cluster/acme/b"]);
    assert!(s.ty(Cluster).acked.is_empty());
}

#[test]
fn big_pushes_are_chunked_and_each_chunk_acked() {
    let names: Vec<String> = (0..1200).map(|i| format!("c{i}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let snap = snapshot(1, &refs, &[]);
    let mut s = Session::new(String::new());
    handle(&mut s, &sub(Cluster, &[]), 0).unwrap();
    let out = responses(&mut s, &snap, Instant::now());
    assert!(out.len() > 1, "{} responses", out.len());
    assert_eq!(out.iter().map(|r| r.resources.len()).sum::<usize>(), 1200);
    assert!(out
        .iter()
        .all(|r| r.system_version_info == out[0].system_version_info));
    for r in &out {
        assert!(!s.settled());
        assert_eq!(handle(&mut s, &ack(r), 0).unwrap().1, AckOutcome::Ack);
    }
    assert!(s.settled());
    assert_eq!(s.ty(Cluster).acked.len(), 1200);
}

#[test]
fn unchanged_types_are_skipped_when_the_snapshot_shares_them() {
    let now = Instant::now();
    let first = snapshot(1, &["a", "b"], &[("r", "a")]);
    let mut s = Session::new(String::new());
    for (t, names) in [
        (Cluster, &[][..]),
        (Endpoints, &["*"][..]),
        (Route, &["ingress"][..]),
    ] {
        handle(&mut s, &sub(t, names), 0).unwrap();
    }
    for r in responses(&mut s, &first, now) {
        handle(&mut s, &ack(&r), 0).unwrap();
    }
    for r in responses(&mut s, &first, now) {
        handle(&mut s, &ack(&r), 0).unwrap();
    }
    // (The stream task asks for responses after every request; the last ACK's turn.)
    assert!(responses(&mut s, &first, now).is_empty());
    assert!(s.settled());
    // A route-only change: the publisher shares the unchanged CDS/EDS maps.
    let mut next = snapshot(2, &["a", "b"], &[("r", "b")]);
    next.share_unchanged(&first);
    assert!(std::sync::Arc::ptr_eq(
        next.shared(Cluster),
        first.shared(Cluster)
    ));
    assert!(!s.needs_push(Cluster, &next));
    assert!(!s.needs_push(Endpoints, &next));
    assert!(s.needs_push(Route, &next));
    let out = responses(&mut s, &next, now);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].type_url, Route.type_url());
}
