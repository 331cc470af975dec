//! A stock Envoy and a gw-proxy fed by one control plane, each returned once it serves a path.

use crate::envoy::{Envoy, Mode};
use crate::upstream::Upstream;
use crate::{control, free_port, http, wait};
use gw_control_plane::server::ControlPlane;
use gw_proxy::server::{Proxy, ProxyConfig};
use std::net::SocketAddr;
use std::time::Duration;

/// A stock Envoy of node cluster `edge` listening on `port`, once `path` answers (any status but
/// 404).
pub async fn envoy(
    bin: &std::path::Path,
    cp: &ControlPlane,
    node: &str,
    port: u16,
    path: &str,
) -> (Envoy, SocketAddr) {
    let envoy = Envoy::start(bin, cp.grpc_addr(), node, "edge", Mode::Delta)
        .await
        .unwrap_or_else(|e| panic!("starting Envoy: {e}"));
    envoy
        .wait_ready()
        .await
        .unwrap_or_else(|e| panic!("Envoy ready: {e}\n{}", envoy.log()));
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    wait::until("Envoy serving", Duration::from_secs(20), || async {
        (http::get(addr, "x", path).await.ok()?.status != 404).then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", envoy.log()));
    (envoy, addr)
}

/// A gw-proxy of node cluster `edge`, once `path` answers (any status but 404).
pub async fn gw_proxy(cp: &ControlPlane, node: &str, path: &str) -> Proxy {
    let mut cfg = ProxyConfig::for_tests(Some(format!("http://{}", cp.grpc_addr())), node);
    cfg.node_cluster = "edge".into();
    let gw = Proxy::start(cfg)
        .await
        .unwrap_or_else(|e| panic!("starting gw-proxy: {e}"));
    let addr = gw.listen_addr();
    wait::until("gw-proxy serving", Duration::from_secs(20), || async {
        (http::get(addr, "x", path).await.ok()?.status != 404).then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    gw
}

/// One Listener (`listener`: its fields, after `nodeCluster`, `address` and `port`) and routes
/// of tenant `acme` to one upstream (`routes`: each route's path prefix, which names it, and the
/// rest of its spec after `cluster`), served by a stock Envoy and by gw-proxy from the same
/// control plane; `check` runs against each, Envoy first. Nothing runs (after a loud skip, or
/// a failure under `CI=true`) when Envoy cannot be had.
pub async fn on_both<F, Fut>(node: &str, listener: &str, routes: &[(&str, &str)], check: F)
where
    F: Fn(&'static str, SocketAddr) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    on_both_with(node, listener, routes, |_| String::new(), check).await;
}

/// [`on_both`], with more manifest documents (`more`, given the control plane's gRPC address;
/// each starting with `---`).
pub async fn on_both_with<F, Fut>(
    node: &str,
    listener: &str,
    routes: &[(&str, &str)],
    more: impl FnOnce(SocketAddr) -> String,
    check: F,
) where
    F: Fn(&'static str, SocketAddr) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let Some(bin) = crate::envoy::binary() else {
        return;
    };
    let cp = control::start()
        .await
        .unwrap_or_else(|e| panic!("control plane: {e}"));
    let up = Upstream::start("svc")
        .await
        .unwrap_or_else(|e| panic!("upstream: {e}"));
    let port = free_port();
    let mut yaml = format!(
        "apiVersion: gw/v1\nkind: Tenant\nmetadata: {{name: acme}}\n---\n\
         apiVersion: gw/v1\nkind: Listener\nmetadata: {{name: edge}}\n\
         spec: {{nodeCluster: edge, address: 127.0.0.1, port: {port}, {listener}}}\n---\n\
         apiVersion: gw/v1\nkind: Cluster\nmetadata: {{name: svc, tenant: acme}}\n\
         spec: {{endpoints: [{{address: 127.0.0.1, port: {}}}]}}\n",
        up.port()
    );
    for (prefix, rest) in routes {
        let name = prefix.trim_start_matches('/');
        yaml += &format!(
            "---\napiVersion: gw/v1\nkind: Route\nmetadata: {{name: {name}, tenant: acme}}\n\
             spec: {{match: {{pathPrefix: {prefix}}}, cluster: svc{rest}}}\n"
        );
    }
    yaml += &more(cp.grpc_addr());
    control::apply(&cp, &yaml)
        .await
        .unwrap_or_else(|e| panic!("apply: {e}"));
    let first = format!("{}/w", routes.first().map_or("/", |r| r.0));
    let (envoy, envoy_addr) = envoy(&bin, &cp, &format!("{node}-envoy"), port, &first).await;
    let gw = gw_proxy(&cp, &format!("{node}-gw"), &first).await;
    check("Envoy", envoy_addr).await;
    check("gw-proxy", gw.listen_addr()).await;

    gw.shutdown().await;
    drop(envoy);
    cp.shutdown().await;
}
