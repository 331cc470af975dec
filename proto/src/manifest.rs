//! Manifests: Kubernetes-style multi-document YAML (`apiVersion: gw/v1`, camelCase).
//!
//! Parsing is strict — unknown fields are errors — and every error names the document, the object
//! and the field, so a typo never silently becomes a default.

use crate::model::{Kind, Meta, Object, Spec};
use serde::{Deserialize, Serialize};

/// The one API version manifests use.
pub const API_VERSION: &str = "gw/v1";

/// A manifest that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("document {doc}{}: {message}", object.as_ref().map(|o| format!(" ({o})")).unwrap_or_default())]
pub struct ManifestError {
    /// 1-based index of the document in the file.
    pub doc: usize,
    /// `Kind tenant/name` when known.
    pub object: Option<String>,
    /// What is wrong, starting with the field path.
    pub message: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawDocument {
    api_version: String,
    kind: String,
    metadata: Meta,
    #[serde(default)]
    spec: Option<serde_json::Value>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct OutDocument<'a> {
    api_version: &'static str,
    kind: &'static str,
    metadata: &'a Meta,
    spec: serde_json::Value,
}

/// A parsed document with its position in the file.
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    /// 1-based index in the file.
    pub index: usize,
    /// The object it defines.
    pub object: Object,
}

/// Parses every document of a multi-document YAML text. Empty documents are skipped.
pub fn parse(text: &str) -> Result<Vec<Document>, ManifestError> {
    let mut out = Vec::new();
    for (i, de) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let doc = i + 1;
        let err = |object: Option<String>, message: String| ManifestError {
            doc,
            object,
            message,
        };
        let value = serde_yaml::Value::deserialize(de)
            .map_err(|e| err(None, format!("invalid YAML: {e}")))?;
        if value.is_null() {
            continue;
        }
        let json = serde_json::to_value(&value).map_err(|e| err(None, e.to_string()))?;
        let raw: RawDocument = serde_path_to_error::deserialize(json).map_err(|e| {
            let path = e.path().to_string();
            let m = if path == "." {
                e.inner().to_string()
            } else {
                format!("{path}: {}", e.inner())
            };
            err(None, m)
        })?;
        if raw.api_version != API_VERSION {
            return Err(err(
                None,
                format!(
                    "apiVersion: {:?} is not supported (use {API_VERSION})",
                    raw.api_version
                ),
            ));
        }
        let Some(kind) = Kind::ALL
            .into_iter()
            .find(|k| k.manifest_name() == raw.kind)
        else {
            let known: Vec<_> = Kind::ALL.iter().map(|k| k.manifest_name()).collect();
            return Err(err(
                None,
                format!("kind: {:?} is not one of {}", raw.kind, known.join(", ")),
            ));
        };
        let label = Some(describe(kind, &raw.metadata));
        let spec_value = raw
            .spec
            .unwrap_or_else(|| serde_json::Value::Object(Default::default()));
        let spec = spec_from_value(kind, spec_value).map_err(|m| err(label.clone(), m))?;
        out.push(Document {
            index: doc,
            object: Object {
                meta: raw.metadata,
                spec,
            },
        });
    }
    Ok(out)
}

fn spec_from_value(kind: Kind, v: serde_json::Value) -> Result<Spec, String> {
    fn de<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> Result<T, String> {
        serde_path_to_error::deserialize(v).map_err(|e| {
            let path = e.path().to_string();
            if path == "." {
                format!("spec: {}", e.inner())
            } else {
                format!("spec.{path}: {}", e.inner())
            }
        })
    }
    Ok(match kind {
        Kind::Tenant => Spec::Tenant(de(v)?),
        Kind::Listener => Spec::Listener(de(v)?),
        Kind::Cluster => Spec::Cluster(Box::new(de(v)?)),
        Kind::Route => Spec::Route(Box::new(de(v)?)),
        Kind::AlertRule => Spec::AlertRule(Box::new(de(v)?)),
    })
}

/// `Route acme/users`, as used in messages.
pub fn describe(kind: Kind, meta: &Meta) -> String {
    if meta.tenant.is_empty() {
        format!("{} {}", kind.manifest_name(), meta.name)
    } else {
        format!("{} {}/{}", kind.manifest_name(), meta.tenant, meta.name)
    }
}

/// One object as a manifest document value (for `-o json`).
pub fn to_value(o: &Object) -> serde_json::Value {
    let doc = OutDocument {
        api_version: API_VERSION,
        kind: o.spec.kind().manifest_name(),
        metadata: &o.meta,
        spec: o.spec.to_value(),
    };
    serde_json::to_value(doc).unwrap_or(serde_json::Value::Null)
}

/// Objects as multi-document YAML (for `-o yaml`); the output parses back with [`parse`].
pub fn to_yaml(objects: &[Object]) -> String {
    let mut out = String::new();
    for (i, o) in objects.iter().enumerate() {
        if i > 0 {
            out.push_str("---\n");
        }
        out.push_str(&serde_yaml::to_string(&to_value(o)).unwrap_or_default());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const QUICK: &str = r#"
apiVersion: gw/v1
kind: Tenant
metadata: {name: acme}
---
apiVersion: gw/v1
kind: Cluster
metadata: {name: users-svc, tenant: acme}
spec:
  lb: least_conn
  connectTimeout: 1s
  endpoints:
    - {address: 127.0.0.1, port: 18081, weight: 2}
  healthCheck: {path: /health, interval: 5s}
  circuitBreaker: {consecutiveFailures: 7}
---
apiVersion: gw/v1
kind: Route
metadata: {name: users, tenant: acme}
spec:
  match:
    hosts: [api.acme.test]
    pathPrefix: /users
    headers: [{name: x-tenant-id, exact: acme}]
    methods: [GET, POST]
  cluster: users-svc
  timeout: 15s
  retry: {attempts: 2, on: [5xx, connect-failure, reset], perTryTimeout: 2s}
  hashOn: source_ip
"#;

    #[test]
    fn parses_design_example_with_defaults() {
        let docs = parse(QUICK).unwrap();
        assert_eq!(docs.len(), 3);
        let Spec::Cluster(c) = &docs[1].object.spec else {
            panic!("not a cluster")
        };
        assert_eq!(c.lb, crate::model::LbPolicy::LeastConn);
        assert_eq!(c.circuit_breaker.consecutive_failures, 7);
        assert_eq!(c.circuit_breaker.half_open_successes, 3);
        assert_eq!(c.health_check.as_ref().unwrap().unhealthy_threshold, 3);
        for d in &docs {
            let mut o = d.object.clone();
            o.validate().unwrap();
        }
    }

    #[test]
    fn yaml_round_trip() {
        let objs: Vec<Object> = parse(QUICK)
            .unwrap()
            .into_iter()
            .map(|d| d.object)
            .collect();
        let again: Vec<Object> = parse(&to_yaml(&objs))
            .unwrap()
            .into_iter()
            .map(|d| d.object)
            .collect();
        assert_eq!(objs, again);
    }

    /// A Route of `spec` (YAML), parsed and validated; the error as text.
    fn route(spec: &str) -> Result<crate::model::Object, Box<dyn std::error::Error>> {
        let mut docs = parse(&format!(
            "apiVersion: gw/v1\nkind: Route\nmetadata: {{name: r, tenant: t}}\nspec: {spec}\n"
        ))?;
        let mut o = docs.remove(0).object;
        o.validate().map(|()| o).map_err(|e| e.to_string().into())
    }

    #[test]
    fn route_header_changes_are_checked_by_field() {
        let r = |ops: &str| route(&format!("{{cluster: c, {ops}}}"));
        let ok = r(
            "requestHeaders: {set: {X-A: '1'}, add: {x-b: '2'}, remove: [X-C, x-c]}, \
                    responseHeaders: {set: {x-frame-options: DENY}}",
        )
        .unwrap();
        let Spec::Route(spec) = &ok.spec else {
            panic!("not a route")
        };
        // Names in lower case, removals once.
        assert_eq!(
            spec.request_headers.set.get("x-a").map(String::as_str),
            Some("1")
        );
        assert_eq!(spec.request_headers.remove, ["x-c"]);
        let back =
            crate::convert::route_spec_from_pb(Some(&crate::convert::route_spec_to_pb(spec)))
                .unwrap();
        assert_eq!(back.request_headers, spec.request_headers);
        assert_eq!(back.response_headers, spec.response_headers);
        for (ops, err) in [
            (
                "requestHeaders: {set: {host: x}}",
                "spec.requestHeaders.set: \"host\" is set by the proxy or frames the message",
            ),
            (
                "responseHeaders: {remove: [content-length]}",
                "spec.responseHeaders.remove: \"content-length\" is set by the proxy",
            ),
            (
                "requestHeaders: {set: {'bad name': x}}",
                "spec.requestHeaders.set: \"bad name\" is not a header name",
            ),
            (
                "requestHeaders: {set: {x-a: '1'}, add: {x-a: '2'}}",
                "spec.requestHeaders.add: \"x-a\" is in set too",
            ),
            (
                "requestHeaders: {set: {x-ip: '%DOWNSTREAM_REMOTE_ADDRESS%'}}",
                "spec.requestHeaders.set.x-ip: '%' is not supported",
            ),
            (
                "requestHeaders: {set: {X-A: '1', x-a: '2'}}",
                "spec.requestHeaders.set: \"x-a\" is given twice",
            ),
            (
                "responseHeaders: {add: {x-a: ' padded'}}",
                "spec.responseHeaders.add.x-a: a header value has no leading or trailing whitespace",
            ),
            ("requestHeaders: {append: {x: y}}", "unknown field"),
        ] {
            let got = r(ops).map(drop).unwrap_err().to_string();
            assert!(got.contains(err), "{ops}: {got}");
        }
    }

    #[test]
    fn a_direct_response_is_checked_by_field() {
        let r = route;
        let ok =
            r("{match: {pathPrefix: /old}, directResponse: {status: 410, body: gone}}").unwrap();
        let Spec::Route(spec) = &ok.spec else {
            panic!("not a route")
        };
        let back =
            crate::convert::route_spec_from_pb(Some(&crate::convert::route_spec_to_pb(spec)))
                .unwrap();
        assert_eq!(back.direct_response, spec.direct_response);
        for (spec, err) in [
            (
                "{directResponse: {status: 700}}",
                "spec.directResponse.status: 700 is not in 200..=599",
            ),
            (
                "{cluster: c, directResponse: {status: 200}}",
                "spec.directResponse: cannot be set together with a cluster",
            ),
            (
                "{directResponse: {status: 200}, retry: {attempts: 1}}",
                "spec.retry: has no use on a route with directResponse",
            ),
            (
                "{}",
                "spec.cluster: is required (or spec.weightedClusters, spec.directResponse or spec.redirect)",
            ),
        ] {
            let got = r(spec).map(drop).unwrap_err().to_string();
            assert!(got.contains(err), "{spec}: {got}");
        }
    }

    #[test]
    fn a_redirect_is_checked_by_field() {
        let r = route;
        let ok = r(
            "{match: {pathPrefix: /old/}, redirect: {scheme: https, host: new.example.com, \
                    port: 8443, prefix: /new/, stripQuery: true, code: 308}}",
        )
        .unwrap();
        let Spec::Route(spec) = &ok.spec else {
            panic!("not a route")
        };
        let back =
            crate::convert::route_spec_from_pb(Some(&crate::convert::route_spec_to_pb(spec)))
                .unwrap();
        assert_eq!(back.redirect, spec.redirect);
        // The code defaults to 301, through YAML and through the API's zero.
        let plain = r("{redirect: {path: '/new?v=2'}}").unwrap();
        let Spec::Route(plain) = &plain.spec else {
            panic!("not a route")
        };
        assert_eq!(plain.redirect.as_ref().unwrap().code, 301);
        let mut pb = crate::convert::route_spec_to_pb(plain);
        pb.redirect.as_mut().unwrap().code = 0;
        let back = crate::convert::route_spec_from_pb(Some(&pb)).unwrap();
        assert_eq!(back.redirect, plain.redirect);
        assert!(r("{redirect: {host: '[::1]'}}").is_ok());
        for (spec, err) in [
            ("{redirect: {}}", "spec.redirect: changes nothing"),
            ("{redirect: {code: 301}}", "spec.redirect: changes nothing"),
            (
                "{redirect: {scheme: ftp}}",
                "spec.redirect.scheme: \"ftp\" is not http or https",
            ),
            (
                "{redirect: {host: 'a b'}}",
                "spec.redirect.host: \"a b\" is neither an IP address nor a host name",
            ),
            (
                "{redirect: {host: 'a.com:80'}}",
                "spec.redirect.host: \"a.com:80\" is neither",
            ),
            (
                "{redirect: {host: '::1'}}",
                "spec.redirect.host: an IPv6 address goes in brackets",
            ),
            (
                "{redirect: {port: 0}}",
                "spec.redirect.port: 0 must be in 1..=65535",
            ),
            ("{redirect: {port: 70000}}", "spec.redirect.port"),
            (
                "{redirect: {path: new}}",
                "spec.redirect.path: must start with '/'",
            ),
            (
                "{redirect: {path: '/a?b c'}}",
                "spec.redirect.path: ' ' may not appear in a query",
            ),
            (
                "{redirect: {path: /a, prefix: /b}}",
                "spec.redirect.prefix: cannot be set together with spec.redirect.path",
            ),
            (
                "{match: {pathRegex: '/a.*'}, redirect: {prefix: /b}}",
                "spec.redirect.prefix: needs match.pathPrefix or match.path",
            ),
            (
                "{redirect: {path: /a, code: 200}}",
                "spec.redirect.code: 200 is not 301, 302, 303, 307 or 308",
            ),
            (
                "{cluster: c, redirect: {path: /a}}",
                "spec.redirect: cannot be set together with a cluster",
            ),
            (
                "{directResponse: {status: 200}, redirect: {path: /a}}",
                "spec.redirect: cannot be set together with spec.directResponse",
            ),
            (
                "{redirect: {path: /a}, rewrite: {prefix: /b}}",
                "spec.rewrite: has no use on a route with redirect",
            ),
            (
                "{redirect: {path: /a}, requestHeaders: {set: {x-a: b}}}",
                "spec.requestHeaders: has no use on a route with redirect",
            ),
            ("{redirect: {path: /a, to: /b}}", "unknown field"),
        ] {
            let got = r(spec).map(drop).unwrap_err().to_string();
            assert!(got.contains(err), "{spec}: {got}");
        }
    }

    #[test]
    fn a_rewrite_is_checked_by_field() {
        let r = route;
        let ok = r("{match: {pathPrefix: /api/}, cluster: c, rewrite: {prefix: /v2/}}").unwrap();
        let Spec::Route(spec) = &ok.spec else {
            panic!("not a route")
        };
        assert_eq!(spec.rewrite.as_ref().unwrap().prefix, "/v2/");
        let back =
            crate::convert::route_spec_from_pb(Some(&crate::convert::route_spec_to_pb(spec)))
                .unwrap();
        assert_eq!(back.rewrite, spec.rewrite);
        for (spec, err) in [
            (
                "{match: {pathRegex: '/a.*'}, cluster: c, rewrite: {prefix: /}}",
                "spec.rewrite.prefix: needs match.pathPrefix or match.path",
            ),
            (
                "{match: {pathPrefix: /a}, cluster: c, rewrite: {prefix: v2}}",
                "spec.rewrite.prefix: must start with '/'",
            ),
            (
                "{match: {pathPrefix: /a}, cluster: c, rewrite: {prefix: '/a b'}}",
                "spec.rewrite.prefix: ' ' may not appear in a path",
            ),
            (
                "{match: {pathPrefix: /a}, cluster: c, rewrite: {prefix: '/a?b'}}",
                "spec.rewrite.prefix: '?' may not appear in a path",
            ),
            (
                "{match: {pathPrefix: /a}, cluster: c, rewrite: {prefix: '/a%zz'}}",
                "spec.rewrite.prefix: '%' must start an escape of two hex digits",
            ),
            ("{cluster: c, rewrite: {path: /}}", "unknown field"),
            ("{cluster: c, rewrite: {}}", "spec.rewrite: changes nothing"),
            (
                "{cluster: c, rewrite: {host: 'a b'}}",
                "spec.rewrite.host: \"a b\" is neither an IP address nor a host name",
            ),
            (
                "{cluster: c, rewrite: {host: 'a.test:0'}}",
                "spec.rewrite.host: \"0\" is not a port in 1..=65535",
            ),
            (
                "{cluster: c, rewrite: {host: 'a.test:x'}}",
                "spec.rewrite.host: \"x\" is not a port",
            ),
            (
                "{cluster: c, rewrite: {host: '::1'}}",
                "spec.rewrite.host: an IPv6 address goes in brackets",
            ),
        ] {
            let got = r(spec).map(drop).unwrap_err().to_string();
            assert!(got.contains(err), "{spec}: {got}");
        }
        // A host alone (a regex match may have it: no prefix is replaced), with a port, an
        // address; through the API and back.
        for host in [
            "users.internal",
            "users.internal:8080",
            "10.0.0.1:80",
            "[::1]:8080",
            "[::1]",
        ] {
            let ok = r(&format!(
                "{{match: {{pathRegex: '/a.*'}}, cluster: c, rewrite: {{host: '{host}'}}}}"
            ))
            .unwrap();
            let Spec::Route(spec) = &ok.spec else {
                panic!("not a route")
            };
            assert_eq!(spec.rewrite.as_ref().unwrap().host.as_deref(), Some(host));
            let back =
                crate::convert::route_spec_from_pb(Some(&crate::convert::route_spec_to_pb(spec)))
                    .unwrap();
            assert_eq!(back.rewrite, spec.rewrite);
        }
    }

    #[test]
    fn https_redirect_is_for_plaintext_listeners() {
        const CERT: &str = include_str!("model/testdata/edge.pem");
        const KEY: &str = include_str!("model/testdata/edge-key.pem");
        let listener = |spec: &str| {
            let mut o = parse(&format!(
                "apiVersion: gw/v1\nkind: Listener\nmetadata: {{name: edge}}\nspec: {spec}\n"
            ))
            .unwrap()
            .remove(0)
            .object;
            o.validate().map(|()| o)
        };
        let o = listener("{port: 80, httpsRedirect: true}").unwrap();
        let Spec::Listener(l) = &o.spec else {
            panic!("not a listener")
        };
        assert!(l.https_redirect);
        let back =
            crate::convert::listener_spec_from_pb(Some(&crate::convert::listener_spec_to_pb(l)))
                .unwrap();
        assert!(back.https_redirect);
        let e = listener(&format!(
            "{{httpsRedirect: true, tls: {{certificates: [{{certChain: {CERT:?}, privateKey: {KEY:?}}}]}}}}"
        ))
        .map(drop)
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("spec.httpsRedirect: is for a plaintext listener"),
            "{e}"
        );
    }

    #[test]
    fn listener_tls_is_checked_by_field() {
        // A self-signed certificate for edge.example.test (P-256), its key, and another key.
        const CERT: &str = include_str!("model/testdata/edge.pem");
        const KEY: &str = include_str!("model/testdata/edge-key.pem");
        const OTHER: &str = include_str!("model/testdata/other-key.pem");
        const NOT_DER: &str = "-----BEGIN CERTIFICATE-----\nMIIBAA==\n-----END CERTIFICATE-----\n";
        let with = |tls: &str| {
            format!("apiVersion: gw/v1\nkind: Listener\nmetadata: {{name: edge}}\nspec: {{tls: {tls}}}\n")
        };
        let one = |cert: &str, key: &str| {
            format!("{{certificates: [{{certChain: {cert:?}, privateKey: {key:?}}}]}}")
        };
        for (tls, err) in [
            ("{}".to_owned(), "spec.tls.certificates: needs at least one certificate"),
            (
                one("junk", KEY),
                "spec.tls.certificates[0].certChain: holds no PEM certificate",
            ),
            (
                one(&format!("{CERT}{NOT_DER}"), KEY),
                "spec.tls.certificates[0].certChain: certificate 2:",
            ),
            (one(CERT, "junk"), "spec.tls.certificates[0].privateKey: is not a PEM private key"),
            (
                one(CERT, OTHER),
                "spec.tls.certificates[0].privateKey: is not the first certificate's key",
            ),
            (
                format!("{{minVersion: '1.1', certificates: [{{certChain: {CERT:?}, privateKey: {KEY:?}}}]}}"),
                "spec.tls.minVersion: \"1.1\" is not a TLS version gw serves",
            ),
            ("{certificates: [{cert: x}]}".to_owned(), "unknown field"),
        ] {
            let got = match parse(&with(&tls)) {
                Ok(mut docs) => docs.remove(0).object.validate().unwrap_err().to_string(),
                Err(e) => e.to_string(),
            };
            assert!(got.contains(err), "{tls}: {got}");
        }
        let mut o = parse(&with(&format!(
            "{{minVersion: '1.3', certificates: [{{certChain: {CERT:?}, privateKey: {KEY:?}}}]}}"
        )))
        .unwrap()
        .remove(0)
        .object;
        assert!(o.validate().is_ok());
        let Spec::Listener(l) = &o.spec else {
            panic!("not a listener")
        };
        let tls = l.tls.clone().unwrap();
        assert!(!tls.accepts_tls12());
        // The key stays out of Debug output and of what describe shows.
        assert!(!format!("{tls:?}").contains("PRIVATE KEY"));
        assert_eq!(
            tls.redacted().certificates[0].private_key,
            crate::model::HIDDEN_KEY
        );
        // Through the API and back.
        let back =
            crate::convert::listener_spec_from_pb(Some(&crate::convert::listener_spec_to_pb(l)))
                .unwrap();
        assert_eq!(back.tls, Some(tls));
    }

    #[test]
    fn listener_timeouts_parse_default_and_name_their_field() {
        let l = |spec: &str| {
            parse(&format!(
                "apiVersion: gw/v1\nkind: Listener\nmetadata: {{name: edge}}\nspec: {spec}\n"
            ))
        };
        let docs = l(
            "{idleTimeout: 90s, requestHeadersTimeout: 10s, maxConnectionDuration: 10m, \
             streamIdleTimeout: 30s}",
        )
        .unwrap();
        let Spec::Listener(s) = &docs[0].object.spec else {
            panic!("not a listener")
        };
        assert_eq!(s.idle_timeout, std::time::Duration::from_secs(90));
        assert_eq!(
            s.request_headers_timeout,
            std::time::Duration::from_secs(10)
        );
        assert_eq!(
            s.max_connection_duration,
            std::time::Duration::from_secs(600)
        );
        assert_eq!(s.stream_idle_timeout, std::time::Duration::from_secs(30));
        let docs = l("{port: 9090}").unwrap();
        let Spec::Listener(s) = &docs[0].object.spec else {
            panic!("not a listener")
        };
        assert_eq!(s.idle_timeout, std::time::Duration::from_secs(3600));
        assert!(s.request_headers_timeout.is_zero());
        assert!(s.max_connection_duration.is_zero());
        assert_eq!(s.stream_idle_timeout, std::time::Duration::from_secs(300));
        let docs = l("{streamIdleTimeout: 0s}").unwrap();
        let Spec::Listener(s) = &docs[0].object.spec else {
            panic!("not a listener")
        };
        assert!(s.stream_idle_timeout.is_zero());
        let e = l("{idleTimeout: soon}").unwrap_err();
        assert!(
            e.message.starts_with("spec.idleTimeout: invalid duration"),
            "{e}"
        );
        let mut o = l("{requestHeadersTimeout: 400d}").unwrap().remove(0).object;
        let e = o.validate().unwrap_err();
        assert_eq!(e.field, "spec.requestHeadersTimeout");
        let mut o = l("{maxConnectionDuration: 400d}").unwrap().remove(0).object;
        let e = o.validate().unwrap_err();
        assert_eq!(e.field, "spec.maxConnectionDuration");
        let mut o = l("{streamIdleTimeout: 400d}").unwrap().remove(0).object;
        let e = o.validate().unwrap_err();
        assert_eq!(e.field, "spec.streamIdleTimeout");
    }

    #[test]
    fn errors_name_document_object_and_field() {
        let bad = QUICK.replace("perTryTimeout: 2s", "perTryTimeout: soon");
        let e = parse(&bad).unwrap_err();
        assert_eq!(e.doc, 3);
        assert_eq!(e.object.as_deref(), Some("Route acme/users"));
        assert!(
            e.message
                .starts_with("spec.retry.perTryTimeout: invalid duration"),
            "{e}"
        );
        let typo = QUICK.replace("connectTimeout", "conectTimeout");
        let e = parse(&typo).unwrap_err();
        assert!(e.message.contains("unknown field `conectTimeout`"), "{e}");
        assert!(parse("apiVersion: gw/v2\nkind: Tenant\nmetadata: {name: a}\n").is_err());
        let e = parse("kind: Tenant\nmetadata: {name: a}\n").unwrap_err();
        assert_eq!(e.to_string(), "document 1: missing field `apiVersion`");
        assert!(parse("apiVersion: gw/v1\nkind: Widget\nmetadata: {name: a}\n").is_err());
    }

    #[test]
    fn validation_names_field() {
        let bad = QUICK.replace("perTryTimeout: 2s", "perTryTimeout: 0s");
        let mut o = parse(&bad).unwrap().remove(2).object;
        assert_eq!(
            o.validate().unwrap_err().to_string(),
            "spec.retry.perTryTimeout: must be > 0"
        );
        // A route's `timeout: 0s` is none (Envoy's meaning); past a year it is refused. So is
        // its `idleTimeout`, which is kept as written (0s included: none).
        let none = QUICK.replace("timeout: 15s", "timeout: 0s\n  idleTimeout: 0s");
        let mut o = parse(&none).unwrap().remove(2).object;
        assert!(o.validate().is_ok());
        match &o.spec {
            crate::model::Spec::Route(r) => {
                assert_eq!(r.idle_timeout, Some(std::time::Duration::ZERO))
            }
            other => panic!("{other:?}"),
        }
        // A cluster's upstream protocol: http1 (the default) or http2, nothing else.
        let h2 = QUICK.replace("lb: least_conn", "lb: least_conn\n  protocol: http2");
        assert_ne!(h2, QUICK);
        let o = parse(&h2).unwrap().remove(1).object;
        match &o.spec {
            crate::model::Spec::Cluster(c) => {
                assert_eq!(c.protocol, crate::model::UpstreamProtocol::Http2)
            }
            other => panic!("{other:?}"),
        }
        let err = parse(&QUICK.replace("lb: least_conn", "lb: least_conn\n  protocol: http3"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("spec.protocol") && err.contains("http2"),
            "{err}"
        );
        // Upgrades: protocol tokens, once each (in any case), and not HTTP/2's or CONNECT.
        for (upgrades, err) in [
            (
                "['web socket']",
                "spec.upgrades[0]: must be an Upgrade protocol token, e.g. websocket",
            ),
            (
                "[websocket, h2c]",
                "spec.upgrades[1]: is not supported (websocket, spdy/3.1, …)",
            ),
            ("[websocket, WebSocket]", "spec.upgrades[1]: appears twice"),
        ] {
            let bad = QUICK.replace("timeout: 15s", &format!("upgrades: {upgrades}"));
            let mut o = parse(&bad).unwrap().remove(2).object;
            assert_eq!(o.validate().unwrap_err().to_string(), err, "{upgrades}");
        }
        let good = QUICK.replace("timeout: 15s", "upgrades: [WebSocket, SPDY/3.1]");
        let mut o = parse(&good).unwrap().remove(2).object;
        assert!(o.validate().is_ok());
        match &o.spec {
            crate::model::Spec::Route(r) => assert_eq!(r.upgrades, ["websocket", "spdy/3.1"]),
            other => panic!("{other:?}"),
        }
        // Retry conditions: Envoy's, gRPC statuses among them; others by name.
        let grpc = QUICK.replace(
            "on: [5xx, connect-failure, reset]",
            "on: [unavailable, 5xx]",
        );
        assert!(parse(&grpc).unwrap().remove(2).object.validate().is_ok());
        let bad = QUICK.replace("on: [5xx, connect-failure, reset]", "on: [5xx, not-found]");
        let mut o = parse(&bad).unwrap().remove(2).object;
        assert_eq!(
            o.validate().unwrap_err().to_string(),
            "spec.retry.on[1]: \"not-found\" is not one of 5xx, gateway-error, connect-failure, \
             reset, retriable-4xx, cancelled, deadline-exceeded, internal, resource-exhausted, \
             unavailable"
        );
        let bad = QUICK.replace("timeout: 15s", "idleTimeout: 400d");
        let mut o = parse(&bad).unwrap().remove(2).object;
        assert_eq!(
            o.validate().unwrap_err().to_string(),
            "spec.idleTimeout: must be at most 365d (0s: none)"
        );
        let bad = QUICK.replace("timeout: 15s", "timeout: 400d");
        let mut o = parse(&bad).unwrap().remove(2).object;
        assert_eq!(
            o.validate().unwrap_err().to_string(),
            "spec.timeout: must be at most 365d (0s: none)"
        );
        let bad = QUICK.replace(
            "circuitBreaker: {consecutiveFailures: 7}",
            "circuitBreaker: {consecutiveFailures: 7, failOn: [timeout, 4xx]}",
        );
        let mut o = parse(&bad).unwrap().remove(1).object;
        assert_eq!(
            o.validate().unwrap_err().to_string(),
            "spec.circuitBreaker.failOn[1]: unknown failure kind \"4xx\"; one of 5xx, gateway-error, connect-failure, reset, timeout"
        );
    }

    #[test]
    fn upstream_tls_is_checked_by_field() {
        // A self-signed CA certificate (P-256), and a PEM block that is not a certificate.
        const PEM: &str = include_str!("model/testdata/ca.pem");
        const NOT_DER: &str = "-----BEGIN CERTIFICATE-----\nMIIBAA==\n-----END CERTIFICATE-----\n";
        let with = |tls: &str| {
            QUICK.replace(
                "circuitBreaker: {consecutiveFailures: 7}",
                &format!("tls: {tls}"),
            )
        };
        for (tls, err) in [
            (
                "{sni: 'bad name!'}".to_owned(),
                "spec.tls.sni: \"bad name!\" is not a DNS name",
            ),
            (
                "{ca: junk}".to_owned(),
                "spec.tls.ca: holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
            ),
            (
                format!("{{ca: {PEM:?}, insecureSkipVerify: true}}"),
                "spec.tls.ca: is not used with insecureSkipVerify: true",
            ),
            (
                format!("{{ca: {:?}}}", format!("{PEM}{NOT_DER}")),
                "spec.tls.ca: certificate 2: not a usable CA certificate",
            ),
            (
                "{sni: api.example.com.}".to_owned(),
                "spec.tls.sni: \"api.example.com.\" is not a DNS name",
            ),
            ("{sni: a.test, verify: false}".to_owned(), "unknown field"),
        ] {
            let got = match parse(&with(&tls)) {
                Ok(mut docs) => docs.remove(1).object.validate().unwrap_err().to_string(),
                Err(e) => e.to_string(),
            };
            assert!(got.contains(err), "{tls}: {got}");
        }
        let good = with(&format!("{{sni: api.example.com, ca: {PEM:?}}}"));
        let mut o = parse(&good).unwrap().remove(1).object;
        assert!(o.validate().is_ok());
        let Spec::Cluster(c) = &o.spec else {
            panic!("not a cluster")
        };
        let tls = c.tls.clone().unwrap();
        assert_eq!(
            (tls.sni.as_str(), tls.ca_certificates()),
            ("api.example.com", Ok(1))
        );
        // Through the API and back.
        let back =
            crate::convert::cluster_spec_from_pb(Some(&crate::convert::cluster_spec_to_pb(c)))
                .unwrap();
        assert_eq!(back.tls, Some(tls));
    }

    #[test]
    fn fail_on_defaults_and_normalizes() {
        let docs = parse(QUICK).unwrap();
        let Spec::Cluster(c) = &docs[1].object.spec else {
            panic!("not a cluster")
        };
        assert_eq!(
            c.circuit_breaker.fail_on,
            ["5xx", "connect-failure", "reset", "timeout"]
        );
        let mine = QUICK.replace(
            "circuitBreaker: {consecutiveFailures: 7}",
            "circuitBreaker: {failOn: [timeout, 5xx, timeout]}",
        );
        let mut o = parse(&mine).unwrap().remove(1).object;
        o.validate().unwrap();
        let Spec::Cluster(c) = &o.spec else {
            panic!("not a cluster")
        };
        assert_eq!(c.circuit_breaker.fail_on, ["5xx", "timeout"]);
    }
}
