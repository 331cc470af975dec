//! A stock Envoy and a gw-proxy fed by one control plane, each returned once it serves a path.

use crate::envoy::{Envoy, Mode};
use crate::{http, wait};
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
