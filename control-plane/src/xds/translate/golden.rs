//! Golden tests: a manifest in `testdata/*.yaml`, its translation in `testdata/*.golden`.
//! Regenerate with `UPDATE_GOLDEN=1 cargo test -p gw-control-plane golden`.

use super::translate;
use crate::store::StoreSnapshot;
use crate::xds::snapshot::ResourceType;
use gw_proto::envoy::pb::envoy::config::cluster::v3::Cluster;
use gw_proto::envoy::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
use gw_proto::envoy::pb::envoy::config::listener::v3::{filter, Listener};
use gw_proto::envoy::pb::envoy::config::route::v3::RouteConfiguration;
use gw_proto::envoy::pb::envoy::extensions::filters::network::http_connection_manager::v3::HttpConnectionManager;
use gw_proto::envoy::pb::google::protobuf::{value, Struct};
use gw_proto::model::{Endpoint, EndpointKey, EndpointSource};
use prost::Message;
use std::fmt::Write;

fn load(name: &str) -> StoreSnapshot {
    let path = format!(
        "{}/src/xds/translate/testdata/{name}.yaml",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(path).unwrap();
    let objects = gw_proto::manifest::parse(&text)
        .unwrap()
        .into_iter()
        .map(|d| {
            let mut o = d.object;
            o.validate().unwrap();
            o
        })
        .collect();
    StoreSnapshot {
        revision: 7,
        objects,
        endpoints: vec![Endpoint {
            key: EndpointKey {
                tenant: "acme".into(),
                cluster: "users-svc".into(),
                address: "10.0.0.9".into(),
                port: 8080,
            },
            weight: 5,
            metadata: Default::default(),
            source: EndpointSource::Registry,
            ttl: None,
            expires_at_ms: None,
            registered_at_ms: 0,
            resource_version: 3,
            healthy: false,
        }],
    }
}

/// JSON with sorted keys (prost `Struct` maps are unordered).
fn struct_json(s: &Struct) -> serde_json::Value {
    fn v(x: &gw_proto::envoy::pb::google::protobuf::Value) -> serde_json::Value {
        match &x.kind {
            Some(value::Kind::StringValue(s)) => s.clone().into(),
            Some(value::Kind::NumberValue(n)) => (*n).into(),
            Some(value::Kind::BoolValue(b)) => (*b).into(),
            Some(value::Kind::StructValue(s)) => struct_json(s),
            Some(value::Kind::ListValue(l)) => l.values.iter().map(v).collect(),
            _ => serde_json::Value::Null,
        }
    }
    let sorted: std::collections::BTreeMap<_, _> =
        s.fields.iter().map(|(k, x)| (k.clone(), v(x))).collect();
    serde_json::to_value(sorted).unwrap()
}

fn render(snap: &crate::xds::Snapshot) -> String {
    let mut out = String::new();
    for t in ResourceType::ORDER {
        for r in snap.of(t).values() {
            writeln!(
                out,
                "=== {} {} (from {:?}, refs {:?})",
                t.short(),
                r.name,
                r.origin,
                r.refs
            )
            .unwrap();
            let b = &r.body.value[..];
            match t {
                ResourceType::Cluster => {
                    let mut c = Cluster::decode(b).unwrap();
                    let meta = c.metadata.take().unwrap();
                    let gw = struct_json(&meta.filter_metadata["gw"]);
                    writeln!(
                        out,
                        "{c:#?}\nmetadata.gw = {}",
                        serde_json::to_string_pretty(&gw).unwrap()
                    )
                    .unwrap();
                }
                ResourceType::Endpoints => {
                    writeln!(out, "{:#?}", ClusterLoadAssignment::decode(b).unwrap()).unwrap();
                }
                ResourceType::Listener => {
                    let mut l = Listener::decode(b).unwrap();
                    let f = &mut l.filter_chains[0].filters[0];
                    let Some(filter::ConfigType::TypedConfig(any)) = f.config_type.take() else {
                        panic!("no HCM")
                    };
                    let hcm = HttpConnectionManager::decode(&any.value[..]).unwrap();
                    writeln!(out, "{l:#?}\nhcm = {hcm:#?}").unwrap();
                }
                ResourceType::Route => {
                    writeln!(out, "{:#?}", RouteConfiguration::decode(b).unwrap()).unwrap();
                }
            }
        }
    }
    out
}

#[test]
fn golden_basic() {
    let snap = translate(&load("basic")).unwrap();
    let got = render(&snap);
    let path = format!(
        "{}/src/xds/translate/testdata/basic.golden",
        env!("CARGO_MANIFEST_DIR")
    );
    if std::env::var("UPDATE_GOLDEN").is_ok() {
        std::fs::write(&path, &got).unwrap();
    }
    let want = std::fs::read_to_string(&path).expect("golden file; run with UPDATE_GOLDEN=1");
    assert!(
        got == want,
        "translation differs from {path}; rerun with UPDATE_GOLDEN=1 and review the diff"
    );
}

#[test]
fn versions_are_stable_and_content_addressed() {
    let a = translate(&load("basic")).unwrap();
    let b = translate(&load("basic")).unwrap();
    assert_eq!(a.version(), b.version());
    for t in ResourceType::ORDER {
        for (n, r) in a.of(t) {
            assert_eq!(r.version, b.of(t)[n].version, "{n}");
        }
    }
    // A changed route changes the route configuration's version only.
    let mut s = load("basic");
    for o in &mut s.objects {
        if let gw_proto::model::Spec::Route(r) = &mut o.spec {
            r.timeout = std::time::Duration::from_secs(3);
        }
    }
    let c = translate(&s).unwrap();
    assert_ne!(
        a.of(ResourceType::Route)["ingress"].version,
        c.of(ResourceType::Route)["ingress"].version
    );
    assert_eq!(
        a.of(ResourceType::Cluster)["acme/users-svc"].version,
        c.of(ResourceType::Cluster)["acme/users-svc"].version
    );
}

#[test]
fn default_listener_for_every_node_and_listener_objects_by_node_cluster() {
    let a = translate(&load("basic")).unwrap();
    assert_eq!(a.listeners_for("").count(), 1);
    assert_eq!(a.listeners_for("edge").count(), 1);
    let mut s = load("basic");
    let listener = gw_proto::manifest::parse(
        "apiVersion: gw/v1\nkind: Listener\nmetadata: {name: edge}\nspec: {nodeCluster: edge, address: 127.0.0.1, port: 9000}\n",
    )
    .unwrap();
    s.objects.push(listener[0].object.clone());
    let b = translate(&s).unwrap();
    assert_eq!(
        b.listeners_for("edge")
            .map(|l| l.name.as_str())
            .collect::<Vec<_>>(),
        ["edge"]
    );
    assert_eq!(b.listeners_for("").count(), 0);
    assert!(b.of(ResourceType::Route).contains_key("edge"));
}

#[test]
fn consistency_check_refuses_missing_cluster() {
    let mut s = load("basic");
    s.objects.retain(|o| {
        o.meta.name != "maintenance" || o.spec.kind() != gw_proto::model::Kind::Cluster
    });
    let err = translate(&s).unwrap_err();
    assert!(err.to_string().contains("acme/maintenance"), "{err}");
    // Names the route that uses it, not every route of the configuration.
    let crate::xds::SnapshotError::MissingCluster { origin, .. } = &err else {
        panic!("{err:?}")
    };
    assert!(origin.contains("route/acme/split"), "{origin}");
    assert!(!origin.contains("route/acme/users"), "{origin}");
}

#[test]
fn cached_translation_equals_fresh_translation() {
    let mut t = super::Translator::default();
    let first = t.translate(&load("basic")).unwrap();
    assert_eq!(
        first.version(),
        translate(&load("basic")).unwrap().version()
    );
    let mut s = load("basic");
    for o in &mut s.objects {
        if let gw_proto::model::Spec::Route(r) = &mut o.spec {
            r.timeout = std::time::Duration::from_secs(4);
        }
        if let gw_proto::model::Spec::Cluster(c) = &mut o.spec {
            if o.meta.name == "sticky" {
                c.lb = gw_proto::model::LbPolicy::RoundRobin;
            }
        }
    }
    s.endpoints.clear();
    let warm = t.translate(&s).unwrap();
    let fresh = translate(&s).unwrap();
    for ty in ResourceType::ORDER {
        for (n, r) in fresh.of(ty) {
            assert_eq!(warm.of(ty)[n].version, r.version, "{n}");
            if ty != ResourceType::Cluster {
                // (Cluster metadata is a map: its encoding order varies, its version does not.)
                assert_eq!(warm.of(ty)[n].body, r.body, "{n}");
            }
        }
    }
    assert_ne!(first.version(), warm.version());
}
