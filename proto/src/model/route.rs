//! `kind: Route`: a request match and where matching requests go.

use super::serde_duration;
use super::validate::{positive, validate_name};
use super::FieldError;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

/// Matches one request header. Exactly one of `exact`, `prefix`, `regex`, `present` (default: present).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HeaderMatch {
    /// Header name (case-insensitive).
    pub name: String,
    /// Value equals.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exact: Option<String>,
    /// Value starts with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// Value matches the RE2-compatible regex (whole value).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regex: Option<String>,
    /// Header is present (any value).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub present: Option<bool>,
}

/// What a request must look like. Path: one of `path`, `pathPrefix`, `pathRegex` (default prefix `/`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct RouteMatch {
    /// Virtual hosts (`*.example.com` allowed); empty means any host.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<String>,
    /// Exact path.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Path prefix.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path_prefix: Option<String>,
    /// Path regex (whole path).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path_regex: Option<String>,
    /// Header matches, all must hold.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<HeaderMatch>,
    /// Allowed methods; empty means any.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub methods: Vec<String>,
}

/// One target of a weighted split.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WeightedCluster {
    /// Cluster name (same tenant).
    pub cluster: String,
    /// Relative weight.
    pub weight: u32,
}

/// Retry policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct RetryPolicy {
    /// Retries after the first try.
    pub attempts: u32,
    /// Conditions: `5xx`, `gateway-error`, `connect-failure`, `reset`, `retriable-4xx`, and the
    /// gRPC statuses `cancelled`, `deadline-exceeded`, `internal`, `resource-exhausted`,
    /// `unavailable` (in a trailers-only answer's headers, as Envoy reads them).
    pub on: Vec<String>,
    /// Timeout of each try; `None` uses the route timeout.
    #[serde(
        skip_serializing_if = "Option::is_none",
        with = "serde_duration::option"
    )]
    pub per_try_timeout: Option<Duration>,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 1,
            on: vec!["5xx".into(), "connect-failure".into(), "reset".into()],
            per_try_timeout: None,
        }
    }
}

/// Retry conditions a route may name: Envoy's `x-envoy-retry-on` ones, then its
/// `x-envoy-retry-grpc-on` ones (a gRPC status in the response headers).
pub const RETRY_ON: [&str; 10] = [
    "5xx",
    "gateway-error",
    "connect-failure",
    "reset",
    "retriable-4xx",
    "cancelled",
    "deadline-exceeded",
    "internal",
    "resource-exhausted",
    "unavailable",
];

/// Hash key for `ip_hash` clusters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HashOn {
    /// The downstream address.
    SourceIp,
    /// A request header.
    Header(String),
    /// A cookie.
    Cookie(String),
}

impl HashOn {
    /// Parses `source_ip`, `header:<name>`, `cookie:<name>`.
    pub fn parse(s: &str) -> Option<HashOn> {
        if s == "source_ip" {
            return Some(HashOn::SourceIp);
        }
        let (kind, name) = s.split_once(':')?;
        if name.is_empty() {
            return None;
        }
        match kind {
            "header" => Some(HashOn::Header(name.to_ascii_lowercase())),
            "cookie" => Some(HashOn::Cookie(name.to_owned())),
            _ => None,
        }
    }
}

/// `kind: Route` spec.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct RouteSpec {
    /// What requests this route takes.
    #[serde(rename = "match")]
    pub match_: RouteMatch,
    /// Single target cluster.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    /// Weighted split over clusters.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub weighted_clusters: Vec<WeightedCluster>,
    /// Whole-request timeout, from the end of the request until the response has been relayed
    /// whole (default 15 s, as Envoy; zero: none).
    #[serde(with = "serde_duration")]
    pub timeout: Duration,
    /// Retry policy.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry: Option<RetryPolicy>,
    /// Hash key for `ip_hash` clusters: `source_ip | header:<name> | cookie:<name>`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hash_on: Option<String>,
    /// Lower first; ties are broken by specificity, then name.
    #[serde(skip_serializing_if = "is_zero")]
    pub priority: i32,
    /// The stream idle timeout of this route's requests, instead of their listener's
    /// `streamIdleTimeout` (`None`: the listener's; zero: none). Envoy's RouteAction
    /// `idle_timeout`.
    #[serde(
        skip_serializing_if = "Option::is_none",
        with = "serde_duration::option"
    )]
    pub idle_timeout: Option<Duration>,
    /// HTTP/1.1 upgrades let through, by their `Upgrade` token (`websocket`, `spdy/3.1`, …),
    /// lower case; after the upstream's `101` the connection is a tunnel. Envoy's RouteAction
    /// `upgrade_configs`. Empty: an upgrade request is refused (403), as in Envoy.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub upgrades: Vec<String>,
    /// What is changed on the way upstream (Envoy's RouteAction `prefix_rewrite` and
    /// `host_rewrite_literal`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rewrite: Option<Rewrite>,
    /// Headers changed on the request sent upstream (Envoy's `request_headers_to_add` /
    /// `request_headers_to_remove`).
    #[serde(skip_serializing_if = "HeaderOps::is_empty")]
    pub request_headers: HeaderOps,
    /// Headers changed on the upstream's response before it goes to the client (Envoy's
    /// `response_headers_to_add` / `response_headers_to_remove`).
    #[serde(skip_serializing_if = "HeaderOps::is_empty")]
    pub response_headers: HeaderOps,
    /// Answered by the proxy itself instead of a cluster (Envoy's `DirectResponseAction`):
    /// maintenance pages, retired paths (`410`), fixed health answers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub direct_response: Option<DirectResponse>,
    /// Answered with a redirect instead of going to a cluster (Envoy's `RedirectAction`):
    /// moved paths, another host, `http` to `https`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redirect: Option<Redirect>,
}

/// A route's redirect: the `location` is the request's URL with what is set here changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Redirect {
    /// `http` or `https`. A port in the request's host that is the old scheme's default (80,
    /// 443) is dropped when the scheme changes and `port` is unset, as Envoy does.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scheme: Option<String>,
    /// The host (a name or an address, without port), replacing the request's host and port.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// The port, replacing the request's (or the new host's default).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// The whole path. The request's query is kept unless this has a query of its own or
    /// `stripQuery` is set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// The matched prefix (`match.pathPrefix`; for `match.path`, the whole path) replaced by
    /// this; the rest of the path and the query are kept.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// The request's query is dropped.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub strip_query: bool,
    /// 301 (the default), 302, 303, 307 or 308.
    pub code: u16,
}

impl Default for Redirect {
    fn default() -> Self {
        Redirect {
            scheme: None,
            host: None,
            port: None,
            path: None,
            prefix: None,
            strip_query: false,
            code: 301,
        }
    }
}

/// A host as it goes in a URL or a `Host` header, without port: a name, an IPv4 address, or an
/// IPv6 address in brackets.
fn host_only(field: &str, h: &str) -> Result<(), FieldError> {
    match h.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        Some(v6) if v6.parse::<std::net::Ipv6Addr>().is_ok() => Ok(()),
        _ if h.parse::<std::net::Ipv6Addr>().is_ok() => Err(FieldError::new(
            field,
            format!("an IPv6 address goes in brackets: \"[{h}]\""),
        )),
        _ => super::validate::host_or_ip(field, h),
    }
}

/// [`host_only`], with an optional `:port`.
fn host_and_port(field: &str, h: &str) -> Result<(), FieldError> {
    let split = if h.starts_with('[') {
        h.find(']').map(|i| h.split_at(i + 1))
    } else if h.matches(':').count() == 1 {
        h.find(':').map(|i| h.split_at(i))
    } else {
        None
    };
    match split {
        Some((host, rest)) if !rest.is_empty() => {
            let port = rest.strip_prefix(':').unwrap_or(rest);
            match port.parse::<u16>() {
                Ok(p) if p > 0 => host_only(field, host),
                _ => Err(FieldError::new(
                    field,
                    format!("{port:?} is not a port in 1..=65535"),
                )),
            }
        }
        _ => host_only(field, h),
    }
}

/// The statuses a redirect may answer with (Envoy's `RedirectResponseCode`).
pub const REDIRECT_CODES: [u16; 5] = [301, 302, 303, 307, 308];

impl Redirect {
    fn validate(&self, m: &RouteMatch) -> Result<(), FieldError> {
        let f = |name: &str| format!("spec.redirect.{name}");
        if let Some(s) = &self.scheme {
            if s != "http" && s != "https" {
                return Err(FieldError::new(
                    f("scheme"),
                    format!("{s:?} is not http or https"),
                ));
            }
        }
        if let Some(h) = &self.host {
            host_only(&f("host"), h)?;
        }
        if self.port == Some(0) {
            return Err(FieldError::new(f("port"), "0 must be in 1..=65535"));
        }
        if let Some(p) = &self.path {
            super::validate::path_and_query(p).map_err(|e| FieldError::new(f("path"), e))?;
        }
        if let Some(p) = &self.prefix {
            if self.path.is_some() {
                return Err(FieldError::new(
                    f("prefix"),
                    "cannot be set together with spec.redirect.path",
                ));
            }
            if m.path_regex.is_some() {
                return Err(FieldError::new(
                    f("prefix"),
                    "needs match.pathPrefix or match.path (a regex match has no prefix to replace)",
                ));
            }
            super::validate::path_prefix(p).map_err(|e| FieldError::new(f("prefix"), e))?;
        }
        if !REDIRECT_CODES.contains(&self.code) {
            return Err(FieldError::new(
                f("code"),
                format!("{} is not 301, 302, 303, 307 or 308", self.code),
            ));
        }
        let changes = self.scheme.is_some()
            || self.host.is_some()
            || self.port.is_some()
            || self.path.is_some()
            || self.prefix.is_some()
            || self.strip_query;
        if !changes {
            return Err(FieldError::new(
                "spec.redirect",
                "changes nothing (set scheme, host, port, path, prefix or stripQuery): \
                 the client would be sent where it is",
            ));
        }
        Ok(())
    }
}

/// A route's fixed answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DirectResponse {
    /// The status, 200–599.
    pub status: u16,
    /// The body, sent as `text/plain` (none when empty); at most 4 KiB.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub body: String,
}

/// Header changes: `remove` first, then `set` (replacing what is there) and `add` (one more
/// line of that name).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct HeaderOps {
    /// Header name → value, replacing any the message has.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub set: BTreeMap<String, String>,
    /// Header name → value, added as one more line.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub add: BTreeMap<String, String>,
    /// Header names removed.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub remove: Vec<String>,
}

/// Headers a route may not change: the proxy's own, the message's framing and routing.
pub const FIXED_HEADERS: [&str; 15] = [
    "host",
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "content-length",
    "te",
    "trailer",
    "upgrade",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-request-id",
    "x-envoy-original-path",
    "x-envoy-original-host",
    "x-envoy-external-address",
];

impl HeaderOps {
    /// Nothing changed.
    pub fn is_empty(&self) -> bool {
        self.set.is_empty() && self.add.is_empty() && self.remove.is_empty()
    }

    fn normalize(&mut self) {
        // A name given twice in different case stays twice (as `name\0`), for validate to refuse.
        let lower = |m: &mut BTreeMap<String, String>| {
            let mut out = BTreeMap::new();
            for (k, v) in std::mem::take(m) {
                let mut k = k.to_ascii_lowercase();
                while out.contains_key(&k) {
                    k.push('\0');
                }
                out.insert(k, v);
            }
            *m = out;
        };
        lower(&mut self.set);
        lower(&mut self.add);
        for r in &mut self.remove {
            *r = r.to_ascii_lowercase();
        }
        self.remove.sort();
        self.remove.dedup();
    }

    /// Checks names and values; `field` is `spec.requestHeaders` or `spec.responseHeaders`.
    fn validate(&self, field: &str) -> Result<(), FieldError> {
        let names = self
            .set
            .keys()
            .map(|k| ("set", k))
            .chain(self.add.keys().map(|k| ("add", k)))
            .chain(self.remove.iter().map(|k| ("remove", k)));
        for (op, name) in names {
            let f = format!("{field}.{op}");
            if let Some(once) = name.strip_suffix('\0') {
                return Err(FieldError::new(
                    f,
                    format!("{:?} is given twice", once.trim_end_matches('\0')),
                ));
            }
            if name.len() > 16384 {
                return Err(FieldError::new(f, "a header name is at most 16384 bytes"));
            }
            if name.is_empty()
                || !name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_!#$%&'*+.^`|~".contains(&b))
            {
                return Err(FieldError::new(f, format!("{name:?} is not a header name")));
            }
            if FIXED_HEADERS.contains(&name.as_str()) {
                return Err(FieldError::new(
                    f,
                    format!(
                        "{name:?} is set by the proxy or frames the message; it cannot be changed"
                    ),
                ));
            }
        }
        if let Some(both) = self.set.keys().find(|k| self.add.contains_key(*k)) {
            return Err(FieldError::new(
                format!("{field}.add"),
                format!("{both:?} is in set too"),
            ));
        }
        for (op, m) in [("set", &self.set), ("add", &self.add)] {
            for (k, v) in m {
                if v.bytes().any(|b| b == b'%') {
                    return Err(FieldError::new(
                        format!("{field}.{op}.{k}"),
                        "'%' is not supported (Envoy reads it as a substitution)",
                    ));
                }
                if v.bytes().any(|b| b < 0x20 && b != b'\t' || b == 0x7f) {
                    return Err(FieldError::new(
                        format!("{field}.{op}.{k}"),
                        "control characters may not appear in a header value",
                    ));
                }
                if v.trim() != v || v.len() > 16384 {
                    return Err(FieldError::new(
                        format!("{field}.{op}.{k}"),
                        "a header value has no leading or trailing whitespace and is at most 16384 bytes",
                    ));
                }
            }
        }
        Ok(())
    }
}

/// A route's rewrite of the request on its way upstream.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Rewrite {
    /// The path's matched prefix (`match.pathPrefix`; for `match.path`, the whole path) is
    /// replaced by this; the rest of the path and the query are kept. As in Envoy, slashes are
    /// not adjusted: `pathPrefix: /api/` with `prefix: /` sends `/api/users` as `/users`, while
    /// `pathPrefix: /api` with `prefix: /` would send `//users`. Empty: the path is kept.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub prefix: String,
    /// The `Host` sent upstream (`name` or `name:port`), for upstreams that serve by their own
    /// name (Envoy's `host_rewrite_literal`; Kong's `preserve_host: false`, APISIX's
    /// `pass_host: rewrite`). Unset: the client's host goes upstream.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
}

fn is_zero(v: &i32) -> bool {
    *v == 0
}

impl Default for RouteSpec {
    fn default() -> Self {
        RouteSpec {
            match_: RouteMatch::default(),
            cluster: None,
            weighted_clusters: Vec::new(),
            timeout: Duration::from_secs(15),
            retry: None,
            hash_on: None,
            priority: 0,
            idle_timeout: None,
            upgrades: Vec::new(),
            rewrite: None,
            request_headers: HeaderOps::default(),
            response_headers: HeaderOps::default(),
            direct_response: None,
            redirect: None,
        }
    }
}

impl RouteSpec {
    /// The clusters this route sends to.
    pub fn clusters(&self) -> impl Iterator<Item = &str> {
        self.cluster
            .as_deref()
            .into_iter()
            .chain(self.weighted_clusters.iter().map(|w| w.cluster.as_str()))
    }

    /// Refuses what only a request sent upstream uses, on a route answered by the proxy
    /// (`kind`: the field that makes it so).
    fn nothing_sent_upstream(&self, kind: &str) -> Result<(), FieldError> {
        let unused = [
            ("spec.retry", self.retry.is_some()),
            ("spec.hashOn", self.hash_on.is_some()),
            ("spec.upgrades", !self.upgrades.is_empty()),
            ("spec.rewrite", self.rewrite.is_some()),
            ("spec.requestHeaders", !self.request_headers.is_empty()),
        ];
        match unused.iter().find(|(_, set)| *set) {
            Some((field, _)) => Err(FieldError::new(
                *field,
                format!("has no use on a route with {kind} (no request goes upstream)"),
            )),
            None => Ok(()),
        }
    }

    /// Canonical order for set-like lists; no path means prefix `/`.
    pub fn normalize(&mut self) {
        self.request_headers.normalize();
        self.response_headers.normalize();
        let m = &mut self.match_;
        for h in &mut m.hosts {
            *h = h.to_ascii_lowercase();
        }
        m.hosts.sort();
        m.hosts.dedup();
        for x in &mut m.methods {
            *x = x.to_ascii_uppercase();
        }
        m.methods.sort();
        m.methods.dedup();
        for h in &mut m.headers {
            h.name = h.name.to_ascii_lowercase();
            if h.exact.is_none() && h.prefix.is_none() && h.regex.is_none() && h.present.is_none() {
                h.present = Some(true);
            }
        }
        m.headers.sort();
        if m.path.is_none() && m.path_prefix.is_none() && m.path_regex.is_none() {
            m.path_prefix = Some("/".into());
        }
        if m.hosts.iter().any(|h| h == "*") {
            m.hosts.clear();
        }
        if let Some(r) = &mut self.retry {
            r.on.sort();
            r.on.dedup();
        }
        // Upgrade tokens are case-insensitive (Envoy matches them so).
        for u in &mut self.upgrades {
            u.make_ascii_lowercase();
        }
    }

    /// Validates every field (references to clusters are checked by the store).
    pub fn validate(&self) -> Result<(), FieldError> {
        let m = &self.match_;
        for (i, h) in m.hosts.iter().enumerate() {
            let bare = h.strip_prefix("*.").unwrap_or(h);
            let bare = bare.split(':').next().unwrap_or(bare);
            super::validate::host_or_ip(&format!("spec.match.hosts[{i}]"), bare)?;
        }
        let set = [
            m.path.is_some(),
            m.path_prefix.is_some(),
            m.path_regex.is_some(),
        ];
        if set.iter().filter(|b| **b).count() > 1 {
            return Err(FieldError::new(
                "spec.match",
                "only one of path, pathPrefix and pathRegex may be set",
            ));
        }
        for (field, p) in [
            ("spec.match.path", &m.path),
            ("spec.match.pathPrefix", &m.path_prefix),
        ] {
            if let Some(p) = p {
                if !p.starts_with('/') {
                    return Err(FieldError::new(field, "must start with '/'"));
                }
            }
        }
        if let Some(r) = &m.path_regex {
            regex::Regex::new(r).map_err(|e| {
                FieldError::new("spec.match.pathRegex", format!("invalid regex: {e}"))
            })?;
        }
        self.request_headers.validate("spec.requestHeaders")?;
        self.response_headers.validate("spec.responseHeaders")?;
        if let Some(rw) = &self.rewrite {
            if rw.prefix.is_empty() && rw.host.is_none() {
                return Err(FieldError::new(
                    "spec.rewrite",
                    "changes nothing (set prefix or host)",
                ));
            }
            if !rw.prefix.is_empty() {
                let field = "spec.rewrite.prefix";
                if m.path_regex.is_some() {
                    return Err(FieldError::new(
                        field,
                        "needs match.pathPrefix or match.path (a regex match has no prefix to \
                         replace)",
                    ));
                }
                super::validate::path_prefix(&rw.prefix).map_err(|e| FieldError::new(field, e))?;
            }
            if let Some(h) = &rw.host {
                host_and_port("spec.rewrite.host", h)?;
            }
        }
        for (i, h) in m.headers.iter().enumerate() {
            let f = format!("spec.match.headers[{i}]");
            if h.name.is_empty()
                || !h
                    .name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_!#$%&'*+.^`|~".contains(&b))
            {
                return Err(FieldError::new(
                    format!("{f}.name"),
                    format!("{:?} is not a header name", h.name),
                ));
            }
            let n = [
                h.exact.is_some(),
                h.prefix.is_some(),
                h.regex.is_some(),
                h.present.is_some(),
            ];
            if n.iter().filter(|b| **b).count() != 1 {
                return Err(FieldError::new(
                    f,
                    "exactly one of exact, prefix, regex and present must be set",
                ));
            }
            if let Some(r) = &h.regex {
                regex::Regex::new(r).map_err(|e| {
                    FieldError::new(format!("{f}.regex"), format!("invalid regex: {e}"))
                })?;
            }
        }
        const METHODS: [&str; 9] = [
            "CONNECT", "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT", "TRACE",
        ];
        for (i, x) in m.methods.iter().enumerate() {
            if !METHODS.contains(&x.as_str()) {
                return Err(FieldError::new(
                    format!("spec.match.methods[{i}]"),
                    format!("{x:?} is not an HTTP method"),
                ));
            }
        }
        if let Some(r) = &self.redirect {
            if self.direct_response.is_some() {
                return Err(FieldError::new(
                    "spec.redirect",
                    "cannot be set together with spec.directResponse",
                ));
            }
            if self.cluster.is_some() || !self.weighted_clusters.is_empty() {
                return Err(FieldError::new(
                    "spec.redirect",
                    "cannot be set together with a cluster",
                ));
            }
            r.validate(m)?;
            self.nothing_sent_upstream("redirect")?;
        }
        if let Some(d) = &self.direct_response {
            let f = "spec.directResponse";
            if self.cluster.is_some() || !self.weighted_clusters.is_empty() {
                return Err(FieldError::new(f, "cannot be set together with a cluster"));
            }
            if !(200..=599).contains(&d.status) {
                return Err(FieldError::new(
                    format!("{f}.status"),
                    format!("{} is not in 200..=599", d.status),
                ));
            }
            if d.body.len() > 4096 {
                return Err(FieldError::new(format!("{f}.body"), "is over 4 KiB"));
            }
            self.nothing_sent_upstream("directResponse")?;
        }
        if self.direct_response.is_none() && self.redirect.is_none() {
            match (&self.cluster, self.weighted_clusters.is_empty()) {
                (Some(_), false) => {
                    return Err(FieldError::new(
                        "spec.weightedClusters",
                        "cannot be set together with spec.cluster",
                    ))
                }
                (None, true) => {
                    return Err(FieldError::new(
                        "spec.cluster",
                        "is required (or spec.weightedClusters, spec.directResponse or \
                         spec.redirect)",
                    ))
                }
                (Some(c), true) => validate_name("spec.cluster", c)?,
                (None, false) => {
                    let mut total = 0u64;
                    let mut seen = std::collections::HashSet::new();
                    for (i, w) in self.weighted_clusters.iter().enumerate() {
                        validate_name(&format!("spec.weightedClusters[{i}].cluster"), &w.cluster)?;
                        if !seen.insert(&w.cluster) {
                            return Err(FieldError::new(
                                format!("spec.weightedClusters[{i}].cluster"),
                                "appears twice",
                            ));
                        }
                        total += u64::from(w.weight);
                    }
                    if total == 0 {
                        return Err(FieldError::new(
                            "spec.weightedClusters",
                            "weights must add up to more than 0",
                        ));
                    }
                }
            }
        }
        // Envoy's meaning: `0s` is no timeout (long streams, server-sent events).
        let year = Duration::from_secs(365 * 86_400);
        for (field, d) in [
            ("spec.timeout", Some(self.timeout)),
            ("spec.idleTimeout", self.idle_timeout),
        ] {
            if d.is_some_and(|d| d > year) {
                return Err(FieldError::new(field, "must be at most 365d (0s: none)"));
            }
        }
        let mut seen = std::collections::HashSet::new();
        for (i, u) in self.upgrades.iter().enumerate() {
            let field = || format!("spec.upgrades[{i}]");
            let token = |c: u8| c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~/".contains(&c);
            if u.is_empty() || !u.bytes().all(token) {
                return Err(FieldError::new(
                    field(),
                    "must be an Upgrade protocol token, e.g. websocket",
                ));
            }
            let u = u.to_ascii_lowercase();
            if u == "h2c" || u == "connect" {
                return Err(FieldError::new(
                    field(),
                    "is not supported (websocket, spdy/3.1, …)",
                ));
            }
            if !seen.insert(u) {
                return Err(FieldError::new(field(), "appears twice"));
            }
        }
        if let Some(r) = &self.retry {
            if r.attempts > 10 {
                return Err(FieldError::new("spec.retry.attempts", "must be at most 10"));
            }
            for (i, on) in r.on.iter().enumerate() {
                if !RETRY_ON.contains(&on.as_str()) {
                    return Err(FieldError::new(
                        format!("spec.retry.on[{i}]"),
                        format!("{on:?} is not one of {}", RETRY_ON.join(", ")),
                    ));
                }
            }
            if let Some(t) = r.per_try_timeout {
                positive("spec.retry.perTryTimeout", t)?;
            }
        }
        if let Some(h) = &self.hash_on {
            if HashOn::parse(h).is_none() {
                return Err(FieldError::new(
                    "spec.hashOn",
                    format!("{h:?} is not source_ip, header:<name> or cookie:<name>"),
                ));
            }
        }
        Ok(())
    }
}
