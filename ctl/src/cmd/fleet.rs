//! `gwctl proxies` and `gwctl describe proxy`: fleet sync status, like `istioctl proxy-status`.

use super::Ctx;
use crate::cli::{Format, ProxiesArgs};
use crate::error::{CliResult, StatusContext};
use crate::output::{age, cell, paint_if, styled_table, table, text, time, ts_ms};
use comfy_table::Cell;
use gw_proto::gateway::v1 as pb;
use std::fmt::Write;

fn status(s: i32) -> &'static str {
    match pb::SyncStatus::try_from(s) {
        Ok(pb::SyncStatus::Synced) => "SYNCED",
        Ok(pb::SyncStatus::Stale) => "STALE",
        Ok(pb::SyncStatus::Nacked) => "NACKED",
        Ok(pb::SyncStatus::Disconnected) => "DISCONNECTED",
        _ => "UNKNOWN",
    }
}

fn short(v: &str) -> String {
    if v.is_empty() {
        "-".into()
    } else if v.chars().count() > 12 {
        format!("{}…", v.chars().take(12).collect::<String>())
    } else {
        v.to_owned()
    }
}

fn acked(p: &pb::Proxy, ty: &str) -> String {
    p.types
        .iter()
        .find(|t| t.r#type == ty)
        .map_or_else(|| "-".into(), |t| short(&t.acked_version))
}

fn proxy_json(p: &pb::Proxy) -> serde_json::Value {
    serde_json::json!({
        "nodeId": p.node_id, "nodeCluster": p.node_cluster, "address": p.address, "protocol": p.protocol,
        "status": status(p.status), "connectedSince": time(p.connected_since.as_ref()),
        "syncedRevision": p.synced_revision, "currentRevision": p.current_revision,
        "types": p.types.iter().map(|t| serde_json::json!({
            "type": t.r#type, "sentVersion": t.sent_version, "ackedVersion": t.acked_version, "resources": t.resources,
            "nack": t.nack.as_ref().map(|n| serde_json::json!({"errorDetail": n.error_detail, "objects": n.objects})),
        })).collect::<Vec<_>>(),
    })
}

/// Runs `proxies`.
pub async fn proxies(ctx: &Ctx, a: ProxiesArgs) -> CliResult<u8> {
    let c = ctx.client().await?;
    let req = pb::ListProxiesRequest {
        node_cluster: a.node_cluster.unwrap_or_default(),
        include_disconnected: a.all,
    };
    let r = c
        .fleet()
        .list_proxies(c.req(req))
        .await
        .context("listing proxies")?;
    match ctx.output {
        Format::Json => {
            let v: Vec<_> = r.proxies.iter().map(proxy_json).collect();
            println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
        }
        Format::Yaml => print!(
            "{}",
            serde_yaml::to_string(&r.proxies.iter().map(proxy_json).collect::<Vec<_>>())
                .unwrap_or_default()
        ),
        Format::Table | Format::Wide => {
            if r.proxies.is_empty() {
                eprintln!("No proxies connected.");
                return Ok(0);
            }
            print!("{}", proxies_text(&r.proxies, crate::output::color()));
        }
    }
    Ok(0)
}

/// `describe proxy NODE`.
pub async fn describe(ctx: &Ctx, node: &str) -> CliResult<u8> {
    let c = ctx.client().await?;
    let p = c
        .fleet()
        .get_proxy(c.req(pb::GetProxyRequest {
            node_id: node.into(),
        }))
        .await
        .context(format!("proxy {node}"))?;
    if matches!(ctx.output, Format::Json | Format::Yaml) {
        println!(
            "{}",
            serde_json::to_string_pretty(&proxy_json(&p)).unwrap_or_default()
        );
        return Ok(0);
    }
    print!("{}", proxy_text(&p, crate::output::color()));
    Ok(0)
}

/// The `proxies` table, then each NACK with the objects it blames.
pub fn proxies_text(proxies: &[pb::Proxy], color: bool) -> String {
    let mut t = styled_table(
        &[
            "NODE",
            "CLUSTER",
            "ADDRESS",
            "PROTOCOL",
            "CONNECTED",
            "STATUS",
            "CDS",
            "EDS",
            "LDS",
            "RDS",
        ],
        color,
    );
    for p in proxies {
        t.add_row(vec![
            Cell::new(&p.node_id),
            Cell::new(&p.node_cluster),
            Cell::new(&p.address),
            Cell::new(&p.protocol),
            Cell::new(age(ts_ms(p.connected_since.as_ref()))),
            cell(color, status(p.status)),
            Cell::new(acked(p, "CDS")),
            Cell::new(acked(p, "EDS")),
            Cell::new(acked(p, "LDS")),
            Cell::new(acked(p, "RDS")),
        ]);
    }
    let mut out = text(&t);
    for p in proxies {
        if let Some(n) = &p.last_nack {
            let _ = writeln!(
                out,
                "\n{} NACKed {} version {}: {}",
                p.node_id,
                n.r#type,
                short(&n.version),
                n.error_detail
            );
            if !n.objects.is_empty() {
                let _ = writeln!(out, "  caused by: {}", n.objects.join(", "));
            }
        }
    }
    out
}

/// `describe proxy NODE`: identity, sync status per xDS type, the NACK and what it blames.
pub fn proxy_text(p: &pb::Proxy, color: bool) -> String {
    let mut out = String::new();
    let mut field = |label: &str, value: String| {
        let _ = writeln!(out, "{:<15}{value}", format!("{label}:"));
    };
    field("Node", p.node_id.clone());
    field("Node cluster", p.node_cluster.clone());
    field("Address", p.address.clone());
    field("User agent", p.user_agent.clone());
    field("Protocol", p.protocol.clone());
    field(
        "Connected",
        match p.connected_since.as_ref() {
            Some(t) => format!("{} ({} ago)", time(Some(t)), age(ts_ms(Some(t)))),
            None => "-".into(),
        },
    );
    if p.disconnected_at.is_some() {
        field("Disconnected", time(p.disconnected_at.as_ref()));
    }
    field("Status", paint_if(color, status(p.status)));
    field(
        "Revision",
        format!("synced {} of {}", p.synced_revision, p.current_revision),
    );
    out.push('\n');
    let mut t = table(&["TYPE", "SENT", "ACKED", "RESOURCES", "NACK"]);
    for ty in &p.types {
        let nack = ty
            .nack
            .as_ref()
            .map_or_else(|| "-".into(), |n| n.error_detail.clone());
        t.add_row(vec![
            ty.r#type.clone(),
            short(&ty.sent_version),
            short(&ty.acked_version),
            ty.resources.to_string(),
            nack,
        ]);
    }
    out.push_str(&text(&t));
    if let Some(n) = &p.last_nack {
        let _ = writeln!(
            out,
            "\nLast NACK ({} at {}): {}",
            n.r#type,
            time(n.at.as_ref()),
            n.error_detail
        );
        if !n.objects.is_empty() {
            let _ = writeln!(out, "Blamed objects: {}", n.objects.join(", "));
        }
    }
    out
}

#[cfg(test)]
mod tests;
