//! `stats`, `logs` and what `describe` shows of them, fed the way proxies feed the control plane:
//! Envoy's MetricsService and AccessLogService. `ingest().flush()` makes the writes visible.

use crate::env::{q, Env};
use gw_proto::envoy::pb::envoy::config::core::v3::{
    address, socket_address, Address, Node, SocketAddress,
};
use gw_proto::envoy::pb::envoy::data::accesslog::v3::{
    AccessLogCommon, HttpAccessLogEntry, HttpRequestProperties, HttpResponseProperties,
    ResponseFlags,
};
use gw_proto::envoy::pb::envoy::service::accesslog::v3::access_log_service_client::AccessLogServiceClient;
use gw_proto::envoy::pb::envoy::service::accesslog::v3::stream_access_logs_message::{
    HttpAccessLogEntries, Identifier as LogId, LogEntries,
};
use gw_proto::envoy::pb::envoy::service::accesslog::v3::StreamAccessLogsMessage;
use gw_proto::envoy::pb::envoy::service::metrics::v3::metrics_service_client::MetricsServiceClient;
use gw_proto::envoy::pb::envoy::service::metrics::v3::stream_metrics_message::Identifier;
use gw_proto::envoy::pb::envoy::service::metrics::v3::StreamMetricsMessage;
use gw_proto::envoy::pb::io::prometheus::client::{
    Bucket, Counter, Gauge, Histogram, LabelPair, Metric, MetricFamily, MetricType,
};
use gw_proto::telemetry as t;

fn labels(pairs: &[(&str, &str)]) -> Vec<LabelPair> {
    pairs
        .iter()
        .map(|(k, v)| LabelPair {
            name: Some((*k).into()),
            value: Some((*v).into()),
        })
        .collect()
}

fn family(name: &str, ty: MetricType, metric: Vec<Metric>) -> MetricFamily {
    MetricFamily {
        name: Some(name.into()),
        r#type: Some(ty as i32),
        metric,
        ..Default::default()
    }
}

fn gauge(name: &str, label: Vec<LabelPair>, v: f64) -> MetricFamily {
    family(
        name,
        MetricType::Gauge,
        vec![Metric {
            label,
            gauge: Some(Gauge { value: Some(v) }),
            ..Default::default()
        }],
    )
}

/// One proxy's cumulative stats: route acme/users served 150 × 2xx and 50 × 5xx, and the breaker
/// of users-svc's endpoint 127.0.0.1:18081 is open.
fn metrics() -> StreamMetricsMessage {
    let route = |class: &str| {
        labels(&[
            ("kind", "route"),
            ("tenant", "acme"),
            ("name", "users"),
            ("class", class),
        ])
    };
    let count = |label, v| Metric {
        label,
        counter: Some(Counter {
            value: Some(v),
            ..Default::default()
        }),
        ..Default::default()
    };
    let histogram = Histogram {
        sample_count: Some(200),
        sample_sum: Some(3000.0),
        bucket: [(5.0, 120), (50.0, 190), (f64::INFINITY, 200)]
            .iter()
            .map(|&(b, c)| Bucket {
                upper_bound: Some(b),
                cumulative_count: Some(c),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    };
    let endpoint = labels(&[
        ("tenant", "acme"),
        ("cluster", "users-svc"),
        ("endpoint", "127.0.0.1:18081"),
    ]);
    StreamMetricsMessage {
        identifier: Some(Identifier {
            node: Some(Node {
                id: "edge-1".into(),
                cluster: "ingress".into(),
                ..Default::default()
            }),
        }),
        envoy_metrics: vec![
            gauge(t::UPTIME, vec![], 1.0),
            family(
                t::REQUESTS,
                MetricType::Counter,
                vec![count(route("2xx"), 150.0), count(route("5xx"), 50.0)],
            ),
            family(
                t::DURATION,
                MetricType::Histogram,
                vec![Metric {
                    label: labels(&[("kind", "route"), ("tenant", "acme"), ("name", "users")]),
                    histogram: Some(histogram),
                    ..Default::default()
                }],
            ),
            gauge(t::CIRCUIT_STATE, endpoint, 1.0),
        ],
    }
}

fn socket(ip: &str, port: u32) -> Option<Address> {
    Some(Address {
        address: Some(address::Address::SocketAddress(SocketAddress {
            address: ip.into(),
            port_specifier: Some(socket_address::PortSpecifier::PortValue(port)),
            ..Default::default()
        })),
    })
}

fn log_entry(status: u32, path: &str, flags: ResponseFlags) -> HttpAccessLogEntry {
    HttpAccessLogEntry {
        common_properties: Some(AccessLogCommon {
            downstream_remote_address: socket("10.1.2.3", 5555),
            upstream_remote_address: socket("127.0.0.1", 18081),
            upstream_cluster: "acme/users-svc".into(),
            route_name: "acme/users".into(),
            response_flags: Some(flags),
            duration: Some(gw_proto::envoy::pb::google::protobuf::Duration {
                seconds: 0,
                nanos: 12_000_000,
            }),
            ..Default::default()
        }),
        request: Some(HttpRequestProperties {
            request_method: 1,
            path: path.into(),
            authority: "api.acme.test".into(),
            request_id: format!("rid{}", path.replace('/', "-")),
            ..Default::default()
        }),
        response: Some(HttpResponseProperties {
            response_code: Some(gw_proto::envoy::pb::google::protobuf::UInt32Value {
                value: status,
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn access_logs() -> StreamAccessLogsMessage {
    StreamAccessLogsMessage {
        identifier: Some(LogId {
            node: Some(Node {
                id: "edge-1".into(),
                ..Default::default()
            }),
            log_name: "gw".into(),
        }),
        log_entries: Some(LogEntries::HttpLogs(HttpAccessLogEntries {
            log_entry: vec![
                log_entry(200, "/users/1", ResponseFlags::default()),
                log_entry(
                    503,
                    "/users/2",
                    ResponseFlags {
                        upstream_connection_failure: true,
                        ..Default::default()
                    },
                ),
            ],
        })),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn stats_logs_and_describe_show_what_proxies_report() {
    let env = Env::start().await;
    env.run(&["apply", "-f", &q()]).await;
    let none = env.run(&["stats", "routes", "-t", "acme"]).await;
    assert_eq!(
        (none.code, none.stderr.trim()),
        (0, "No traffic in the last 15m.")
    );

    MetricsServiceClient::connect(env.server())
        .await
        .unwrap()
        .stream_metrics(tokio_stream::iter(vec![metrics()]))
        .await
        .unwrap();
    AccessLogServiceClient::connect(env.server())
        .await
        .unwrap()
        .stream_access_logs(tokio_stream::iter(vec![access_logs()]))
        .await
        .unwrap();
    env.cp.ingest().flush().await;

    let stats = env.run(&["stats", "routes", "-t", "acme"]).await;
    assert_eq!(stats.code, 0, "{}", stats.stderr);
    let lines: Vec<&str> = stats.stdout.lines().collect();
    assert!(
        lines[0].starts_with("TENANT  NAME   REQUESTS  SUCCESS"),
        "{}",
        stats.stdout
    );
    let row: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(
        row[..8],
        ["acme", "users", "200", "75.00%", "150", "0", "0", "50"]
    );
    let json = env
        .run(&["stats", "routes", "-t", "acme", "-o", "json"])
        .await;
    let v: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(v[0]["status"]["5xx"], 50);

    let logs = env.run(&["logs", "--status", "5xx", "-t", "acme"]).await;
    assert_eq!(logs.code, 0, "{}", logs.stderr);
    let lines: Vec<&str> = logs.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{}", logs.stdout);
    for want in [
        "rid-users-2",
        "10.1.2.3",
        "acme/users",
        "users-svc",
        "127.0.0.1:18081",
        "GET",
        "/users/2",
        "503",
        "12.0ms",
        "connect_failure",
    ] {
        assert!(lines[1].contains(want), "missing {want:?} in {}", lines[1]);
    }
    let bad = env.run(&["logs", "--status", "6xx"]).await;
    assert_eq!(bad.code, 1);
    assert!(bad.stderr.starts_with("error: logs: "), "{}", bad.stderr);

    let d = env.run(&["describe", "route", "users", "-t", "acme"]).await;
    assert_eq!(d.code, 0, "{}", d.stderr);
    assert!(
        d.stdout
            .contains("Stats (15m):   200 requests, 75.00% success, 5xx 50, upstream errors 0,"),
        "{}",
        d.stdout
    );
    let row: Vec<&str> = d
        .stdout
        .lines()
        .find(|l| l.trim_start().starts_with("127.0.0.1:18081"))
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!(row[3..], ["healthy", "open", "1", "proxy"], "{}", d.stdout);
    let ep = env
        .run(&[
            "describe",
            "endpoint",
            "users-svc/127.0.0.1:18081",
            "-t",
            "acme",
        ])
        .await;
    assert!(ep.stdout.contains("\nedge-1  "), "{}", ep.stdout);
}

#[tokio::test(flavor = "multi_thread")]
async fn alerts_list_and_ack() {
    let env = Env::start().await;
    assert_eq!(env.run(&["alerts"]).await.stderr.trim(), "No alerts.");
    // The evaluator runs on its own clock; a firing alert is seeded the way it would store one.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let alert = gw_control_plane::store::AlertRecord {
        id: "al-1".into(),
        tenant: "acme".into(),
        rule: "orders-errors".into(),
        metric: "error_rate".into(),
        scope: "route/users".into(),
        state: "firing".into(),
        value: 0.25,
        threshold: 0.05,
        started_at_ms: now - 60_000,
        fired_at_ms: Some(now - 30_000),
        updated_at_ms: now,
        ..Default::default()
    };
    env.cp.store().save_alert(&alert, None).await.unwrap();

    let list = env.run(&["alerts", "-t", "acme"]).await;
    assert_eq!(list.code, 0, "{}", list.stderr);
    let row: Vec<&str> = list
        .stdout
        .lines()
        .nth(1)
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!(
        row[..7],
        [
            "al-1",
            "acme",
            "orders-errors",
            "route/users",
            "firing",
            "0.2500",
            "0.05"
        ],
        "{}",
        list.stdout
    );
    let ack = env.run(&["alerts", "ack", "al-1", "--by", "ops"]).await;
    assert_eq!(
        (ack.code, ack.stdout.as_str()),
        (0, "alert al-1 (orders-errors firing) acknowledged by ops\n"),
        "{}",
        ack.stderr
    );
    let json = env.run(&["alerts", "-o", "json"]).await;
    let v: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(v[0]["ackedBy"], "ops");
    let missing = env.run(&["alerts", "ack", "nope"]).await;
    assert_eq!(missing.code, 1);
    assert!(
        missing.stderr.starts_with("error: alert nope: "),
        "{}",
        missing.stderr
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn events_follow_streams_new_events() {
    use gw_proto::gateway::v1 as pb;
    use std::io::BufRead;
    let env = Env::start().await;
    let mut events = pb::events_client::EventsClient::connect(env.server())
        .await
        .unwrap();
    let record = |message: &str| pb::RecordEventRequest {
        event: Some(pb::Event {
            kind: "note".into(),
            severity: "info".into(),
            tenant: "acme".into(),
            object: "route/acme/users".into(),
            message: message.into(),
            ..Default::default()
        }),
    };
    events.record_event(record("before")).await.unwrap();

    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("gwctl"))
        .args([
            "--server",
            &env.server(),
            "events",
            "--follow",
            "-t",
            "acme",
        ])
        .env("GW_CONFIG", env.dir.path().join("config.yaml"))
        .env("NO_COLOR", "1")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            if tx.send(line.unwrap()).is_err() {
                return;
            }
        }
    });
    let next = || {
        rx.recv_timeout(std::time::Duration::from_secs(15))
            .expect("an event line")
    };
    // The backlog first; once it is there the stream is live.
    let first = tokio::task::block_in_place(next);
    assert!(
        first.contains("note") && first.ends_with("before"),
        "{first}"
    );
    events.record_event(record("after")).await.unwrap();
    let second = tokio::task::block_in_place(next);
    assert!(
        second.contains("route/acme/users") && second.ends_with("after"),
        "{second}"
    );
    child.kill().unwrap();
    child.wait().unwrap();
}
