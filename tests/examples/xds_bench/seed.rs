//! The benchmark's config: tenants, clusters with static endpoints, routes.

use gw_control_plane::store::{Store, StoreOptions};
use gw_proto::model::{
    ClusterSpec, Meta, Object, RouteMatch, RouteSpec, Spec, StaticEndpoint, TenantSpec,
};
use std::time::Duration;

/// Sizes.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    pub tenants: usize,
    pub clusters: usize,
    pub routes: usize,
    pub endpoints: usize,
}

fn meta(tenant: &str, name: String) -> Meta {
    Meta {
        name,
        tenant: tenant.to_owned(),
        ..Default::default()
    }
}

/// Route `j` of tenant `t` (the benchmark rewrites its timeout to make a change).
pub fn route(shape: Shape, j: usize, timeout: Duration) -> Object {
    let t = j % shape.tenants;
    let per_tenant = (shape.clusters / shape.tenants).max(1);
    let tenant = format!("t{t}");
    Object {
        meta: meta(&tenant, format!("r{j}")),
        spec: Spec::Route(Box::new(RouteSpec {
            match_: RouteMatch {
                hosts: vec![format!("t{t}.bench.test")],
                path_prefix: Some(format!("/r{j}")),
                ..Default::default()
            },
            cluster: Some(format!("c{}", (j / shape.tenants) % per_tenant)),
            timeout,
            ..Default::default()
        })),
    }
}

/// Cluster `k` of tenant `t` with `n` static endpoints; `connect_timeout` makes a change.
pub fn cluster(t: usize, k: usize, n: usize, connect_ms: u64) -> Object {
    let endpoints = (0..n)
        .map(|e| StaticEndpoint {
            address: format!("10.{}.{}.{}", t % 250, k % 250, e % 250),
            port: 8080,
            weight: 1,
            metadata: Default::default(),
        })
        .collect();
    Object {
        meta: meta(&format!("t{t}"), format!("c{k}")),
        spec: Spec::Cluster(Box::new(ClusterSpec {
            connect_timeout: Duration::from_millis(connect_ms),
            endpoints,
            ..Default::default()
        })),
    }
}

/// Every object of the shape.
pub fn objects(shape: Shape) -> Vec<Object> {
    let per_tenant = (shape.clusters / shape.tenants).max(1);
    let eps = (shape.endpoints / shape.clusters.max(1)).max(1);
    let mut out = Vec::new();
    for t in 0..shape.tenants {
        out.push(Object {
            meta: meta("", format!("t{t}")),
            spec: Spec::Tenant(TenantSpec::default()),
        });
        for k in 0..per_tenant {
            out.push(cluster(t, k, eps, 1000));
        }
    }
    for j in 0..shape.routes {
        out.push(route(shape, j, Duration::from_secs(15)));
    }
    out
}

/// Writes the config into a fresh SQLite userdb at `url`.
pub async fn seed(url: &str, shape: Shape) -> anyhow::Result<()> {
    let store = Store::connect(StoreOptions::new(url)).await?;
    let all = objects(shape);
    // Tenants and clusters first (routes reference them), in batches.
    let (routes, rest): (Vec<_>, Vec<_>) = all
        .into_iter()
        .partition(|o| matches!(o.spec, Spec::Route(_)));
    for chunk in rest.chunks(1000).chain(routes.chunks(1000)) {
        store.apply(chunk.to_vec(), false).await?;
    }
    Ok(())
}
