//! xDS benchmark: N simulated Delta ADS clients against one control plane process holding
//! 10,000 routes, 2,000 clusters and 20,000 endpoints (defaults).
//!
//! Reports (a) time for all clients to complete initial sync, (b) p50/p99 time from one route
//! write through the API until every client has ACKed it, (c) control-plane RSS and CPU,
//! (d) bytes pushed per change, Delta vs SotW. Run with `bench/xds.sh` (release build).
//!
//! Flags: `--clients N --routes N --clusters N --endpoints N --tenants N --changes N`
//! `--control-plane PATH` (default: the `gw-control-plane` next to this binary's profile dir).

#![allow(missing_docs, clippy::unwrap_used)]

mod lean;
mod probe;
mod procstat;
mod seed;

use gw_proto::gateway::v1::config_client::ConfigClient;
use gw_proto::gateway::v1::ApplyRequest;
use gw_proto::model::Object;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == &format!("--{name}"))
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn control_plane_bin() -> std::path::PathBuf {
    let args: Vec<String> = std::env::args().collect();
    if let Some(p) = args
        .iter()
        .position(|a| a == "--control-plane")
        .and_then(|i| args.get(i + 1))
    {
        return p.into();
    }
    // target/<profile>/examples/xds_bench → target/<profile>/gw-control-plane
    let exe = std::env::current_exe().unwrap();
    exe.parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("gw-control-plane")
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

async fn apply(api: &mut ConfigClient<tonic::transport::Channel>, o: &Object) {
    api.apply(ApplyRequest {
        objects: vec![gw_proto::convert::object_to_pb(o)],
        dry_run: false,
    })
    .await
    .unwrap();
}

/// Waits until `done()` holds, polling every millisecond; the elapsed time since `t0`.
async fn until(t0: Instant, limit: Duration, done: impl Fn() -> bool) -> Option<Duration> {
    while !done() {
        if t0.elapsed() > limit {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    Some(t0.elapsed())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let shape = seed::Shape {
        tenants: arg("tenants", 100),
        clusters: arg("clusters", 2000),
        routes: arg("routes", 10_000),
        endpoints: arg("endpoints", 20_000),
    };
    let clients = arg("clients", 1000);
    let changes = arg("changes", 20);
    println!("# gw xDS benchmark\n\nshape: {shape:?}, clients: {clients}, changes: {changes}");

    let dir = tempfile::tempdir()?;
    let db = format!("sqlite://{}", dir.path().join("userdb.sqlite").display());
    let t = Instant::now();
    seed::seed(&db, shape).await?;
    println!("seeded userdb in {:.1}s", t.elapsed().as_secs_f64());

    let grpc = SocketAddr::from(([127, 0, 0, 1], gw_e2e::free_port()));
    let http = SocketAddr::from(([127, 0, 0, 1], gw_e2e::free_port()));
    let mut child = tokio::process::Command::new(control_plane_bin())
        .args([
            "--db",
            &db,
            "--grpc",
            &grpc.to_string(),
            "--http",
            &http.to_string(),
        ])
        .env(
            "RUST_LOG",
            std::env::var("GW_BENCH_CP_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .kill_on_drop(true)
        .spawn()?;
    let pid = child.id().unwrap_or(0);
    let mut api = loop {
        match ConfigClient::connect(format!("http://{grpc}")).await {
            Ok(c) => break c,
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    };

    // Probes first: their first full sync also tells us the snapshot is built.
    let t = Instant::now();
    let delta_probe = probe::delta(grpc).await?;
    let sotw_probe = probe::sotw(grpc).await?;
    until(t, Duration::from_secs(120), || {
        delta_probe.get().1 >= 4 && sotw_probe.get().1 >= 4
    })
    .await
    .expect("probes synced");
    println!(
        "first snapshot served after {:.2}s",
        t.elapsed().as_secs_f64()
    );
    let (rss0, _) = procstat::rss_mib(pid);
    let cpu0 = procstat::cpu_seconds(pid);

    // (a) initial sync of N clients.
    let epoch = Instant::now();
    let stopping = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut progress = Vec::new();
    for id in 0..clients {
        let p = Arc::new(lean::Progress::default());
        progress.push(p.clone());
        let stopping = stopping.clone();
        tokio::spawn(async move {
            if let Err(e) = lean::run(grpc, id, epoch, p).await {
                if !stopping.load(Ordering::Acquire) {
                    eprintln!("client {id}: {e:#}");
                }
            }
        });
    }
    let synced = until(epoch, Duration::from_secs(600), || {
        progress
            .iter()
            .all(|p| p.synced_us.load(Ordering::Acquire) > 0)
    })
    .await;
    let mut sync_times: Vec<f64> = progress
        .iter()
        .map(|p| p.synced_us.load(Ordering::Acquire) as f64 / 1e6)
        .collect();
    sync_times.sort_by(f64::total_cmp);
    let cpu1 = procstat::cpu_seconds(pid);
    let (rss1, hwm1) = procstat::rss_mib(pid);
    let (d_init, _) = delta_probe.get();
    let (s_init, _) = sotw_probe.get();
    println!(
        "full initial sync of one client: {:.2} MiB (Delta), {:.2} MiB (SotW)",
        d_init as f64 / 1048576.0,
        s_init as f64 / 1048576.0
    );
    match synced {
        Some(d) => println!(
            "\n(a) initial sync of {clients} Delta clients: all in {:.2}s (p50 {:.2}s, p99 {:.2}s)",
            d.as_secs_f64(),
            pct(&sync_times, 0.5),
            pct(&sync_times, 0.99)
        ),
        None => println!("\n(a) initial sync did NOT complete within 600s"),
    }
    println!(
        "    control plane CPU during sync: {:.1}s; RSS {:.0} MiB idle before clients → {:.0} MiB after (peak {:.0} MiB)",
        cpu1 - cpu0,
        rss0,
        rss1,
        hwm1
    );

    // (b) route write → all clients ACKed.
    let mut all_acked = Vec::new();
    let mut per_client = Vec::new();
    let cpu_b0 = procstat::cpu_seconds(pid);
    let (d0, _) = delta_probe.get();
    let (s0, _) = sotw_probe.get();
    for i in 0..changes {
        let before: Vec<u64> = progress
            .iter()
            .map(|p| p.acked[3].load(Ordering::Acquire))
            .collect();
        let r = seed::route(
            shape,
            i * 7 % shape.routes,
            Duration::from_secs(20 + i as u64),
        );
        let t0 = Instant::now();
        let t0_us = u64::try_from(t0.duration_since(epoch).as_micros()).unwrap_or(0);
        apply(&mut api, &r).await;
        let done = until(t0, Duration::from_secs(60), || {
            progress
                .iter()
                .zip(&before)
                .all(|(p, b)| p.acked[3].load(Ordering::Acquire) > *b)
        })
        .await;
        match done {
            Some(d) => all_acked.push(d.as_secs_f64() * 1000.0),
            None => println!("change {i}: not all clients ACKed within 60s"),
        }
        for p in &progress {
            let at = p.last_rds_us.load(Ordering::Acquire);
            per_client.push(at.saturating_sub(t0_us) as f64 / 1000.0);
        }
    }
    let cpu_b1 = procstat::cpu_seconds(pid);
    let (d1, _) = delta_probe.get();
    let (s1, _) = sotw_probe.get();
    all_acked.sort_by(f64::total_cmp);
    per_client.sort_by(f64::total_cmp);
    println!(
        "\n(b) route write → all {clients} clients ACKed, over {} writes: p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
        all_acked.len(),
        pct(&all_acked, 0.5),
        pct(&all_acked, 0.99),
        all_acked.last().copied().unwrap_or(f64::NAN)
    );
    println!(
        "    per client (write → that client's ACK): p50 {:.0} ms, p99 {:.0} ms",
        pct(&per_client, 0.5),
        pct(&per_client, 0.99)
    );
    let (rss2, hwm2) = procstat::rss_mib(pid);
    println!(
        "\n(c) control plane: CPU {:.2}s per route write ({:.1}s for {changes}); RSS {:.0} MiB (peak {:.0} MiB)",
        (cpu_b1 - cpu_b0) / changes.max(1) as f64,
        cpu_b1 - cpu_b0,
        rss2,
        hwm2
    );

    // (d) bytes per change, Delta vs SotW (probe clients).
    println!(
        "\n(d) bytes pushed to one client per change:\n\n| change | Delta | SotW |\n|---|---|---|"
    );
    println!(
        "| route write (RDS) | {} | {} |",
        (d1 - d0) / changes.max(1) as u64,
        (s1 - s0) / changes.max(1) as u64
    );
    let per_tenant = (shape.clusters / shape.tenants).max(1);
    let eps = (shape.endpoints / shape.clusters.max(1)).max(1);
    for (label, object) in [
        ("cluster policy (CDS)", seed::cluster(0, 0, eps, 1500)),
        ("endpoint added (EDS)", seed::cluster(0, 0, eps + 1, 1500)),
    ] {
        let (d0, dn) = delta_probe.get();
        let (s0, sn) = sotw_probe.get();
        let t0 = Instant::now();
        apply(&mut api, &object).await;
        until(t0, Duration::from_secs(60), || {
            delta_probe.get().1 > dn && sotw_probe.get().1 > sn
        })
        .await;
        // Let a straggling second response (if any) land before reading.
        tokio::time::sleep(Duration::from_millis(300)).await;
        println!(
            "| {label} | {} | {} |",
            delta_probe.get().0 - d0,
            sotw_probe.get().0 - s0
        );
    }
    let _ = per_tenant;
    stopping.store(true, Ordering::Release);
    child.start_kill()?;
    let _ = child.wait().await;
    Ok(())
}
