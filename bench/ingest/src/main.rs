//! Ingest benchmark: simulated proxies stream stats (MetricsService) and access logs
//! (AccessLogService) for a given fleet request rate into a real control plane on SQLite or
//! PostgreSQL; reports whether the batched writes keep up (records written vs sent, drops, flush
//! time). Run: `cargo run --release -p gw-bench-ingest -- --rate 10000 --seconds 20 --db sqlite`.

use clap::Parser;
use gw_control_plane::server::{Config, ControlPlane};
use gw_control_plane::testing::PgTestDb;
use gw_proto::envoy::pb::envoy::config::core::v3::Node;
use gw_proto::envoy::pb::envoy::data::accesslog::v3::{
    AccessLogCommon, HttpAccessLogEntry, HttpRequestProperties, HttpResponseProperties,
};
use gw_proto::envoy::pb::envoy::service::accesslog::v3::access_log_service_client::AccessLogServiceClient;
use gw_proto::envoy::pb::envoy::service::accesslog::v3::stream_access_logs_message::{
    HttpAccessLogEntries, Identifier as LogId, LogEntries,
};
use gw_proto::envoy::pb::envoy::service::accesslog::v3::StreamAccessLogsMessage;
use gw_proto::envoy::pb::envoy::service::metrics::v3::metrics_service_client::MetricsServiceClient;
use gw_proto::envoy::pb::envoy::service::metrics::v3::stream_metrics_message::Identifier;
use gw_proto::envoy::pb::envoy::service::metrics::v3::StreamMetricsMessage;
use gw_proto::envoy::pb::google::protobuf::UInt32Value;
use gw_proto::envoy::pb::io::prometheus::client::{Counter, LabelPair, Metric, MetricFamily};
use gw_proto::telemetry as t;
use std::time::{Duration, Instant};

/// Ingest benchmark.
#[derive(Parser, Debug)]
struct Args {
    /// Fleet requests per second to simulate.
    #[arg(long, default_value_t = 10_000)]
    rate: u64,
    /// How long to run.
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    /// Simulated proxies.
    #[arg(long, default_value_t = 8)]
    proxies: u64,
    /// Routes in the fleet.
    #[arg(long, default_value_t = 200)]
    routes: u64,
    /// Fraction of successful requests logged (errors are always logged).
    #[arg(long, default_value_t = 0.01)]
    sample: f64,
    /// Fraction of requests that fail.
    #[arg(long, default_value_t = 0.01)]
    error_rate: f64,
    /// `sqlite` (a file in a temp dir) or `postgres` (a fresh database on GW_TEST_POSTGRES).
    #[arg(long, default_value = "sqlite")]
    db: String,
}

fn lp(k: &str, v: &str) -> LabelPair {
    LabelPair {
        name: Some(k.into()),
        value: Some(v.into()),
    }
}

fn families(routes: u64, per_route: &[(u64, u64)]) -> Vec<MetricFamily> {
    let mut metric = Vec::new();
    for r in 0..routes {
        let (ok, failed) = per_route[r as usize];
        for (class, v) in [("2xx", ok), ("5xx", failed)] {
            metric.push(Metric {
                label: vec![
                    lp("kind", "route"),
                    lp("tenant", "bench"),
                    lp("name", &format!("r{r}")),
                    lp("class", class),
                ],
                counter: Some(Counter {
                    value: Some(v as f64),
                    ..Default::default()
                }),
                ..Default::default()
            });
        }
    }
    vec![MetricFamily {
        name: Some(t::REQUESTS.into()),
        metric,
        ..Default::default()
    }]
}

fn log(i: u64, status: u32) -> HttpAccessLogEntry {
    HttpAccessLogEntry {
        common_properties: Some(AccessLogCommon {
            route_name: format!("bench/r{}", i % 200),
            upstream_cluster: "bench/c0".into(),
            ..Default::default()
        }),
        request: Some(HttpRequestProperties {
            request_method: 1,
            path: format!("/r/{i}"),
            request_id: format!("req-{i}"),
            ..Default::default()
        }),
        response: Some(HttpResponseProperties {
            response_code: Some(UInt32Value { value: status }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

async fn proxy(url: String, id: u64, a: std::sync::Arc<Args>) -> anyhow::Result<(u64, u64)> {
    let node = Some(Node {
        id: format!("bench-{id}"),
        ..Default::default()
    });
    let rate = a.rate / a.proxies;
    let mut per_route = vec![(0u64, 0u64); a.routes as usize];
    let (mtx, mrx) = tokio::sync::mpsc::channel(16);
    let (ltx, lrx) = tokio::sync::mpsc::channel(16);
    let mut metrics = MetricsServiceClient::connect(url.clone()).await?;
    let mut logs = AccessLogServiceClient::connect(url).await?;
    let m = tokio::spawn(async move {
        metrics
            .stream_metrics(tokio_stream::wrappers::ReceiverStream::new(mrx))
            .await
    });
    let l = tokio::spawn(async move {
        logs.stream_access_logs(tokio_stream::wrappers::ReceiverStream::new(lrx))
            .await
    });
    let (mut sent_logs, mut requests) = (0u64, 0u64);
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    for step in 0..a.seconds * 10 {
        tick.tick().await;
        let mut batch = Vec::new();
        for _ in 0..rate / 10 {
            let r = requests % a.routes;
            let failed = rand::random::<f64>() < a.error_rate;
            if failed {
                per_route[r as usize].1 += 1;
            } else {
                per_route[r as usize].0 += 1;
            }
            if failed || rand::random::<f64>() < a.sample {
                batch.push(log(requests, if failed { 503 } else { 200 }));
            }
            requests += 1;
        }
        sent_logs += batch.len() as u64;
        let identifier = (step == 0).then(|| LogId {
            node: node.clone(),
            log_name: "bench".into(),
        });
        ltx.send(StreamAccessLogsMessage {
            identifier,
            log_entries: Some(LogEntries::HttpLogs(HttpAccessLogEntries {
                log_entry: batch,
            })),
        })
        .await?;
        if step % 10 == 9 {
            let identifier = (step == 9).then(|| Identifier { node: node.clone() });
            mtx.send(StreamMetricsMessage {
                identifier,
                envoy_metrics: families(a.routes, &per_route),
            })
            .await?;
        }
    }
    drop((mtx, ltx));
    m.await??;
    l.await??;
    Ok((requests, sent_logs))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = std::sync::Arc::new(Args::parse());
    let dir = std::env::temp_dir().join(format!("gw-bench-ingest-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let pg = if args.db == "postgres" {
        PgTestDb::create("bench_ingest").await
    } else {
        None
    };
    let url = match &pg {
        Some(db) => db.url.clone(),
        None => format!("sqlite://{}", dir.join("userdb.sqlite").display()),
    };
    let mut cfg = Config::for_tests(url);
    cfg.ingest.flush_interval = Duration::from_secs(1);
    cfg.ingest.resolution = Duration::from_secs(60);
    let cp = ControlPlane::start(cfg).await?;
    let grpc = format!("http://{}", cp.grpc_addr());
    let started = Instant::now();
    let mut tasks = Vec::new();
    for id in 0..args.proxies {
        tasks.push(tokio::spawn(proxy(grpc.clone(), id, args.clone())));
    }
    let (mut requests, mut logs) = (0, 0);
    for t in tasks {
        let (r, l) = t.await??;
        requests += r;
        logs += l;
    }
    let sending = started.elapsed();
    let flush = Instant::now();
    cp.ingest().flush().await;
    let final_flush = flush.elapsed();
    let stats = cp.store().stats("route", "bench", "", 0).await?;
    let buffer = cp.ingest().clone();
    // Shutting down waits for the flusher, so every record is either stored or counted dropped.
    cp.shutdown().await;
    let stored = buffer.flushed_logs();
    let dropped = buffer.dropped_logs();
    let counted: u64 = stats.iter().map(|(_, _, r)| r.requests).sum();
    println!("backend            {}", args.db);
    println!(
        "fleet rate         {} req/s for {} s over {} proxies, {} routes",
        args.rate, args.seconds, args.proxies, args.routes
    );
    println!(
        "requests simulated {requests} ({:.0} req/s achieved)",
        requests as f64 / sending.as_secs_f64()
    );
    println!(
        "requests in rollups {counted} ({})",
        if counted == requests {
            "all counted"
        } else {
            "MISMATCH"
        }
    );
    println!(
        "access logs sent   {logs} ({:.0}/s), stored {stored}, dropped {dropped}",
        logs as f64 / sending.as_secs_f64()
    );
    println!(
        "final flush        {:.1} ms (backlog after the run)",
        final_flush.as_secs_f64() * 1000.0
    );
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
