#![allow(clippy::unwrap_used)]

use super::*;

/// A slice as `kubectl get endpointslice -o json` shows one.
fn slice(json: serde_json::Value) -> EndpointSlice {
    serde_json::from_value(json).unwrap()
}

fn target() -> Target {
    Target {
        tenant: "acme".into(),
        cluster: "users".into(),
    }
}

fn spec(port: &str) -> KubernetesDiscovery {
    KubernetesDiscovery {
        namespace: "shop".into(),
        service: "users".into(),
        port: port.into(),
    }
}

fn web() -> EndpointSlice {
    slice(serde_json::json!({
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {"name": "users-abc12", "namespace": "shop",
                     "labels": {"kubernetes.io/service-name": "users"}},
        "addressType": "IPv4",
        "ports": [{"name": "metrics", "port": 9090, "protocol": "TCP"},
                  {"name": "dns", "port": 8053, "protocol": "UDP"},
                  {"name": "http", "port": 8080, "protocol": "TCP"}],
        "endpoints": [
            {"addresses": ["10.1.0.7"], "conditions": {"ready": true, "serving": true, "terminating": false},
             "nodeName": "node-a", "zone": "eu-1a",
             "targetRef": {"kind": "Pod", "namespace": "shop", "name": "users-7d9f-x2"}},
            {"addresses": ["10.1.0.8"], "conditions": {"ready": false, "serving": true, "terminating": true},
             "nodeName": "node-b"},
            {"addresses": ["10.1.0.9", "10.1.0.99"]},
            {"addresses": []}
        ]
    }))
}

fn listed(eps: &[Endpoint]) -> Vec<(String, u32)> {
    eps.iter()
        .map(|e| (e.key.address.clone(), e.key.port))
        .collect()
}

#[test]
fn ready_endpoints_on_the_named_port_with_their_placement() {
    let eps = endpoints_of(&target(), &spec("http"), [web()].iter());
    // Ready, and ready unset (as kube-proxy reads it); the terminating one and the one without
    // an address are left out; only the first address counts.
    assert_eq!(
        listed(&eps),
        vec![("10.1.0.7".into(), 8080), ("10.1.0.9".into(), 8080)]
    );
    let first = &eps[0];
    assert_eq!(first.source, EndpointSource::Kubernetes);
    assert_eq!(first.key.tenant, "acme");
    assert_eq!(first.key.cluster, "users");
    assert_eq!(
        first.metadata,
        [
            ("node".to_owned(), "node-a".to_owned()),
            ("pod".to_owned(), "users-7d9f-x2".to_owned()),
            ("zone".to_owned(), "eu-1a".to_owned()),
        ]
        .into()
    );
    assert!(eps[1].metadata.is_empty());
}

#[test]
fn the_port_is_found_by_name_by_number_or_first() {
    let ports = |p: &str| -> Vec<u32> {
        endpoints_of(&target(), &spec(p), [web()].iter())
            .iter()
            .map(|e| e.key.port)
            .collect()
    };
    assert_eq!(ports("http"), vec![8080, 8080]);
    assert_eq!(ports("8080"), vec![8080, 8080]);
    assert_eq!(ports(""), vec![9090, 9090], "the first TCP port");
    // UDP ports are not for an HTTP proxy; a port the slice lacks gives nothing from it.
    assert_eq!(ports("dns"), Vec::<u32>::new());
    assert_eq!(ports("8053"), Vec::<u32>::new());
    assert_eq!(ports("grpc"), Vec::<u32>::new());
}

#[test]
fn slices_merge_and_an_address_in_two_counts_once() {
    let other = slice(serde_json::json!({
        "metadata": {"name": "users-def34", "namespace": "shop"},
        "addressType": "IPv4",
        // This slice's pods listen elsewhere (a rollout that changed targetPort).
        "ports": [{"name": "http", "port": 8081}],
        "endpoints": [{"addresses": ["10.1.0.20"]}, {"addresses": ["10.1.0.7"]}]
    }));
    let again = slice(serde_json::json!({
        "metadata": {"name": "users-zzz99", "namespace": "shop"},
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 8080}],
        "endpoints": [{"addresses": ["10.1.0.7"], "conditions": {"ready": true}}]
    }));
    let eps = endpoints_of(&target(), &spec("http"), [web(), other, again].iter());
    assert_eq!(
        listed(&eps),
        vec![
            ("10.1.0.20".into(), 8081),
            ("10.1.0.7".into(), 8080),
            ("10.1.0.7".into(), 8081),
            ("10.1.0.9".into(), 8080),
        ]
    );
}

#[test]
fn addresses_gw_cannot_use_are_skipped_not_fatal() {
    let odd = slice(serde_json::json!({
        "metadata": {"name": "users-fqdn", "namespace": "shop"},
        "addressType": "FQDN",
        "ports": [{"name": "http", "port": 8080}],
        "endpoints": [{"addresses": ["not a host!"]}, {"addresses": ["users.shop.example"]}]
    }));
    let eps = endpoints_of(&target(), &spec("http"), [odd].iter());
    assert_eq!(listed(&eps), vec![("users.shop.example".into(), 8080)]);
}
