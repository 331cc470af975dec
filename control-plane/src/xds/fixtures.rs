//! Test fixtures: snapshots from manifest text, requests, responses.

use super::snapshot::Snapshot;
use super::translate::translate;
use crate::store::StoreSnapshot;

/// A tenant `acme` with clusters `c1..=clusters` (one static endpoint each) and, for each
/// `(route, cluster)` pair, a route `/route` to that cluster.
pub fn snapshot(revision: u64, clusters: &[&str], routes: &[(&str, &str)]) -> Snapshot {
    let mut yaml = String::from("apiVersion: gw/v1\nkind: Tenant\nmetadata: {name: acme}\n");
    for c in clusters {
        // The endpoint depends on the name only, so a cluster's CLA is stable across fixtures.
        let i = c.bytes().map(u32::from).sum::<u32>() % 250;
        yaml += &format!(
            "---\napiVersion: gw/v1\nkind: Cluster\nmetadata: {{name: {c}, tenant: acme}}\n\
             spec: {{endpoints: [{{address: 10.0.0.{i}, port: 80}}]}}\n"
        );
    }
    for (r, c) in routes {
        yaml += &format!(
            "---\napiVersion: gw/v1\nkind: Route\nmetadata: {{name: {r}, tenant: acme}}\n\
             spec: {{match: {{pathPrefix: /{r}}}, cluster: {c}}}\n"
        );
    }
    let objects = gw_proto::manifest::parse(&yaml)
        .expect("fixture manifest")
        .into_iter()
        .map(|d| {
            let mut o = d.object;
            o.validate().expect("valid fixture");
            o
        })
        .collect();
    translate(&StoreSnapshot {
        revision,
        objects,
        endpoints: Vec::new(),
    })
    .expect("consistent fixture")
}
