//! `gwctl diff -f`: semantic, field-by-field difference between files and the live config.
//! Both sides are normalized (defaults filled, set-like lists sorted), so defaults and ordering
//! never show as drift. Exit 0 equal, 1 different, 2 error — like `kubectl diff`.

use super::{objects, Ctx};
use crate::cli::DiffArgs;
use crate::error::CliResult;
use crate::manifests;
use gw_proto::model::{Kind, Object, ObjectKey};
use serde_json::Value;
use std::collections::{BTreeMap, HashSet};

/// One changed field.
#[derive(Debug, PartialEq, Eq)]
pub enum Change {
    /// Only in the file.
    Added(String, String),
    /// Only live.
    Removed(String, String),
    /// Different.
    Changed(String, String, String),
}

fn flatten(prefix: &str, v: &Value, out: &mut BTreeMap<String, String>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                flatten(&format!("{prefix}.{k}"), x, out);
            }
        }
        Value::Array(a) if a.iter().any(|x| x.is_object()) => {
            for (i, x) in a.iter().enumerate() {
                flatten(&format!("{prefix}[{i}]"), x, out);
            }
        }
        Value::Null => {}
        other => {
            let s = match other {
                Value::String(s) => s.clone(),
                x => x.to_string(),
            };
            out.insert(prefix.to_owned(), s);
        }
    }
}

fn fields(o: &Object) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    if !o.meta.labels.is_empty() {
        let labels = serde_json::to_value(&o.meta.labels).unwrap_or(Value::Null);
        flatten("metadata.labels", &labels, &mut out);
    }
    flatten("spec", &o.spec.to_value(), &mut out);
    out
}

/// Field changes turning `live` into `want`.
pub fn changes(live: &Object, want: &Object) -> Vec<Change> {
    let (a, b) = (fields(live), fields(want));
    let mut out = Vec::new();
    for (k, v) in &b {
        match a.get(k) {
            None => out.push(Change::Added(k.clone(), v.clone())),
            Some(old) if old != v => out.push(Change::Changed(k.clone(), old.clone(), v.clone())),
            Some(_) => {}
        }
    }
    for (k, v) in &a {
        if !b.contains_key(k) {
            out.push(Change::Removed(k.clone(), v.clone()));
        }
    }
    out.sort_by(|x, y| key_of(x).cmp(key_of(y)));
    out
}

fn key_of(c: &Change) -> &str {
    match c {
        Change::Added(k, _) | Change::Removed(k, _) | Change::Changed(k, _, _) => k,
    }
}

/// Runs `diff`; errors print and exit 2.
pub async fn run(ctx: &Ctx, a: DiffArgs) -> CliResult<u8> {
    match diff(ctx, a).await {
        Ok(code) => Ok(code),
        Err(e) => {
            eprintln!("error: {e}");
            Ok(2)
        }
    }
}

async fn diff(ctx: &Ctx, a: DiffArgs) -> CliResult<u8> {
    let docs = manifests::read(&a.files)?;
    let c = ctx.client().await?;
    let mut differs = false;
    for d in &docs {
        let key = d.object.key();
        match objects::get(&c, &key).await? {
            None => {
                differs = true;
                println!("+ {key} (new)");
            }
            Some(live) => {
                let ch = changes(&live, &d.object);
                if ch.is_empty() {
                    continue;
                }
                differs = true;
                println!("~ {key}");
                for c in ch {
                    match c {
                        Change::Added(k, v) => println!("    + {k}: {v}"),
                        Change::Removed(k, v) => println!("    - {k}: {v}"),
                        Change::Changed(k, old, new) => println!("    ~ {k}: {old} -> {new}"),
                    }
                }
            }
        }
    }
    if a.prune {
        let tenant = ctx.require_tenant("--prune")?;
        let keep: HashSet<ObjectKey> = docs.iter().map(|d| d.object.key()).collect();
        for kind in [Kind::Cluster, Kind::Route, Kind::AlertRule] {
            for o in objects::list(&c, kind, Some(tenant)).await? {
                if !keep.contains(&o.key()) {
                    differs = true;
                    println!("- {} (not in the files)", o.key());
                }
            }
        }
    }
    Ok(u8::from(differs))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(yaml: &str) -> Object {
        let mut o = gw_proto::manifest::parse(yaml).unwrap().remove(0).object;
        o.validate().unwrap();
        o
    }

    #[test]
    fn defaults_and_order_are_not_drift() {
        let a = obj("apiVersion: gw/v1\nkind: Route\nmetadata: {name: r, tenant: t}\nspec: {cluster: c, match: {methods: [POST, GET]}}\n");
        let b = obj("apiVersion: gw/v1\nkind: Route\nmetadata: {name: r, tenant: t}\nspec: {cluster: c, timeout: 15s, match: {pathPrefix: /, methods: [get, post]}}\n");
        assert_eq!(changes(&a, &b), vec![]);
    }

    #[test]
    fn reports_field_by_field() {
        let live = obj("apiVersion: gw/v1\nkind: Route\nmetadata: {name: r, tenant: t}\nspec: {cluster: c, hashOn: source_ip}\n");
        let want = obj("apiVersion: gw/v1\nkind: Route\nmetadata: {name: r, tenant: t}\nspec: {cluster: d, timeout: 3s, retry: {attempts: 2}}\n");
        let ch = changes(&live, &want);
        assert!(ch.contains(&Change::Changed(
            "spec.cluster".into(),
            "c".into(),
            "d".into()
        )));
        assert!(ch.contains(&Change::Changed(
            "spec.timeout".into(),
            "15s".into(),
            "3s".into()
        )));
        assert!(ch.contains(&Change::Added("spec.retry.attempts".into(), "2".into())));
        assert!(ch.contains(&Change::Removed("spec.hashOn".into(), "source_ip".into())));
    }
}
