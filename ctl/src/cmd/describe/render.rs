//! `describe` output: what was fetched, as text. Pure, so the layout is tested line by line.

use super::{ClusterEndpoints, Report};
use crate::output::{age, cell, styled_table, text, time};
use comfy_table::Cell;
use gw_proto::gateway::v1 as pb;
use gw_proto::model::{format_duration as d, Kind, Object, Spec};
use std::fmt::Write;

/// The parts that are there, joined by `, `.
fn joined<const N: usize>(parts: [Option<String>; N]) -> String {
    parts.into_iter().flatten().collect::<Vec<_>>().join(", ")
}

/// `Label:` padded so values line up.
fn field(out: &mut String, label: &str, value: impl std::fmt::Display) {
    let _ = writeln!(out, "{:<15}{value}", format!("{label}:"));
}

/// The whole report.
pub fn report(r: &Report, color: bool) -> String {
    let mut out = String::new();
    header(&mut out, &r.object);
    match &r.object.spec {
        Spec::Route(s) => {
            let m = &s.match_;
            field(
                &mut out,
                "Hosts",
                if m.hosts.is_empty() {
                    "*".into()
                } else {
                    m.hosts.join(", ")
                },
            );
            field(&mut out, "Match", crate::cmd::get::path_match(m));
            if !m.methods.is_empty() {
                field(&mut out, "Methods", m.methods.join(", "));
            }
            for h in &m.headers {
                let how = h
                    .exact
                    .as_ref()
                    .map(|v| format!("= {v}"))
                    .or(h.prefix.as_ref().map(|v| format!("^= {v}")))
                    .or(h.regex.as_ref().map(|v| format!("~ {v}")))
                    .unwrap_or_else(|| "present".into());
                field(&mut out, "Header", format!("{} {how}", h.name));
            }
            field(&mut out, "Clusters", crate::cmd::get::targets(s));
            // A route the proxy answers sends nothing upstream: no timeout applies.
            if s.direct_response.is_none() && s.redirect.is_none() {
                field(
                    &mut out,
                    "Timeout",
                    crate::cmd::get::route_timeout(s.timeout),
                );
            }
            if let Some(idle) = s.idle_timeout {
                let idle = crate::cmd::get::route_timeout(idle);
                field(&mut out, "Idle timeout", idle);
            }
            if !s.upgrades.is_empty() {
                field(&mut out, "Upgrades", s.upgrades.join(", "));
            }
            for (label, ops) in [
                ("Req headers", &s.request_headers),
                ("Resp headers", &s.response_headers),
            ] {
                if !ops.is_empty() {
                    field(&mut out, label, header_ops(ops));
                }
            }
            let matched = m
                .path
                .as_deref()
                .or(m.path_prefix.as_deref())
                .unwrap_or("/");
            if let Some(w) = &s.rewrite {
                let parts = [
                    (!w.prefix.is_empty()).then(|| format!("{matched} -> {}", w.prefix)),
                    w.host.as_ref().map(|h| format!("host {h}")),
                ];
                field(&mut out, "Rewrite", joined(parts));
            }
            if let Some(x) = &s.redirect {
                let parts = [
                    x.scheme.as_ref().map(|v| format!("scheme {v}")),
                    x.host.as_ref().map(|v| format!("host {v}")),
                    x.port.map(|v| format!("port {v}")),
                    x.path.as_ref().map(|v| format!("path {v}")),
                    x.prefix.as_ref().map(|v| format!("{matched} -> {v}")),
                    x.strip_query.then(|| "query dropped".to_owned()),
                ];
                field(
                    &mut out,
                    "Redirect",
                    format!("{}: {}", x.code, joined(parts)),
                );
            }
            if let Some(x) = &s.retry {
                let per_try = x
                    .per_try_timeout
                    .map(|t| format!(", {} per try", d(t)))
                    .unwrap_or_default();
                field(
                    &mut out,
                    "Retry",
                    format!("{} attempts on {}{per_try}", x.attempts, x.on.join(", ")),
                );
            }
            if let Some(h) = &s.hash_on {
                field(&mut out, "Hash on", h);
            }
        }
        Spec::Cluster(s) => {
            field(&mut out, "LB", s.lb.as_str());
            field(&mut out, "Connect", d(s.connect_timeout));
            if let Some(h) = &s.health_check {
                field(
                    &mut out,
                    "Health check",
                    format!(
                        "{} every {}, timeout {}, healthy after {}, unhealthy after {}",
                        h.path.as_deref().unwrap_or("tcp connect"),
                        d(h.interval),
                        d(h.timeout),
                        h.healthy_threshold,
                        h.unhealthy_threshold
                    ),
                );
            }
            let b = &s.circuit_breaker;
            field(
                &mut out,
                "Breaker",
                format!(
                    "opens after {} failures or {}% failing (min {} requests), open {}, {} probes to close",
                    b.consecutive_failures,
                    b.failure_rate_threshold * 100.0,
                    b.minimum_requests,
                    d(b.open_timeout),
                    b.half_open_successes
                ),
            );
            field(&mut out, "Failures", b.fail_on.join(", "));
            let l = &s.limits;
            field(
                &mut out,
                "Limits",
                format!(
                    "{} connections, {} pending, {} requests, {} retries",
                    l.max_connections, l.max_pending_requests, l.max_requests, l.max_retries
                ),
            );
            if let Some(f) = &s.fallback_cluster {
                field(&mut out, "Fallback", f);
            }
            field(&mut out, "Protocol", s.protocol.as_str());
            if let Some(t) = &s.tls {
                field(&mut out, "TLS", tls_summary(t));
            }
        }
        Spec::Tenant(s) => {
            if !s.display_name.is_empty() {
                field(&mut out, "Display name", &s.display_name);
            }
            for (kind, names) in &r.owned {
                let list = if names.is_empty() {
                    "none".to_owned()
                } else {
                    format!("{} ({})", names.len(), names.join(", "))
                };
                let label = match kind {
                    Kind::AlertRule => "Alert rules".to_owned(),
                    k => format!("{}s", k.manifest_name()),
                };
                field(&mut out, &label, list);
            }
        }
        Spec::Listener(_) | Spec::AlertRule(_) => {
            out.push_str("Spec:\n");
            // Private keys are not shown (`gwctl get -o yaml` has them, for a round trip).
            let spec = match &r.object.spec {
                Spec::Listener(l) => Spec::Listener(gw_proto::model::ListenerSpec {
                    tls: l.tls.as_ref().map(|t| t.redacted()),
                    ..l.clone()
                }),
                s => s.clone(),
            };
            let yaml = serde_yaml::to_string(&spec.to_value()).unwrap_or_default();
            for line in yaml.lines() {
                let _ = writeln!(out, "  {line}");
            }
        }
    }
    for c in &r.clusters {
        out.push('\n');
        cluster(&mut out, c, color);
    }
    if let Some(s) = &r.stats {
        out.push('\n');
        stats(&mut out, s.as_ref());
    }
    out.push('\n');
    events(&mut out, &r.events);
    out
}

fn header(out: &mut String, o: &Object) {
    field(out, "Kind", o.spec.kind().manifest_name());
    field(out, "Name", &o.meta.name);
    if !o.meta.tenant.is_empty() {
        field(out, "Tenant", &o.meta.tenant);
    }
    field(
        out,
        "Version",
        format!(
            "{} (created at revision {})",
            o.meta.resource_version, o.meta.created_revision
        ),
    );
    field(out, "Age", age(o.meta.created_at_ms));
    if !o.meta.labels.is_empty() {
        let l: Vec<String> = o
            .meta
            .labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        field(out, "Labels", l.join(", "));
    }
}

fn source(s: i32) -> &'static str {
    match pb::EndpointSource::try_from(s) {
        Ok(pb::EndpointSource::Static) => "static",
        Ok(pb::EndpointSource::Kubernetes) => "kubernetes",
        _ => "registry",
    }
}

/// Health over the proxies that report an endpoint: healthy only if all say so.
fn health(states: &[&pb::EndpointState]) -> &'static str {
    if states.is_empty() {
        "-"
    } else if states.iter().all(|s| s.healthy) {
        "healthy"
    } else {
        "unhealthy"
    }
}

/// The worst breaker state any proxy reports.
fn breaker<'a>(states: &[&'a pb::EndpointState]) -> &'a str {
    states
        .iter()
        .map(|s| s.breaker.as_str())
        .max_by_key(|b| match *b {
            "open" => 2,
            "half_open" => 1,
            _ => 0,
        })
        .unwrap_or("-")
}

fn cluster(out: &mut String, c: &ClusterEndpoints, color: bool) {
    let _ = writeln!(out, "Cluster {}: {} endpoint(s)", c.name, c.endpoints.len());
    if c.endpoints.is_empty() {
        return;
    }
    let mut t = styled_table(
        &[
            "  ENDPOINT",
            "WEIGHT",
            "SOURCE",
            "HEALTH",
            "BREAKER",
            "REPORTED BY",
        ],
        color,
    );
    for e in &c.endpoints {
        let addr = format!("{}:{}", e.address, e.port);
        let mine: Vec<&pb::EndpointState> =
            c.states.iter().filter(|s| s.endpoint == addr).collect();
        let reported = match mine.len() {
            0 => "none".to_owned(),
            1 => "1 proxy".to_owned(),
            n => format!("{n} proxies"),
        };
        t.add_row(vec![
            Cell::new(format!("  {addr}")),
            Cell::new(e.weight),
            Cell::new(source(e.source)),
            cell(color, health(&mine)),
            cell(color, breaker(&mine)),
            Cell::new(reported),
        ]);
    }
    out.push_str(&text(&t));
}

fn stats(out: &mut String, row: Option<&pb::StatsRow>) {
    match row {
        None | Some(pb::StatsRow { requests: 0, .. }) => field(out, "Stats (15m)", "no traffic"),
        Some(r) => field(
            out,
            "Stats (15m)",
            format!(
                "{} requests, {:.2}% success, 5xx {}, upstream errors {}, p50 {:.1}ms p99 {:.1}ms",
                r.requests,
                r.success_rate * 100.0,
                r.status_5xx,
                r.upstream_errors,
                r.p50_ms,
                r.p99_ms
            ),
        ),
    }
}

fn events(out: &mut String, events: &[pb::Event]) {
    if events.is_empty() {
        field(out, "Events (1h)", "none");
        return;
    }
    out.push_str("Events (1h):\n");
    let skip = events.len().saturating_sub(10);
    for e in &events[skip..] {
        let _ = writeln!(
            out,
            "  {}  {:<8} {:<20} {}",
            time(e.at.as_ref()),
            e.severity,
            e.kind,
            e.message
        );
    }
}

/// `describe endpoint CLUSTER/ADDR:PORT`: what each proxy reports about it.
pub fn endpoint(
    tenant: &str,
    c: &ClusterEndpoints,
    addr: &str,
    stats_row: Option<&pb::StatsRow>,
    color: bool,
) -> String {
    let mut out = String::new();
    field(&mut out, "Endpoint", addr);
    field(&mut out, "Cluster", format!("{tenant}/{}", c.name));
    match c
        .endpoints
        .iter()
        .find(|e| format!("{}:{}", e.address, e.port) == addr)
    {
        Some(e) => {
            field(&mut out, "Weight", e.weight);
            field(&mut out, "Source", source(e.source));
            if e.expires_at.is_some() {
                field(&mut out, "Lease until", time(e.expires_at.as_ref()));
            }
            if !e.metadata.is_empty() {
                let mut m: Vec<String> =
                    e.metadata.iter().map(|(k, v)| format!("{k}={v}")).collect();
                m.sort();
                field(&mut out, "Metadata", m.join(", "));
            }
        }
        None => field(
            &mut out,
            "Registered",
            "no (not in the cluster's endpoints)",
        ),
    }
    let mine: Vec<&pb::EndpointState> = c.states.iter().filter(|s| s.endpoint == addr).collect();
    out.push('\n');
    if mine.is_empty() {
        field(&mut out, "Proxies", "none report this endpoint");
    } else {
        let mut t = styled_table(&["PROXY", "HEALTH", "BREAKER", "REPORTED"], color);
        for s in mine {
            t.add_row(vec![
                Cell::new(&s.node),
                cell(color, if s.healthy { "healthy" } else { "unhealthy" }),
                cell(color, &s.breaker),
                Cell::new(time(s.updated_at.as_ref())),
            ]);
        }
        out.push_str(&text(&t));
    }
    out.push('\n');
    stats(&mut out, stats_row);
    out
}

#[cfg(test)]
mod tests;

/// One line on a cluster's upstream TLS: the server name, and how certificates are checked.
/// A route's header changes in one line: `set a=1; add b=2; remove c`.
fn header_ops(o: &gw_proto::model::HeaderOps) -> String {
    let pairs = |m: &std::collections::BTreeMap<String, String>| {
        m.iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut parts = Vec::new();
    if !o.set.is_empty() {
        parts.push(format!("set {}", pairs(&o.set)));
    }
    if !o.add.is_empty() {
        parts.push(format!("add {}", pairs(&o.add)));
    }
    if !o.remove.is_empty() {
        parts.push(format!("remove {}", o.remove.join(", ")));
    }
    parts.join("; ")
}

/// A cluster's upstream TLS in one line.
fn tls_summary(t: &gw_proto::model::UpstreamTls) -> String {
    let sni = match t.sni.as_str() {
        "" => "no SNI".to_owned(),
        s => format!("SNI {s}"),
    };
    let verify = if t.insecure_skip_verify {
        "certificates NOT verified".to_owned()
    } else if t.ca.is_empty() {
        format!(
            "verified against the system's CAs ({})",
            gw_proto::model::SYSTEM_CA_FILE
        )
    } else {
        let n = t.ca_certificates().unwrap_or(0);
        format!("verified against {n} CA certificate(s)")
    };
    let name = if t.sni.is_empty() || t.insecure_skip_verify {
        ""
    } else {
        ", name checked"
    };
    format!("{sni}, {verify}{name}")
}
