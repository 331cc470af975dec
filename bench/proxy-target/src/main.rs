//! A gw-proxy without a control plane, for the peer benchmark: one listener, one route `/` to a
//! round-robin cluster of the kit's upstreams.
//!
//! `cargo run --release -p gw-bench-proxy -- 127.0.0.1:18400 127.0.0.1:18081,127.0.0.1:18082,127.0.0.1:18083 [workers] [lb]`

#![allow(clippy::unwrap_used, clippy::expect_used)]

use gw_proxy::config::fixture;

/// mimalloc: measurably faster than glibc malloc for hyper's many small, short-lived buffers.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use gw_proxy::server::{Proxy, ProxyConfig};
use std::net::SocketAddr;

fn main() {
    let mut args = std::env::args().skip(1);
    let listen: SocketAddr = args
        .next()
        .unwrap_or_else(|| "127.0.0.1:18400".into())
        .parse()
        .expect("listen address");
    let upstreams: Vec<(SocketAddr, u32)> = args
        .next()
        .unwrap_or_else(|| "127.0.0.1:18081,127.0.0.1:18082,127.0.0.1:18083".into())
        .split(',')
        .map(|a| (a.parse().expect("upstream address"), 1))
        .collect();
    let workers: usize = args.next().map_or(1, |w| w.parse().expect("workers"));
    let lb = args.next().unwrap_or_else(|| "round_robin".into());
    // As gw-proxy runs: the main thread is worker 0 (and runs the control tasks), `Proxy::start`
    // starts a thread for each other worker.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let mut cfg = ProxyConfig::for_tests(None, "bench");
        cfg.listen = listen;
        cfg.workers = workers;
        cfg.access_log_sample = 0.0;
        let proxy = Proxy::start(cfg).await.unwrap();
        let mut route = fixture::prefix_route("bench/all", "/", "bench/up");
        // GW_BENCH_TIMEOUT_MS=0 disables the route timeout (Envoy's default is 15 s).
        if let Some(ms) = std::env::var("GW_BENCH_TIMEOUT_MS")
            .ok()
            .and_then(|v| v.parse().ok())
        {
            if let Some(a) = fixture::action(&mut route) {
                a.timeout = Some(fixture::duration(std::time::Duration::from_millis(ms)));
            }
        }
        let res = fixture::simple(vec![route], &[("bench/up", &lb, upstreams)]);
        proxy.shared().apply(res).unwrap();
        eprintln!(
            "gw-bench-proxy on {} (admin {})",
            proxy.listen_addr(),
            proxy.admin_addr()
        );
        let _ = tokio::signal::ctrl_c().await;
        proxy.shutdown().await;
    });
}
