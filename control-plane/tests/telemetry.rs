//! Telemetry ingest over real gRPC: Envoy's MetricsService and AccessLogService in, `Stats` out.

#![allow(clippy::unwrap_used)]

use gw_control_plane::server::{Config, ControlPlane};
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
use gw_proto::gateway::v1 as pb;
use gw_proto::gateway::v1::stats_client::StatsClient;
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

fn counter(name: &str, series: Vec<(Vec<LabelPair>, f64)>) -> MetricFamily {
    MetricFamily {
        name: Some(name.into()),
        r#type: Some(MetricType::Counter as i32),
        metric: series
            .into_iter()
            .map(|(label, v)| Metric {
                label,
                counter: Some(Counter {
                    value: Some(v),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}

fn histogram(
    name: &str,
    label: Vec<LabelPair>,
    cumulative: &[(f64, u64)],
    count: u64,
    sum: f64,
) -> MetricFamily {
    let h = Histogram {
        sample_count: Some(count),
        sample_sum: Some(sum),
        bucket: cumulative
            .iter()
            .map(|(b, c)| Bucket {
                upper_bound: Some(*b),
                cumulative_count: Some(*c),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    };
    MetricFamily {
        name: Some(name.into()),
        r#type: Some(MetricType::Histogram as i32),
        metric: vec![Metric {
            label,
            histogram: Some(h),
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn gauge(name: &str, label: Vec<LabelPair>, v: f64) -> MetricFamily {
    MetricFamily {
        name: Some(name.into()),
        r#type: Some(MetricType::Gauge as i32),
        metric: vec![Metric {
            label,
            gauge: Some(Gauge { value: Some(v) }),
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn route_sample(ok: f64, failed: f64, hist: &[(f64, u64)], sum: f64) -> Vec<MetricFamily> {
    let l = |class| {
        labels(&[
            ("kind", "route"),
            ("tenant", "acme"),
            ("name", "users"),
            ("class", class),
        ])
    };
    let total = ok + failed;
    vec![
        gauge(t::UPTIME, vec![], 1.0),
        counter(t::REQUESTS, vec![(l("2xx"), ok), (l("5xx"), failed)]),
        histogram(
            t::DURATION,
            labels(&[("kind", "route"), ("tenant", "acme"), ("name", "users")]),
            hist,
            total as u64,
            sum,
        ),
        gauge(
            t::CIRCUIT_STATE,
            labels(&[
                ("tenant", "acme"),
                ("cluster", "users-svc"),
                ("endpoint", "127.0.0.1:9"),
            ]),
            1.0,
        ),
        // A stock Envoy's cluster stats, named the way gw's xDS names clusters.
        counter("cluster.acme/users-svc.upstream_rq_2xx", vec![(vec![], ok)]),
    ]
}

#[tokio::test]
async fn metrics_stream_becomes_rollups_and_endpoint_state() {
    let cp = ControlPlane::start(Config::for_tests("sqlite::memory:"))
        .await
        .unwrap();
    let url = format!("http://{}", cp.grpc_addr());
    let node = Some(Node {
        id: "edge-1".into(),
        cluster: "ingress".into(),
        ..Default::default()
    });
    // Cumulative: 90 ok + 10 failed, then 150 ok + 50 failed → 150 ok, 50 failed in total.
    let first = StreamMetricsMessage {
        identifier: Some(Identifier { node }),
        envoy_metrics: route_sample(
            90.0,
            10.0,
            &[(5.0, 60), (50.0, 95), (f64::INFINITY, 100)],
            1000.0,
        ),
    };
    let second = StreamMetricsMessage {
        identifier: None,
        envoy_metrics: route_sample(
            150.0,
            50.0,
            &[(5.0, 120), (50.0, 190), (f64::INFINITY, 200)],
            3000.0,
        ),
    };
    MetricsServiceClient::connect(url.clone())
        .await
        .unwrap()
        .stream_metrics(tokio_stream::iter(vec![first, second]))
        .await
        .unwrap();
    cp.ingest().flush().await;

    let mut stats = StatsClient::connect(url).await.unwrap();
    let req = |kind: &str| pb::StatsRequest {
        kind: kind.into(),
        tenant: "acme".into(),
        ..Default::default()
    };
    let rows = stats
        .get_stats(req("route"))
        .await
        .unwrap()
        .into_inner()
        .rows;
    assert_eq!(rows.len(), 1);
    let r = &rows[0];
    assert_eq!(
        (r.name.as_str(), r.requests, r.status_2xx, r.status_5xx),
        ("users", 200, 150, 50)
    );
    assert!((r.success_rate - 0.75).abs() < 1e-9);
    assert!(r.p50_ms > 2.0 && r.p50_ms <= 5.0, "p50 {}", r.p50_ms);
    assert!(r.p99_ms > 50.0, "p99 {}", r.p99_ms);
    assert!((r.mean_ms - 15.0).abs() < 1e-9, "mean {}", r.mean_ms);
    let clusters = stats
        .get_stats(req("cluster"))
        .await
        .unwrap()
        .into_inner()
        .rows;
    assert_eq!(
        (clusters[0].name.as_str(), clusters[0].status_2xx),
        ("users-svc", 150)
    );
    let states = cp.store().endpoint_states(0).await.unwrap();
    assert_eq!(states.len(), 1);
    assert_eq!(
        (states[0].node.as_str(), states[0].breaker.as_str()),
        ("edge-1", "open")
    );
    let metrics = http_get(cp.http_addr(), "/metrics").await;
    assert!(
        metrics.contains(
            r#"gw_fleet_requests_total{kind="route",tenant="acme",name="users",class="5xx"} 50"#
        ),
        "{metrics}"
    );
    assert!(metrics.contains(
        r#"gw_fleet_request_duration_ms_count{kind="route",tenant="acme",name="users"} 200"#
    ));
    let bad = stats.get_stats(req("widget")).await.unwrap_err();
    assert_eq!(
        bad.message(),
        "kind: \"widget\" is not route, cluster or endpoint"
    );
    cp.shutdown().await;
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

fn entry(status: u32, path: &str, flags: ResponseFlags) -> HttpAccessLogEntry {
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
            request_id: format!("rid-{path}"),
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

#[tokio::test]
async fn access_logs_are_stored_and_filtered() {
    let cp = ControlPlane::start(Config::for_tests("sqlite::memory:"))
        .await
        .unwrap();
    let url = format!("http://{}", cp.grpc_addr());
    let entries = vec![
        entry(200, "/users/1", ResponseFlags::default()),
        entry(
            503,
            "/users/2",
            ResponseFlags {
                upstream_connection_failure: true,
                ..Default::default()
            },
        ),
    ];
    let msg = StreamAccessLogsMessage {
        identifier: Some(LogId {
            node: Some(Node {
                id: "edge-1".into(),
                ..Default::default()
            }),
            log_name: "gw".into(),
        }),
        log_entries: Some(LogEntries::HttpLogs(HttpAccessLogEntries {
            log_entry: entries,
        })),
    };
    AccessLogServiceClient::connect(url.clone())
        .await
        .unwrap()
        .stream_access_logs(tokio_stream::iter(vec![msg]))
        .await
        .unwrap();
    cp.ingest().flush().await;

    let mut stats = StatsClient::connect(url).await.unwrap();
    let all = stats
        .get_logs(pb::LogsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .records;
    assert_eq!(all.len(), 2);
    let errors = stats
        .get_logs(pb::LogsRequest {
            status: "5xx".into(),
            route: "users".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .records;
    assert_eq!(errors.len(), 1);
    let e = &errors[0];
    assert_eq!(
        (
            e.node.as_str(),
            e.tenant.as_str(),
            e.route.as_str(),
            e.cluster.as_str(),
            e.endpoint.as_str()
        ),
        ("edge-1", "acme", "users", "users-svc", "127.0.0.1:18081")
    );
    assert_eq!(
        (
            e.method.as_str(),
            e.path.as_str(),
            e.status,
            e.client_ip.as_str()
        ),
        ("GET", "/users/2", 503, "10.1.2.3")
    );
    assert_eq!(e.upstream_error, "connect_failure");
    assert_eq!(e.request_id, "rid-/users/2");
    assert_eq!(e.duration.unwrap().nanos, 12_000_000);
    let bad = stats
        .get_logs(pb::LogsRequest {
            status: "6xx".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), tonic::Code::InvalidArgument);
    cp.shutdown().await;
}

async fn http_get(addr: std::net::SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).await.unwrap();
    body
}
