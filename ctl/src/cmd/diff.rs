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
    // A listener's private keys are not printed: a fingerprint tells a change apart.
    for (k, v) in out.iter_mut() {
        if k.ends_with(".privateKey") {
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            v.hash(&mut h);
            *v = format!("(hidden, fingerprint {:016x})", h.finish());
        }
    }
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

/// What `diff` found for one object.
#[derive(Debug, PartialEq)]
pub enum ObjectDiff {
    /// In the files, not live.
    New(ObjectKey),
    /// Live and in the files, with different fields.
    Changed(ObjectKey, Vec<Change>),
    /// Live, not in the files (`--prune`).
    Gone(ObjectKey),
}

/// The diff as text, one line per object and one per changed field; coloured on request.
pub fn render(diffs: &[ObjectDiff], color: bool) -> String {
    let paint = |code: &str, s: String| {
        if color {
            format!("\x1b[{code}m{s}\x1b[0m")
        } else {
            s
        }
    };
    let (green, red, yellow) = ("32", "31", "33");
    let mut out = String::new();
    for d in diffs {
        let line = match d {
            ObjectDiff::New(k) => paint(green, format!("+ {k} (new)")),
            ObjectDiff::Gone(k) => paint(red, format!("- {k} (not in the files)")),
            ObjectDiff::Changed(k, changes) => {
                let mut s = paint(yellow, format!("~ {k}"));
                for c in changes {
                    s.push('\n');
                    s.push_str(&match c {
                        Change::Added(f, v) => paint(green, format!("    + {f}: {v}")),
                        Change::Removed(f, v) => paint(red, format!("    - {f}: {v}")),
                        Change::Changed(f, old, new) => {
                            paint(yellow, format!("    ~ {f}: {old} -> {new}"))
                        }
                    });
                }
                s
            }
        };
        out.push_str(&line);
        out.push('\n');
    }
    out
}

/// Runs `diff`: exit 0 when the live config equals the files, 1 when it differs.
pub async fn run(ctx: &Ctx, a: DiffArgs) -> CliResult<u8> {
    let docs = manifests::read(&a.files)?;
    let c = ctx.client().await?;
    let keys: Vec<ObjectKey> = docs.iter().map(|d| d.object.key()).collect();
    let live = objects::fetch(&c, &keys).await?;
    let mut diffs = Vec::new();
    for d in &docs {
        let key = d.object.key();
        match live.get(&key) {
            None => diffs.push(ObjectDiff::New(key)),
            Some(l) => {
                let ch = changes(l, &d.object);
                if !ch.is_empty() {
                    diffs.push(ObjectDiff::Changed(key, ch));
                }
            }
        }
    }
    if a.prune {
        let tenant = ctx.require_tenant("--prune")?;
        let keep: HashSet<&ObjectKey> = keys.iter().collect();
        for kind in [Kind::Cluster, Kind::Route, Kind::AlertRule] {
            for o in objects::list(&c, kind, Some(tenant)).await? {
                if !keep.contains(&o.key()) {
                    diffs.push(ObjectDiff::Gone(o.key()));
                }
            }
        }
    }
    print!("{}", render(&diffs, crate::output::color()));
    Ok(u8::from(!diffs.is_empty()))
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
    fn private_keys_show_as_fingerprints() {
        // Not validated: the diff is of what the user wrote.
        let l = |key: &str| {
            gw_proto::manifest::parse(&format!(
                "apiVersion: gw/v1\nkind: Listener\nmetadata: {{name: e}}\n\
                 spec: {{tls: {{certificates: [{{certChain: C, privateKey: {key}}}]}}}}\n"
            ))
            .unwrap()
            .remove(0)
            .object
        };
        let ch = changes(&l("secret-one"), &l("secret-two"));
        let [Change::Changed(field, old, new)] = ch.as_slice() else {
            panic!("{ch:?}")
        };
        assert_eq!(field, "spec.tls.certificates[0].privateKey");
        assert_ne!(old, new);
        assert!(
            old.starts_with("(hidden, fingerprint ") && !old.contains("secret"),
            "{old}"
        );
        assert_eq!(changes(&l("secret-one"), &l("secret-one")), vec![]);
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

    #[test]
    fn cluster_endpoint_order_and_defaults_are_not_drift() {
        let a = obj("apiVersion: gw/v1\nkind: Cluster\nmetadata: {name: c, tenant: t}\nspec:\n  endpoints: [{address: 10.0.0.2, port: 80}, {address: 10.0.0.1, port: 80}]\n");
        let b = obj("apiVersion: gw/v1\nkind: Cluster\nmetadata: {name: c, tenant: t}\nspec:\n  lb: round_robin\n  endpoints: [{address: 10.0.0.1, port: 80, weight: 1}, {address: 10.0.0.2, port: 80}]\n  circuitBreaker: {consecutiveFailures: 5}\n");
        assert_eq!(changes(&a, &b), vec![]);
    }

    #[test]
    fn labels_are_compared() {
        let a = obj("apiVersion: gw/v1\nkind: Tenant\nmetadata: {name: t, labels: {team: a}}\n");
        let b = obj(
            "apiVersion: gw/v1\nkind: Tenant\nmetadata: {name: t, labels: {team: b, tier: gold}}\n",
        );
        assert_eq!(
            changes(&a, &b),
            vec![
                Change::Changed("metadata.labels.team".into(), "a".into(), "b".into()),
                Change::Added("metadata.labels.tier".into(), "gold".into()),
            ]
        );
    }

    #[test]
    fn renders_objects_and_fields() {
        let key = |n: &str| ObjectKey {
            kind: Kind::Route,
            tenant: "acme".into(),
            name: n.into(),
        };
        let diffs = vec![
            ObjectDiff::New(key("a")),
            ObjectDiff::Changed(
                key("b"),
                vec![
                    Change::Added("spec.retry.attempts".into(), "2".into()),
                    Change::Changed("spec.timeout".into(), "5s".into(), "7s".into()),
                    Change::Removed("spec.hashOn".into(), "source_ip".into()),
                ],
            ),
            ObjectDiff::Gone(key("c")),
        ];
        assert_eq!(
            render(&diffs, false),
            "+ route/acme/a (new)\n\
             ~ route/acme/b\n\
             \x20   + spec.retry.attempts: 2\n\
             \x20   ~ spec.timeout: 5s -> 7s\n\
             \x20   - spec.hashOn: source_ip\n\
             - route/acme/c (not in the files)\n"
        );
        assert!(render(&diffs, true).contains("\x1b[32m+ route/acme/a (new)\x1b[0m"));
    }
}
