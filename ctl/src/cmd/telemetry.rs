//! `gwctl stats`, `logs`, `events`, `alerts`: the monitoring chain from the operator's side.

use super::{parse_duration, Ctx};
use crate::cli::{AlertsAction, AlertsArgs, EventsArgs, Format, LogsArgs, StatsArgs};
use crate::error::{CliError, CliResult, StatusContext};
use crate::output::{cell, print, styled_table, table, time};
use comfy_table::Cell;
use gw_proto::gateway::v1 as pb;

fn ms(v: f64) -> String {
    if v >= 1000.0 {
        format!("{:.2}s", v / 1000.0)
    } else {
        format!("{v:.1}ms")
    }
}

pub(crate) fn emit<T: serde::Serialize>(format: Format, v: &T) {
    if format == Format::Yaml {
        print!("{}", serde_yaml::to_string(v).unwrap_or_default());
    } else {
        println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
    }
}

/// `stats routes|clusters|endpoints`.
pub async fn stats(ctx: &Ctx, a: StatsArgs) -> CliResult<u8> {
    let kind = match a.kind.trim_end_matches('s') {
        k @ ("route" | "cluster" | "endpoint") => k.to_owned(),
        other => {
            return Err(CliError::other(format!(
                "stats of {other:?}: use routes, clusters or endpoints"
            )))
        }
    };
    let c = ctx.client().await?;
    let req = pb::StatsRequest {
        kind,
        tenant: ctx.tenant.clone().unwrap_or_default(),
        name: a.name.unwrap_or_default(),
        since: Some(parse_duration("since", &a.since)?),
    };
    let rows = c.stats().get_stats(c.req(req)).await.context("stats")?.rows;
    if matches!(ctx.output, Format::Json | Format::Yaml) {
        let v: Vec<_> = rows
            .iter()
            .map(|r| {
                serde_json::json!({"kind": r.kind, "tenant": r.tenant, "name": r.name, "requests": r.requests,
                "successRate": r.success_rate, "status": {"1xx": r.status_1xx, "2xx": r.status_2xx, "3xx": r.status_3xx,
                "4xx": r.status_4xx, "5xx": r.status_5xx}, "upstreamErrors": r.upstream_errors, "meanMs": r.mean_ms,
                "p50Ms": r.p50_ms, "p90Ms": r.p90_ms, "p99Ms": r.p99_ms})
            })
            .collect();
        emit(ctx.output, &v);
        return Ok(0);
    }
    if rows.is_empty() {
        eprintln!("No traffic in the last {}.", a.since);
        return Ok(0);
    }
    let mut t = table(&[
        "TENANT",
        "NAME",
        "REQUESTS",
        "SUCCESS",
        "2XX",
        "3XX",
        "4XX",
        "5XX",
        "UPSTREAM ERR",
        "P50",
        "P90",
        "P99",
        "MEAN",
    ]);
    for r in rows {
        t.add_row(vec![
            r.tenant,
            r.name,
            r.requests.to_string(),
            format!("{:.2}%", r.success_rate * 100.0),
            r.status_2xx.to_string(),
            r.status_3xx.to_string(),
            r.status_4xx.to_string(),
            r.status_5xx.to_string(),
            r.upstream_errors.to_string(),
            ms(r.p50_ms),
            ms(r.p90_ms),
            ms(r.p99_ms),
            ms(r.mean_ms),
        ]);
    }
    print(&t);
    Ok(0)
}

/// `logs`.
pub async fn logs(ctx: &Ctx, a: LogsArgs) -> CliResult<u8> {
    let c = ctx.client().await?;
    let req = pb::LogsRequest {
        tenant: ctx.tenant.clone().unwrap_or_default(),
        route: a.route.unwrap_or_default(),
        cluster: a.cluster.unwrap_or_default(),
        status: a.status.unwrap_or_default(),
        since: Some(parse_duration("since", &a.since)?),
        limit: a.limit,
    };
    let recs = c
        .stats()
        .get_logs(c.req(req))
        .await
        .context("logs")?
        .records;
    let dur = |r: &pb::AccessLogRecord| {
        r.duration.map_or(0.0, |d| {
            d.seconds as f64 * 1000.0 + f64::from(d.nanos) / 1e6
        })
    };
    if matches!(ctx.output, Format::Json | Format::Yaml) {
        let v: Vec<_> = recs
            .iter()
            .map(|r| {
                serde_json::json!({"at": time(r.at.as_ref()), "node": r.node, "requestId": r.request_id, "clientIp": r.client_ip,
                "tenant": r.tenant, "route": r.route, "cluster": r.cluster, "endpoint": r.endpoint, "method": r.method,
                "authority": r.authority, "path": r.path, "status": r.status, "durationMs": dur(r), "upstreamError": r.upstream_error})
            })
            .collect();
        emit(ctx.output, &v);
        return Ok(0);
    }
    if recs.is_empty() {
        eprintln!("No access-log records in the last {}.", a.since);
        return Ok(0);
    }
    let mut t = table(&[
        "TIME",
        "REQUEST ID",
        "CLIENT",
        "ROUTE",
        "CLUSTER",
        "ENDPOINT",
        "METHOD",
        "PATH",
        "STATUS",
        "DURATION",
        "UPSTREAM ERROR",
    ]);
    for r in &recs {
        t.add_row(vec![
            time(r.at.as_ref()),
            r.request_id.clone(),
            r.client_ip.clone(),
            format!("{}/{}", r.tenant, r.route),
            r.cluster.clone(),
            r.endpoint.clone(),
            r.method.clone(),
            r.path.clone(),
            r.status.to_string(),
            ms(dur(r)),
            if r.upstream_error.is_empty() {
                "-".into()
            } else {
                r.upstream_error.clone()
            },
        ]);
    }
    print(&t);
    Ok(0)
}

fn event_line(e: &pb::Event) -> String {
    let who = if e.node.is_empty() {
        String::new()
    } else {
        format!(" [{}]", e.node)
    };
    format!(
        "{}  {:<7} {:<20} {:<28} {}{who}",
        time(e.at.as_ref()),
        e.severity,
        e.kind,
        e.object,
        e.message
    )
}

/// `events [--follow]`.
pub async fn events(ctx: &Ctx, a: EventsArgs) -> CliResult<u8> {
    let c = ctx.client().await?;
    let req = pb::ListEventsRequest {
        tenant: ctx.tenant.clone().unwrap_or_default(),
        kind: a.kind.unwrap_or_default(),
        since: Some(parse_duration("since", &a.since)?),
        limit: a.limit,
        follow: a.follow,
    };
    let mut stream = c.events().list_events(c.req(req)).await.context("events")?;
    let mut n = 0;
    loop {
        let next = tokio::select! {
            m = stream.message() => m,
            _ = tokio::signal::ctrl_c() => return Ok(0),
        };
        match next {
            Ok(Some(e)) => {
                n += 1;
                if matches!(ctx.output, Format::Json | Format::Yaml) {
                    let v = serde_json::json!({"id": e.id, "at": time(e.at.as_ref()), "kind": e.kind, "severity": e.severity,
                        "tenant": e.tenant, "object": e.object, "node": e.node, "message": e.message, "attributes": e.attributes});
                    // One JSON object per line, or one YAML document per event: both stream.
                    if ctx.output == Format::Json {
                        println!("{v}");
                    } else {
                        print!("---\n{}", serde_yaml::to_string(&v).unwrap_or_default());
                    }
                } else {
                    println!("{}", event_line(&e));
                }
            }
            Ok(None) if a.follow => {
                return Err(CliError::other(
                    "the control plane ended the event stream (shutting down?)",
                ))
            }
            Ok(None) => break,
            Err(status) => {
                return Err(CliError::Status {
                    context: "events".into(),
                    status,
                })
            }
        }
    }
    if n == 0 && !a.follow {
        eprintln!("No events in the last {}.", a.since);
    }
    Ok(0)
}

/// `alerts` and `alerts ack ID`.
pub async fn alerts(ctx: &Ctx, a: AlertsArgs) -> CliResult<u8> {
    let c = ctx.client().await?;
    if let Some(AlertsAction::Ack { id, by }) = a.action {
        let by = by
            .or_else(|| std::env::var("USER").ok())
            .unwrap_or_else(|| "gwctl".into());
        let al = c
            .alerts()
            .ack_alert(c.req(pb::AckAlertRequest {
                id: id.clone(),
                by: by.clone(),
            }))
            .await
            .context(format!("alert {id}"))?;
        println!(
            "alert {} ({} {}) acknowledged by {by}",
            al.id, al.rule, al.state
        );
        return Ok(0);
    }
    let req = pb::ListAlertsRequest {
        tenant: ctx.tenant.clone().unwrap_or_default(),
        state: a.state.unwrap_or_default(),
        limit: 200,
    };
    let alerts = c
        .alerts()
        .list_alerts(c.req(req))
        .await
        .context("alerts")?
        .alerts;
    if matches!(ctx.output, Format::Json | Format::Yaml) {
        let v: Vec<_> = alerts
            .iter()
            .map(|x| {
                serde_json::json!({"id": x.id, "tenant": x.tenant, "rule": x.rule, "metric": x.metric, "scope": x.scope,
                "state": x.state, "value": x.value, "threshold": x.threshold, "startedAt": time(x.started_at.as_ref()),
                "firedAt": time(x.fired_at.as_ref()), "resolvedAt": time(x.resolved_at.as_ref()),
                "ackedBy": x.acked_by, "delivery": x.delivery})
            })
            .collect();
        emit(ctx.output, &v);
        return Ok(0);
    }
    if alerts.is_empty() {
        eprintln!("No alerts.");
        return Ok(0);
    }
    let color = crate::output::color();
    let mut t = styled_table(
        &[
            "ID",
            "TENANT",
            "RULE",
            "SCOPE",
            "STATE",
            "VALUE",
            "THRESHOLD",
            "SINCE",
            "RESOLVED",
            "ACKED BY",
            "WEBHOOK",
        ],
        color,
    );
    for x in alerts {
        let since = if x.fired_at.is_some() {
            time(x.fired_at.as_ref())
        } else {
            time(x.started_at.as_ref())
        };
        let acked_by = if x.acked_by.is_empty() {
            "-".to_owned()
        } else {
            x.acked_by
        };
        t.add_row(vec![
            Cell::new(x.id),
            Cell::new(x.tenant),
            Cell::new(x.rule),
            Cell::new(x.scope),
            cell(color, &x.state),
            Cell::new(format!("{:.4}", x.value)),
            Cell::new(x.threshold),
            Cell::new(since),
            Cell::new(time(x.resolved_at.as_ref())),
            Cell::new(acked_by),
            cell(color, &x.delivery),
        ]);
    }
    print(&t);
    Ok(0)
}
