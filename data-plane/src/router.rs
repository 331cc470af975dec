//! The routing table compiled from a `RouteConfiguration`: virtual hosts chosen by the request's
//! host (exact, then longest `*.suffix`, then `prefix.*`, then `*`), routes tried in order, matched
//! on path (exact / prefix / regex), headers and `:method` — Envoy's semantics.

use crate::stats::ObjStats;
use gw_proto::envoy::pb::envoy::config::route::v3 as rt;
use gw_proto::envoy::pb::envoy::r#type::matcher::v3::{
    string_matcher::MatchPattern, StringMatcher,
};
use hyper::http::HeaderMap;
use regex::Regex;
use std::sync::Arc;
use std::time::Duration;

/// A request's headers as routing and hashing read them: the values of one header, by
/// lower-case name, in order. Both hyper's [`HeaderMap`] and the native HTTP/1 head give them.
pub trait Headers {
    /// The values of `name` (lower case).
    fn values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a;
}

impl Headers for HeaderMap {
    fn values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.get_all(name).into_iter().map(|v| v.as_bytes())
    }
}

/// Why a route configuration could not be compiled (sent back as NACK detail).
#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    /// A regex is invalid.
    #[error("route {route}: invalid regex {regex:?}: {reason}")]
    Regex {
        /// Route name.
        route: String,
        /// The regex.
        regex: String,
        /// Why.
        reason: String,
    },
    /// `upgrade_configs` gw-proxy cannot follow.
    #[error("route {route}: upgrade_configs: {why}")]
    Upgrade {
        /// Route name.
        route: String,
        /// Why.
        why: String,
    },
    /// Something of a route configuration's that gw-proxy does not implement.
    #[error("route configuration {name}: unsupported {what}")]
    Config {
        /// Route configuration name.
        name: String,
        /// What.
        what: String,
    },
    /// Something of a virtual host's that gw-proxy does not implement.
    #[error("virtual host {name}: unsupported {what}")]
    Host {
        /// Virtual host name.
        name: String,
        /// What.
        what: String,
    },
    /// Something gw-proxy does not implement.
    #[error("route {route}: unsupported {what}")]
    Unsupported {
        /// Route name.
        route: String,
        /// What.
        what: String,
    },
}

/// How a value is matched.
#[derive(Debug, Clone)]
pub enum StrMatch {
    /// Equal.
    Exact(String),
    /// Starts with.
    Prefix(String),
    /// Ends with.
    Suffix(String),
    /// Contains.
    Contains(String),
    /// Whole-value regex.
    Regex(Regex),
    /// Present at all.
    Present,
}

impl StrMatch {
    fn matches(&self, v: &str) -> bool {
        match self {
            StrMatch::Exact(x) => v == x,
            StrMatch::Prefix(x) => v.starts_with(x.as_str()),
            StrMatch::Suffix(x) => v.ends_with(x.as_str()),
            StrMatch::Contains(x) => v.contains(x.as_str()),
            StrMatch::Regex(r) => r.is_match(v),
            StrMatch::Present => true,
        }
    }
}

/// A header condition (`:method` is the request method).
#[derive(Debug, Clone)]
pub struct HeaderCond {
    name: String,
    how: StrMatch,
    invert: bool,
    present: bool,
}

/// Where matching requests go.
#[derive(Debug, Clone)]
pub enum Target {
    /// One cluster.
    Cluster(String),
    /// A weighted split: (cluster, cumulative weight), total.
    Weighted(Vec<(String, u32)>, u32),
    /// No cluster: the proxy answers with this status and body (Envoy's direct response).
    Direct(hyper::StatusCode, bytes::Bytes),
    /// No cluster: the proxy answers with a redirect (Envoy's redirect, or a virtual host's
    /// `require_tls`).
    Redirect(Box<Redirect>),
}

/// A redirect: the request's URL with some parts changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redirect {
    scheme: Option<String>,
    /// Replaces the request's host and port.
    host: Option<String>,
    port: Option<u16>,
    path: RedirectPath,
    strip_query: bool,
    /// The status answered.
    pub status: hyper::StatusCode,
    /// A virtual host's `require_tls`: the request's URL over `https`, its host left as it is.
    pub require_tls: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum RedirectPath {
    /// The request's.
    Keep,
    /// `path_redirect`: the whole path, with its own query if it has one.
    Whole(String),
    /// `prefix_rewrite`: how many leading bytes of the matched path are replaced, by what.
    Prefix(usize, String),
}

impl Redirect {
    /// What a virtual host with `require_tls: ALL` answers a plaintext request with.
    fn to_https() -> Redirect {
        Redirect {
            scheme: Some("https".into()),
            host: None,
            port: None,
            path: RedirectPath::Keep,
            strip_query: false,
            status: hyper::StatusCode::MOVED_PERMANENTLY,
            require_tls: true,
        }
    }

    /// The `location` for a request to `host` (`host[:port]` as the client sent it) for
    /// `target` (path and query), with the `scheme` the request names (HTTP/2's `:scheme`, an
    /// absolute-form URL's; else the connection's), on a connection that is TLS or not, as
    /// Envoy builds it: a port that is the connection scheme's default (80, 443) is dropped
    /// when the scheme changes from it and no port is given.
    pub fn location(&self, tls: bool, scheme: Option<&str>, host: &str, target: &str) -> String {
        let from = if tls { "https" } else { "http" };
        let scheme = self.scheme.as_deref().or(scheme).unwrap_or(from);
        let (bare, port) = split_port(host);
        let authority = match (&self.host, self.port) {
            (Some(h), Some(p)) => format!("{h}:{p}"),
            (Some(h), None) => h.clone(),
            (None, Some(p)) => format!("{bare}:{p}"),
            (None, None) => {
                let default = if tls { "443" } else { "80" };
                if !self.require_tls && scheme != from && port == Some(default) {
                    bare.to_owned()
                } else {
                    host.to_owned()
                }
            }
        };
        let (path, query) = target
            .split_once('?')
            .map_or((target, None), |(p, q)| (p, Some(q)));
        let (mut path, own_query) = match &self.path {
            RedirectPath::Keep => (path.to_owned(), false),
            RedirectPath::Whole(p) => (p.clone(), p.contains('?')),
            RedirectPath::Prefix(n, with) => (replace_prefix(path, *n, with), false),
        };
        if let (Some(q), false, false) = (query, own_query, self.strip_query) {
            path.push('?');
            path.push_str(q);
        }
        format!("{scheme}://{authority}{path}")
    }
}

/// What of a route and its match gw-proxy does not follow.
fn unfollowed_in_route(r: &rt::Route, m: &rt::RouteMatch) -> Option<&'static str> {
    crate::config::first_set(&[
        (
            "typed_per_filter_config",
            !r.typed_per_filter_config.is_empty(),
        ),
        ("route_specifiers", !r.route_specifiers.is_empty()),
        ("match runtime_fraction", m.runtime_fraction.is_some()),
        ("match query_parameters", !m.query_parameters.is_empty()),
        ("match cookies", !m.cookies.is_empty()),
        ("match grpc", m.grpc.is_some()),
        ("match tls_context", m.tls_context.is_some()),
        ("match dynamic_metadata", !m.dynamic_metadata.is_empty()),
        ("match filter_state", !m.filter_state.is_empty()),
        (
            "header match treat_missing_header_as_empty",
            m.headers.iter().any(|h| h.treat_missing_header_as_empty),
        ),
    ])
}

/// What of a route action gw-proxy does not follow (deprecated fields too: Envoy still
/// follows them).
#[allow(deprecated)]
fn unfollowed_in_action(a: &rt::RouteAction) -> Option<&'static str> {
    crate::config::first_set(&[
        (
            "cluster_not_found_response_code",
            a.cluster_not_found_response_code != 0,
        ),
        ("metadata_match", a.metadata_match.is_some()),
        ("path_rewrite", !a.path_rewrite.is_empty()),
        ("flush_timeout", a.flush_timeout.is_some()),
        ("early_data_policy", a.early_data_policy.is_some()),
        (
            "retry_policy_typed_config",
            a.retry_policy_typed_config.is_some(),
        ),
        (
            "request_mirror_policies",
            !a.request_mirror_policies.is_empty(),
        ),
        ("priority", a.priority != 0),
        ("max_grpc_timeout", a.max_grpc_timeout.is_some()),
        ("grpc_timeout_offset", a.grpc_timeout_offset.is_some()),
        (
            "internal_redirect_policy",
            a.internal_redirect_policy.is_some(),
        ),
        ("internal_redirect_action", a.internal_redirect_action != 0),
        ("max_internal_redirects", a.max_internal_redirects.is_some()),
        ("hedge_policy", a.hedge_policy.is_some()),
        ("max_stream_duration", a.max_stream_duration.is_some()),
        ("more than one hash_policy", a.hash_policy.len() > 1),
    ])
}

/// What of a virtual host gw-proxy does not follow.
#[allow(deprecated)]
fn unfollowed_in_host(vh: &rt::VirtualHost) -> Option<&'static str> {
    crate::config::first_set(&[
        ("matcher", vh.matcher.is_some()),
        (
            "typed_per_filter_config",
            !vh.typed_per_filter_config.is_empty(),
        ),
        (
            "include_request_attempt_count",
            vh.include_request_attempt_count,
        ),
        (
            "include_attempt_count_in_response",
            vh.include_attempt_count_in_response,
        ),
        ("retry_policy", vh.retry_policy.is_some()),
        (
            "retry_policy_typed_config",
            vh.retry_policy_typed_config.is_some(),
        ),
        ("hedge_policy", vh.hedge_policy.is_some()),
        (
            "include_is_timeout_retry_header",
            vh.include_is_timeout_retry_header,
        ),
        (
            "request_mirror_policies",
            !vh.request_mirror_policies.is_empty(),
        ),
        ("route_specifiers", !vh.route_specifiers.is_empty()),
    ])
}

/// What of a route configuration gw-proxy does not follow.
fn unfollowed_in_config(rc: &rt::RouteConfiguration) -> Option<&'static str> {
    crate::config::first_set(&[
        ("vhds", rc.vhds.is_some()),
        (
            "internal_only_headers",
            !rc.internal_only_headers.is_empty(),
        ),
        (
            "cluster_specifier_plugins",
            !rc.cluster_specifier_plugins.is_empty(),
        ),
        (
            "request_mirror_policies",
            !rc.request_mirror_policies.is_empty(),
        ),
        (
            "ignore_port_in_host_matching",
            rc.ignore_port_in_host_matching,
        ),
        ("vhost_header", !rc.vhost_header.is_empty()),
        (
            "ignore_path_parameters_in_path_matching",
            rc.ignore_path_parameters_in_path_matching,
        ),
        (
            "typed_per_filter_config",
            !rc.typed_per_filter_config.is_empty(),
        ),
        ("route_specifiers", !rc.route_specifiers.is_empty()),
    ])
}

/// `target` with its first `n` bytes (a prefix it matched) replaced by `with`.
fn replace_prefix(target: &str, n: usize, with: &str) -> String {
    [with, target.get(n..).unwrap_or("")].concat()
}

/// A `prefix_rewrite` (`what`: which) on a route whose path matches `path`: how many leading
/// bytes of a matched path it replaces, and by what. It goes into a request line or a
/// `location` as it is: nothing but a path.
fn prefix_replacement(path: &PathMatch, with: &str, what: &str) -> Result<(usize, String), String> {
    gw_proto::model::path_prefix(with).map_err(|why| format!("{what} {with:?}: {why}"))?;
    match path {
        PathMatch::Prefix(p) | PathMatch::Exact(p) => Ok((p.len(), with.to_owned())),
        PathMatch::Regex(_) => Err(format!("{what} on a regex match")),
    }
}

/// Whether `h` can stand as a URL's authority or a `Host` (a name or address, maybe a port):
/// what the proxy would otherwise send on as it was given.
pub(crate) fn is_authority(h: &str) -> bool {
    !h.is_empty()
        && h.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~[]:".contains(&b))
}

/// `host[:port]` split at its port, if it has one (`[v6]:port` too).
fn split_port(host: &str) -> (&str, Option<&str>) {
    match host.rsplit_once(':') {
        Some((h, p))
            if !p.is_empty()
                && p.bytes().all(|b| b.is_ascii_digit())
                && (!h.contains(':') || h.ends_with(']')) =>
        {
            (h, Some(p))
        }
        _ => (host, None),
    }
}

/// What to hash on for `ip_hash` clusters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HashOn {
    /// Downstream IP.
    SourceIp,
    /// A request header.
    Header(hyper::header::HeaderName),
    /// A cookie.
    Cookie(String),
}

/// Retry policy of a route.
#[derive(Debug, Clone, Default)]
pub struct Retry {
    /// Retries after the first try.
    pub attempts: u32,
    /// Retry on 5xx responses.
    pub on_5xx: bool,
    /// Retry on 502/503/504 only.
    pub on_gateway_error: bool,
    /// Retry when the connection fails.
    pub on_connect_failure: bool,
    /// Retry when the upstream resets.
    pub on_reset: bool,
    /// Retry on 409 and similar retriable 4xx.
    pub on_retriable_4xx: bool,
    /// Retry on these gRPC statuses in the response headers (a trailers-only answer), one bit
    /// per code: Envoy's `cancelled`, `deadline-exceeded`, `resource-exhausted`, `internal`,
    /// `unavailable`.
    pub on_grpc: u32,
    /// Timeout of each try.
    pub per_try_timeout: Option<Duration>,
}

/// One compiled route.
#[derive(Debug)]
pub struct Route {
    /// Envoy name (`tenant/name`).
    pub name: String,
    /// Tenant part of the name.
    pub tenant: String,
    /// Name part.
    pub short: String,
    path: PathMatch,
    headers: Vec<HeaderCond>,
    /// Where it sends.
    pub target: Target,
    /// Whole-request timeout; `None` = none.
    pub timeout: Option<Duration>,
    /// Retry policy.
    pub retry: Option<Retry>,
    /// Hash key for `ip_hash`.
    pub hash_on: Option<HashOn>,
    /// `idle_timeout`: the stream idle timeout of this route's requests instead of the
    /// listener's (`None`: the listener's; `Some(None)`: none).
    pub idle: Option<Option<Duration>>,
    /// `upgrade_configs`: HTTP/1.1 upgrades enabled or disabled on this route, by type (lower
    /// case), over the connection manager's.
    pub upgrades: Vec<(String, bool)>,
    /// `prefix_rewrite`: how many leading bytes of a matched path are replaced, and by what.
    rewrite: Option<(usize, String)>,
    /// `request_headers_to_add` / `_remove` (and a `host_rewrite_literal`, as a `Host` set).
    pub request_headers: Option<Box<HeaderOps>>,
    /// The route rewrites the host: the client's goes upstream in `x-envoy-original-host`.
    pub original_host: bool,
    /// `response_headers_to_add` / `_remove`.
    pub response_headers: Option<Box<HeaderOps>>,
    /// Counters.
    pub stats: Arc<ObjStats>,
}

impl Route {
    /// The request target (path and query) to send upstream when this route rewrites it (its
    /// `prefix_rewrite`): the matched prefix, or the whole path of an exact match, replaced;
    /// `None` when it does not. `target` is one this route matched.
    #[inline]
    pub fn rewritten(&self, target: &str) -> Option<String> {
        let (matched, with) = self.rewrite.as_ref()?;
        Some(replace_prefix(target, *matched, with))
    }

    /// The stream idle timeout in force for this route's requests, given the listener's.
    pub fn stream_idle(&self, listener: Option<Duration>) -> Option<Duration> {
        self.idle.unwrap_or(listener)
    }
}

/// A route's header changes: `remove` (and the names `set`) dropped, then `set` and `add` put.
#[derive(Debug, Default)]
pub struct HeaderOps {
    remove: Vec<hyper::header::HeaderName>,
    set: Vec<(hyper::header::HeaderName, hyper::header::HeaderValue)>,
    add: Vec<(hyper::header::HeaderName, hyper::header::HeaderValue)>,
}

impl HeaderOps {
    /// Reads Envoy's headers to add and remove; `None` when there are none.
    fn of(
        add: &[gw_proto::envoy::pb::envoy::config::core::v3::HeaderValueOption],
        remove: &[String],
    ) -> Result<Option<Box<HeaderOps>>, String> {
        use gw_proto::envoy::pb::envoy::config::core::v3::header_value_option::HeaderAppendAction as A;
        use hyper::header::{HeaderName, HeaderValue};
        let name = |n: &str| {
            if n.starts_with(':')
                || gw_proto::model::FIXED_HEADERS.contains(&n.to_ascii_lowercase().as_str())
            {
                return Err(format!("header {n:?} cannot be changed by a route here"));
            }
            HeaderName::from_bytes(n.as_bytes()).map_err(|_| format!("{n:?} is not a header name"))
        };
        let mut ops = HeaderOps::default();
        for n in remove {
            ops.remove.push(name(n)?);
        }
        for o in add {
            let Some(h) = &o.header else {
                return Err("a header to add without its header".into());
            };
            let n = name(&h.key)?;
            if !h.raw_value.is_empty() {
                return Err(format!(
                    "header {:?}: raw_value is not supported (value is)",
                    h.key
                ));
            }
            if h.value.contains('%') {
                return Err(format!(
                    "header {:?}: %-substitutions are not supported",
                    h.key
                ));
            }
            #[allow(deprecated)]
            let append = match (o.append.map(|b| b.value), A::try_from(o.append_action)) {
                // The deprecated flag, with the action left at its default (Envoy refuses both).
                (Some(a), Ok(A::AppendIfExistsOrAdd)) => a,
                (Some(_), _) => {
                    return Err(format!("header {:?}: both append and append_action", h.key))
                }
                (None, Ok(A::AppendIfExistsOrAdd)) => true,
                (None, Ok(A::OverwriteIfExistsOrAdd)) => false,
                (None, _) => {
                    return Err(format!(
                        "header {:?}: append_action ADD_IF_ABSENT / OVERWRITE_IF_EXISTS is not supported",
                        h.key
                    ))
                }
            };
            if h.value.is_empty() && !o.keep_empty_value {
                continue;
            }
            let v = HeaderValue::from_str(&h.value)
                .map_err(|_| format!("header {:?}: not a header value", h.key))?;
            if !append && ops.set.iter().any(|(m, _)| *m == n) {
                return Err(format!("header {:?} is overwritten twice", h.key));
            }
            match append {
                true => ops.add.push((n, v)),
                false => ops.set.push((n, v)),
            }
        }
        Ok(
            (!(ops.remove.is_empty() && ops.set.is_empty() && ops.add.is_empty()))
                .then(|| Box::new(ops)),
        )
    }

    /// Whether a header of this name is dropped from the message (removed, or set anew).
    #[inline]
    pub fn drops(&self, name: &[u8]) -> bool {
        let is = |n: &hyper::header::HeaderName| n.as_str().as_bytes().eq_ignore_ascii_case(name);
        self.remove.iter().any(is) || self.set.iter().any(|(n, _)| is(n))
    }

    /// The header lines put in: those set, then those added.
    pub fn put(&self, out: &mut Vec<u8>) {
        for (n, v) in self.set.iter().chain(&self.add) {
            crate::proxy::h1::put_header(out, n.as_str().as_bytes(), v.as_bytes());
        }
    }

    /// Applies the changes to `h`.
    pub fn apply(&self, h: &mut HeaderMap) {
        for n in &self.remove {
            h.remove(n);
        }
        for (n, v) in &self.set {
            h.insert(n.clone(), v.clone());
        }
        for (n, v) in &self.add {
            h.append(n.clone(), v.clone());
        }
    }
}

#[derive(Debug)]
enum PathMatch {
    Exact(String),
    Prefix(String),
    Regex(Regex),
}

/// A virtual host.
#[derive(Debug)]
struct VirtualHost {
    routes: Vec<Arc<Route>>,
}

/// A compiled route configuration.
#[derive(Debug, Default)]
pub struct RouteTable {
    exact: std::collections::HashMap<String, usize>,
    suffixes: Vec<(String, usize)>,
    prefixes: Vec<(String, usize)>,
    any: Option<usize>,
    vhosts: Vec<VirtualHost>,
    /// The connection manager's `upgrade_configs`: upgrades enabled or disabled by default, by
    /// type (lower case).
    pub upgrades: Vec<(String, bool)>,
    /// Some route is answered by the proxy, with a direct response or a redirect (hyper's path
    /// serves those).
    pub any_local: bool,
}

/// `upgrade_configs` entries (a route's or a connection manager's), each as its type in lower
/// case and whether it is enabled (unset: yes); an error for what gw-proxy cannot do (`CONNECT`,
/// a tunnel of its own kind; `h2c`, HTTP/2's) and for a type given twice (Envoy refuses that).
pub fn upgrade_entries<'a>(
    configs: impl Iterator<Item = (&'a str, Option<bool>)>,
) -> Result<Vec<(String, bool)>, String> {
    let mut out: Vec<(String, bool)> = Vec::new();
    for (kind, enabled) in configs {
        let kind = kind.to_ascii_lowercase();
        if matches!(kind.as_str(), "" | "connect" | "h2c") {
            return Err(format!("unsupported upgrade type {kind:?}"));
        }
        if out.iter().any(|(k, _)| *k == kind) {
            return Err(format!("upgrade type {kind:?} given twice"));
        }
        out.push((kind, enabled.unwrap_or(true)));
    }
    Ok(out)
}

impl RouteTable {
    /// Whether an HTTP/1.1 upgrade to `kind` (the request's `Upgrade`) may go through `route`:
    /// the route's setting for it, else the connection manager's, else not (Envoy's rule).
    pub fn allows_upgrade(&self, route: &Route, kind: &[u8]) -> bool {
        let find = |list: &[(String, bool)]| {
            list.iter()
                .find(|(k, _)| k.as_bytes().eq_ignore_ascii_case(kind.trim_ascii()))
                .map(|(_, on)| *on)
        };
        find(&route.upgrades)
            .or_else(|| find(&self.upgrades))
            .unwrap_or(false)
    }
}

fn full_regex(route: &str, re: &str) -> Result<Regex, RouteError> {
    Regex::new(&format!("^(?:{re})$")).map_err(|e| RouteError::Regex {
        route: route.to_owned(),
        regex: re.to_owned(),
        reason: e.to_string(),
    })
}

fn string_match(route: &str, m: &StringMatcher) -> Result<StrMatch, RouteError> {
    let unsupported = |what: &str| RouteError::Unsupported {
        route: route.to_owned(),
        what: what.to_owned(),
    };
    if m.ignore_case {
        return Err(unsupported("ignore_case string matcher"));
    }
    Ok(match &m.match_pattern {
        Some(MatchPattern::Exact(x)) => StrMatch::Exact(x.clone()),
        Some(MatchPattern::Prefix(x)) => StrMatch::Prefix(x.clone()),
        Some(MatchPattern::Suffix(x)) => StrMatch::Suffix(x.clone()),
        Some(MatchPattern::Contains(x)) => StrMatch::Contains(x.clone()),
        Some(MatchPattern::SafeRegex(r)) => StrMatch::Regex(full_regex(route, &r.regex)?),
        _ => return Err(unsupported("string matcher")),
    })
}

#[allow(deprecated)] // Envoy still sends the older matcher fields; both are honoured.
fn header_cond(route: &str, h: &rt::HeaderMatcher) -> Result<HeaderCond, RouteError> {
    use rt::header_matcher::HeaderMatchSpecifier as S;
    let (how, present) = match &h.header_match_specifier {
        None => (StrMatch::Present, true),
        Some(S::PresentMatch(p)) => (StrMatch::Present, *p),
        Some(S::ExactMatch(x)) => (StrMatch::Exact(x.clone()), true),
        Some(S::PrefixMatch(x)) => (StrMatch::Prefix(x.clone()), true),
        Some(S::SuffixMatch(x)) => (StrMatch::Suffix(x.clone()), true),
        Some(S::ContainsMatch(x)) => (StrMatch::Contains(x.clone()), true),
        Some(S::SafeRegexMatch(r)) => (StrMatch::Regex(full_regex(route, &r.regex)?), true),
        Some(S::StringMatch(m)) => (string_match(route, m)?, true),
        Some(_) => {
            return Err(RouteError::Unsupported {
                route: route.into(),
                what: "header matcher".into(),
            })
        }
    };
    Ok(HeaderCond {
        name: h.name.to_ascii_lowercase(),
        how,
        invert: h.invert_match,
        present,
    })
}

fn duration(d: Option<&gw_proto::envoy::pb::google::protobuf::Duration>) -> Option<Duration> {
    d.map(crate::config::pb_duration_clamped)
}

fn retry(p: &rt::RetryPolicy) -> Retry {
    let mut r = Retry {
        attempts: p.num_retries.as_ref().map_or(1, |n| n.value),
        per_try_timeout: duration(p.per_try_timeout.as_ref()).filter(|d| !d.is_zero()),
        ..Default::default()
    };
    for on in p.retry_on.split(',').map(str::trim) {
        match on {
            "5xx" => r.on_5xx = true,
            "gateway-error" => r.on_gateway_error = true,
            "connect-failure" => r.on_connect_failure = true,
            "reset" => r.on_reset = true,
            "retriable-4xx" => r.on_retriable_4xx = true,
            "cancelled" => r.on_grpc |= 1 << 1,
            "deadline-exceeded" => r.on_grpc |= 1 << 4,
            "resource-exhausted" => r.on_grpc |= 1 << 8,
            "internal" => r.on_grpc |= 1 << 13,
            "unavailable" => r.on_grpc |= 1 << 14,
            _ => {}
        }
    }
    r
}

/// Builds one route; `stats` gives the counters for (tenant, name).
pub fn compile_route(
    r: &rt::Route,
    stats: &dyn Fn(&str, &str) -> Arc<ObjStats>,
) -> Result<Route, RouteError> {
    let name = r.name.clone();
    let unsupported = |what: &str| RouteError::Unsupported {
        route: name.clone(),
        what: what.to_owned(),
    };
    let m = r
        .r#match
        .as_ref()
        .ok_or_else(|| unsupported("route without match"))?;
    use rt::route_match::PathSpecifier as P;
    let path = match &m.path_specifier {
        Some(P::Prefix(p)) => PathMatch::Prefix(p.clone()),
        Some(P::Path(p)) => PathMatch::Exact(p.clone()),
        Some(P::SafeRegex(re)) => PathMatch::Regex(full_regex(&name, &re.regex)?),
        None => PathMatch::Prefix("/".into()),
        Some(_) => return Err(unsupported("path specifier")),
    };
    let headers = m
        .headers
        .iter()
        .map(|h| header_cond(&name, h))
        .collect::<Result<_, _>>()?;
    if m.case_sensitive.is_some_and(|b| !b.value) {
        return Err(unsupported("case-insensitive path matching"));
    }
    if let Some(what) = unfollowed_in_route(r, m) {
        return Err(unsupported(what));
    }
    // Checked on every route (Envoy's config checks them whatever the action); used only by
    // routes that forward.
    let mut request_headers =
        HeaderOps::of(&r.request_headers_to_add, &r.request_headers_to_remove)
            .map_err(|e| unsupported(&format!("request headers: {e}")))?;
    let a = match &r.action {
        Some(rt::route::Action::Route(a)) => a,
        Some(rt::route::Action::DirectResponse(d)) => {
            return direct_route(r, d, path, headers, stats);
        }
        Some(rt::route::Action::Redirect(x)) => {
            let to = redirect(x, &path).map_err(|e| unsupported(&e))?;
            return bare(r, path, headers, Target::Redirect(Box::new(to)), stats);
        }
        _ => {
            return Err(unsupported(
                "route action (`route`, `redirect` and `direct_response` are supported)",
            ))
        }
    };
    if let Some(what) = unfollowed_in_action(a) {
        return Err(unsupported(what));
    }
    if a.regex_rewrite.is_some() || a.path_rewrite_policy.is_some() {
        return Err(unsupported(
            "regex_rewrite / path_rewrite_policy (prefix_rewrite is)",
        ));
    }
    let rewrite = match a.prefix_rewrite.as_str() {
        "" => None,
        with => {
            Some(prefix_replacement(&path, with, "prefix_rewrite").map_err(|e| unsupported(&e))?)
        }
    };
    use rt::route_action::ClusterSpecifier as C;
    let target = match &a.cluster_specifier {
        Some(C::Cluster(c)) => Target::Cluster(c.clone()),
        Some(C::WeightedClusters(w)) => {
            let mut acc = 0;
            let mut list = Vec::new();
            for c in &w.clusters {
                if !(c.request_headers_to_add.is_empty()
                    && c.request_headers_to_remove.is_empty()
                    && c.response_headers_to_add.is_empty()
                    && c.response_headers_to_remove.is_empty())
                {
                    return Err(unsupported("headers to add or remove per weighted cluster"));
                }
                acc += c.weight.as_ref().map_or(0, |w| w.value);
                list.push((c.name.clone(), acc));
            }
            if acc == 0 {
                return Err(unsupported("weighted clusters with total weight 0"));
            }
            Target::Weighted(list, acc)
        }
        _ => return Err(unsupported("cluster specifier")),
    };
    use rt::route_action::hash_policy::PolicySpecifier as H;
    // One policy at most (checked above); what it hashes on, or a NACK for what gw-proxy
    // cannot hash on as Envoy would (Envoy makes the cookie when it has a ttl).
    let hash_on = match a.hash_policy.first().map(|h| &h.policy_specifier) {
        None => None,
        Some(Some(H::ConnectionProperties(c))) if c.source_ip => Some(HashOn::SourceIp),
        Some(Some(H::Header(h))) if h.regex_rewrite.is_none() => Some(HashOn::Header(
            hyper::header::HeaderName::from_bytes(h.header_name.as_bytes())
                .map_err(|_| unsupported(&format!("hash_policy header {:?}", h.header_name)))?,
        )),
        // Envoy uses a cookie's path and attributes only when it makes the cookie (a ttl).
        Some(Some(H::Cookie(c))) if c.ttl.is_none() => Some(HashOn::Cookie(c.name.clone())),
        Some(_) => {
            return Err(unsupported(
                "hash_policy other than source_ip, a header, or a cookie without ttl",
            ))
        }
    };
    let upgrades = upgrade_entries(
        a.upgrade_configs
            .iter()
            .map(|u| (u.upgrade_type.as_str(), u.enabled.map(|b| b.value))),
    )
    .map_err(|why| RouteError::Upgrade {
        route: name.clone(),
        why,
    })?;
    // A host rewrite is one more header set (Envoy sets `Host` after the route's changes; the
    // route cannot change `host` itself, so the order cannot show).
    use rt::route_action::HostRewriteSpecifier as HostRewrite;
    let mut original_host = false;
    match &a.host_rewrite_specifier {
        None => {}
        Some(HostRewrite::AutoHostRewrite(on)) if !on.value => {}
        // Envoy's: an empty literal rewrites nothing.
        Some(HostRewrite::HostRewriteLiteral(h)) if h.is_empty() => {}
        Some(HostRewrite::HostRewriteLiteral(h)) => {
            let v = hyper::header::HeaderValue::from_str(h)
                .ok()
                .filter(|_| is_authority(h))
                .ok_or_else(|| unsupported(&format!("host_rewrite_literal {h:?} is not a host")))?;
            request_headers
                .get_or_insert_with(Box::default)
                .set
                .push((hyper::header::HOST, v));
            original_host = true;
        }
        Some(_) => {
            return Err(unsupported(
                "a host rewrite other than host_rewrite_literal",
            ))
        }
    }
    if a.append_x_forwarded_host {
        return Err(unsupported("append_x_forwarded_host"));
    }
    Ok(Route {
        // Envoy: a 0 timeout disables it; unset means 15 s.
        timeout: match duration(a.timeout.as_ref()) {
            Some(d) if d.is_zero() => None,
            Some(d) => Some(d),
            None => Some(Duration::from_secs(15)),
        },
        retry: a.retry_policy.as_ref().map(retry),
        hash_on,
        // Envoy: set, it replaces the connection manager's; 0 turns it off for the route.
        idle: duration(a.idle_timeout.as_ref()).map(|d| Some(d).filter(|d| !d.is_zero())),
        upgrades,
        rewrite,
        request_headers,
        original_host,
        ..bare(r, path, headers, target, stats)?
    })
}

/// A route with what every kind has (name, match, target, response header changes, counters)
/// and nothing of a `route` action's (no timeout, retries, hashing, upgrades, rewrite).
fn bare(
    r: &rt::Route,
    path: PathMatch,
    headers: Vec<HeaderCond>,
    target: Target,
    stats: &dyn Fn(&str, &str) -> Arc<ObjStats>,
) -> Result<Route, RouteError> {
    let response_headers = HeaderOps::of(&r.response_headers_to_add, &r.response_headers_to_remove)
        .map_err(|e| RouteError::Unsupported {
            route: r.name.clone(),
            what: format!("response headers: {e}"),
        })?;
    let (tenant, short) = tenant_and_name(&r.name);
    Ok(Route {
        stats: stats(&tenant, &short),
        tenant,
        short,
        name: r.name.clone(),
        path,
        headers,
        target,
        timeout: None,
        retry: None,
        hash_on: None,
        idle: None,
        upgrades: Vec::new(),
        rewrite: None,
        request_headers: None,
        original_host: false,
        response_headers,
    })
}

/// A route's Envoy name (`tenant/name`) split; no tenant when it has no `/`.
fn tenant_and_name(name: &str) -> (String, String) {
    name.split_once('/')
        .map_or((String::new(), name.to_owned()), |(t, n)| {
            (t.into(), n.into())
        })
}

/// A route's `redirect`, checked as far as it goes into a `location` header.
fn redirect(x: &rt::RedirectAction, path: &PathMatch) -> Result<Redirect, String> {
    use hyper::StatusCode;
    use rt::redirect_action::{
        PathRewriteSpecifier as P, RedirectResponseCode as Code, SchemeRewriteSpecifier as S,
    };
    let scheme = match &x.scheme_rewrite_specifier {
        None | Some(S::HttpsRedirect(false)) => None,
        Some(S::HttpsRedirect(true)) => Some("https".to_owned()),
        Some(S::SchemeRedirect(s)) if s.is_empty() => None,
        Some(S::SchemeRedirect(s)) => {
            let ok = s.starts_with(|c: char| c.is_ascii_alphabetic())
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b));
            if !ok {
                return Err(format!("redirect scheme_redirect {s:?} is not a scheme"));
            }
            Some(s.clone())
        }
    };
    let host = Some(x.host_redirect.clone()).filter(|h| !h.is_empty());
    if let Some(h) = host.as_deref().filter(|h| !is_authority(h)) {
        return Err(format!("redirect host_redirect {h:?} is not a host"));
    }
    let port = match x.port_redirect {
        0 => None,
        p => Some(
            u16::try_from(p)
                .map_err(|_| format!("redirect port_redirect {p}: not a port (1..=65535)"))?,
        ),
    };
    let path = match &x.path_rewrite_specifier {
        None => RedirectPath::Keep,
        Some(P::PathRedirect(p)) => {
            gw_proto::model::path_and_query(p)
                .map_err(|why| format!("redirect path_redirect {p:?}: {why}"))?;
            RedirectPath::Whole(p.clone())
        }
        Some(P::PrefixRewrite(with)) => {
            let (n, with) = prefix_replacement(path, with, "redirect prefix_rewrite")?;
            RedirectPath::Prefix(n, with)
        }
        Some(_) => {
            return Err(
                "redirect regex_rewrite (path_redirect and prefix_rewrite are supported)".into(),
            )
        }
    };
    let status = match Code::try_from(x.response_code) {
        Ok(Code::MovedPermanently) => StatusCode::MOVED_PERMANENTLY,
        Ok(Code::Found) => StatusCode::FOUND,
        Ok(Code::SeeOther) => StatusCode::SEE_OTHER,
        Ok(Code::TemporaryRedirect) => StatusCode::TEMPORARY_REDIRECT,
        Ok(Code::PermanentRedirect) => StatusCode::PERMANENT_REDIRECT,
        Err(_) => {
            return Err(format!(
                "redirect response_code {} (301, 302, 303, 307 and 308 are supported)",
                x.response_code
            ))
        }
    };
    Ok(Redirect {
        scheme,
        host,
        port,
        path,
        strip_query: x.strip_query,
        status,
        require_tls: false,
    })
}

/// A route answered by the proxy itself (`direct_response`).
fn direct_route(
    r: &rt::Route,
    d: &rt::DirectResponseAction,
    path: PathMatch,
    headers: Vec<HeaderCond>,
    stats: &dyn Fn(&str, &str) -> Arc<ObjStats>,
) -> Result<Route, RouteError> {
    use gw_proto::envoy::pb::envoy::config::core::v3::data_source::Specifier;
    let name = r.name.clone();
    let unsupported = |what: String| RouteError::Unsupported {
        route: name.clone(),
        what,
    };
    if d.body_format.is_some() {
        return Err(unsupported("a direct_response body_format".into()));
    }
    let status = u16::try_from(d.status)
        .ok()
        .and_then(|s| hyper::StatusCode::from_u16(s).ok())
        .filter(|s| (200..=599).contains(&s.as_u16()))
        .ok_or_else(|| unsupported(format!("direct_response status {}", d.status)))?;
    let body = match d.body.as_ref().and_then(|b| b.specifier.as_ref()) {
        None => bytes::Bytes::new(),
        Some(Specifier::InlineString(s)) => bytes::Bytes::from(s.clone()),
        Some(Specifier::InlineBytes(b)) => bytes::Bytes::from(b.clone()),
        Some(_) => return Err(unsupported("a direct_response body not inline".into())),
    };
    if std::str::from_utf8(&body).is_err() || body.len() > 4096 {
        return Err(unsupported(
            "a direct_response body that is not UTF-8 or is over 4 KiB".into(),
        ));
    }
    bare(r, path, headers, Target::Direct(status, body), stats)
}

/// The route a virtual host with `require_tls: ALL` is given first: every request, to `https`.
/// It has no name and counts nowhere (in Envoy no route is matched either).
fn require_tls_route() -> Route {
    let target = Target::Redirect(Box::new(Redirect::to_https()));
    let path = PathMatch::Prefix(String::new());
    bare(&rt::Route::default(), path, Vec::new(), target, &|_, _| {
        Arc::new(ObjStats::default())
    })
    .expect("a route without header changes compiles")
}

impl RouteTable {
    /// This table serves a TLS listener: `require_tls` is met by every request, so its
    /// redirects go.
    pub fn over_tls(&mut self) {
        for vh in &mut self.vhosts {
            vh.routes
                .retain(|r| !matches!(&r.target, Target::Redirect(x) if x.require_tls));
        }
    }

    /// Compiles a route configuration.
    pub fn compile(
        rc: &rt::RouteConfiguration,
        stats: &dyn Fn(&str, &str) -> Arc<ObjStats>,
    ) -> Result<RouteTable, RouteError> {
        let mut t = RouteTable::default();
        // Header changes are applied per route only.
        let headers_elsewhere = |name: &str, add: usize, remove: usize| {
            (add + remove > 0).then(|| RouteError::Unsupported {
                route: name.to_owned(),
                what: "headers to add or remove on a virtual host or route configuration".into(),
            })
        };
        if let Some(e) = headers_elsewhere(
            &rc.name,
            rc.request_headers_to_add.len() + rc.response_headers_to_add.len(),
            rc.request_headers_to_remove.len() + rc.response_headers_to_remove.len(),
        ) {
            return Err(e);
        }
        if let Some(what) = unfollowed_in_config(rc) {
            return Err(RouteError::Config {
                name: rc.name.clone(),
                what: what.into(),
            });
        }
        for vh in &rc.virtual_hosts {
            if let Some(what) = unfollowed_in_host(vh) {
                return Err(RouteError::Host {
                    name: vh.name.clone(),
                    what: what.into(),
                });
            }
            if let Some(e) = headers_elsewhere(
                &vh.name,
                vh.request_headers_to_add.len() + vh.response_headers_to_add.len(),
                vh.request_headers_to_remove.len() + vh.response_headers_to_remove.len(),
            ) {
                return Err(e);
            }
            let idx = t.vhosts.len();
            let routes = vh
                .routes
                .iter()
                .map(|r| compile_route(r, stats).map(Arc::new))
                .collect::<Result<_, _>>()?;
            let mut routes: Vec<Arc<Route>> = routes;
            use rt::virtual_host::TlsRequirementType as Tls;
            match Tls::try_from(vh.require_tls) {
                Ok(Tls::None) => {}
                // Before any route: Envoy redirects whatever the path.
                Ok(Tls::All) => routes.insert(0, Arc::new(require_tls_route())),
                _ => {
                    return Err(RouteError::Host {
                        name: vh.name.clone(),
                        what: "require_tls other than NONE and ALL".into(),
                    })
                }
            }
            t.any_local |= routes
                .iter()
                .any(|r| matches!(r.target, Target::Direct(..) | Target::Redirect(..)));
            t.vhosts.push(VirtualHost { routes });
            for d in &vh.domains {
                let d = d.to_ascii_lowercase();
                if d == "*" {
                    t.any.get_or_insert(idx);
                } else if let Some(s) = d.strip_prefix('*') {
                    t.suffixes.push((s.to_owned(), idx));
                } else if let Some(p) = d.strip_suffix('*') {
                    t.prefixes.push((p.to_owned(), idx));
                } else {
                    t.exact.entry(d).or_insert(idx);
                }
            }
        }
        t.suffixes.sort_by_key(|(s, _)| std::cmp::Reverse(s.len()));
        t.prefixes.sort_by_key(|(s, _)| std::cmp::Reverse(s.len()));
        Ok(t)
    }

    /// The virtual host for `host` as received (any case; a host that is not UTF-8 matches
    /// only `*`).
    fn vhost_for(&self, host: &[u8]) -> Option<&VirtualHost> {
        if self.exact.is_empty() && self.suffixes.is_empty() && self.prefixes.is_empty() {
            // Only `*` (or nothing): the host is not even read.
            return self.any.and_then(|i| self.vhosts.get(i));
        }
        let host = std::str::from_utf8(host).unwrap_or("");
        let lower;
        let host = if host.bytes().any(|b| b.is_ascii_uppercase()) {
            lower = host.to_ascii_lowercase();
            lower.as_str()
        } else {
            host
        };
        self.vhost(host)
    }

    fn vhost(&self, host: &str) -> Option<&VirtualHost> {
        let idx = self
            .exact
            .get(host)
            .copied()
            .or_else(|| {
                if self.exact.is_empty() {
                    return None;
                }
                // Envoy matches host:port literally first; then without the port.
                let bare = split_port(host).0;
                (bare != host)
                    .then(|| self.exact.get(bare).copied())
                    .flatten()
            })
            .or_else(|| {
                self.suffixes
                    .iter()
                    .find(|(s, _)| host.ends_with(s.as_str()) && host.len() > s.len())
                    .map(|x| x.1)
            })
            .or_else(|| {
                self.prefixes
                    .iter()
                    .find(|(p, _)| host.starts_with(p.as_str()) && host.len() > p.len())
                    .map(|x| x.1)
            })
            .or(self.any)?;
        self.vhosts.get(idx)
    }

    /// The first route matching the request.
    pub fn find(
        &self,
        host: &(impl AsRef<[u8]> + ?Sized),
        method: &str,
        path: &str,
        headers: &impl Headers,
    ) -> Option<&Arc<Route>> {
        let vh = self.vhost_for(host.as_ref())?;
        let path_only = path.split_once('?').map_or(path, |(p, _)| p);
        vh.routes.iter().find(|r| {
            let path_ok = match &r.path {
                PathMatch::Prefix(p) => path_only.starts_with(p.as_str()),
                PathMatch::Exact(p) => path_only == p,
                PathMatch::Regex(re) => re.is_match(path_only),
            };
            path_ok
                && r.headers.iter().all(|h| {
                    let value = if h.name == ":method" {
                        Some(method)
                    } else if h.name == ":authority" {
                        // Envoy's name for the host (`Host` over HTTP/1.1).
                        std::str::from_utf8(host.as_ref()).ok()
                    } else {
                        headers
                            .values(h.name.as_str())
                            .next()
                            .and_then(|v| std::str::from_utf8(v).ok())
                    };
                    let hit = match value {
                        None => !h.present,
                        Some(v) => h.present && h.how.matches(v),
                    };
                    hit != h.invert
                })
        })
    }

    /// Number of routes.
    pub fn len(&self) -> usize {
        let configured =
            |r: &&Arc<Route>| !matches!(&r.target, Target::Redirect(x) if x.require_tls);
        self.vhosts
            .iter()
            .map(|v| v.routes.iter().filter(configured).count())
            .sum()
    }

    /// Whether there are no routes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Target {
    /// The cluster for this request; `roll` is uniform in `0..u32::MAX`.
    pub fn pick(&self, roll: u32) -> &str {
        match self {
            Target::Cluster(c) => c,
            Target::Weighted(list, total) => {
                let x = ((u64::from(roll) * u64::from(*total)) >> 32) as u32;
                list.iter()
                    .find(|(_, acc)| x < *acc)
                    .or(list.last())
                    .map_or("", |(c, _)| c.as_str())
            }
            // Never asked: a direct response goes to no cluster.
            Target::Direct(..) | Target::Redirect(..) => "",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rt::redirect_action::{PathRewriteSpecifier as P, SchemeRewriteSpecifier as S};

    fn to(x: rt::RedirectAction, matched: &str) -> Redirect {
        redirect(&x, &PathMatch::Prefix(matched.into())).unwrap()
    }

    /// What gw-proxy would otherwise ignore, and which changes what a request gets, is NACKed
    /// by name: on the route configuration, a virtual host, a route, its match and its action.
    #[test]
    #[allow(deprecated)]
    fn what_is_not_followed_is_refused_by_name() {
        use gw_proto::envoy::pb::google::protobuf::{Duration as Pb, UInt32Value};
        type Change = Box<dyn Fn(&mut rt::RouteConfiguration)>;
        fn route(rc: &mut rt::RouteConfiguration) -> &mut rt::Route {
            &mut rc.virtual_hosts[0].routes[0]
        }
        fn action(rc: &mut rt::RouteConfiguration) -> &mut rt::RouteAction {
            match &mut route(rc).action {
                Some(rt::route::Action::Route(a)) => a,
                _ => unreachable!("a route action"),
            }
        }
        fn matches(rc: &mut rt::RouteConfiguration) -> &mut rt::RouteMatch {
            route(rc).r#match.as_mut().unwrap()
        }
        fn secs() -> Option<Pb> {
            Some(Pb {
                seconds: 1,
                nanos: 0,
            })
        }
        let base = || rt::RouteConfiguration {
            name: "rc".into(),
            virtual_hosts: vec![rt::VirtualHost {
                name: "vh".into(),
                domains: vec!["*".into()],
                routes: vec![crate::config::fixture::prefix_route("t/r", "/", "t/c")],
                ..Default::default()
            }],
            ..Default::default()
        };
        let stats = |_: &str, _: &str| Arc::new(ObjStats::default());
        assert!(RouteTable::compile(&base(), &stats).is_ok());
        let cases: Vec<(&str, Change)> = vec![
            (
                "route configuration rc: unsupported vhost_header",
                Box::new(|rc| rc.vhost_header = "x-host".into()),
            ),
            (
                "rc: unsupported internal_only_headers",
                Box::new(|rc| rc.internal_only_headers = vec!["x-i".into()]),
            ),
            (
                "rc: unsupported ignore_port_in_host_matching",
                Box::new(|rc| rc.ignore_port_in_host_matching = true),
            ),
            (
                "virtual host vh: unsupported retry_policy",
                Box::new(|rc| rc.virtual_hosts[0].retry_policy = Some(rt::RetryPolicy::default())),
            ),
            (
                "vh: unsupported include_request_attempt_count",
                Box::new(|rc| rc.virtual_hosts[0].include_request_attempt_count = true),
            ),
            (
                "vh: unsupported include_attempt_count_in_response",
                Box::new(|rc| rc.virtual_hosts[0].include_attempt_count_in_response = true),
            ),
            (
                "route t/r: unsupported match query_parameters",
                Box::new(|rc| {
                    matches(rc).query_parameters = vec![rt::QueryParameterMatcher::default()]
                }),
            ),
            (
                "t/r: unsupported match runtime_fraction",
                Box::new(|rc| matches(rc).runtime_fraction = Some(Default::default())),
            ),
            (
                "t/r: unsupported match grpc",
                Box::new(|rc| matches(rc).grpc = Some(Default::default())),
            ),
            (
                "t/r: unsupported header match treat_missing_header_as_empty",
                Box::new(|rc| {
                    matches(rc).headers = vec![rt::HeaderMatcher {
                        name: "x".into(),
                        treat_missing_header_as_empty: true,
                        ..Default::default()
                    }]
                }),
            ),
            (
                "t/r: unsupported request_mirror_policies",
                Box::new(|rc| action(rc).request_mirror_policies = vec![Default::default()]),
            ),
            (
                "t/r: unsupported cluster_not_found_response_code",
                Box::new(|rc| action(rc).cluster_not_found_response_code = 1),
            ),
            (
                "t/r: unsupported hedge_policy",
                Box::new(|rc| action(rc).hedge_policy = Some(Default::default())),
            ),
            (
                "t/r: unsupported max_grpc_timeout",
                Box::new(|rc| action(rc).max_grpc_timeout = secs()),
            ),
            (
                "t/r: unsupported max_internal_redirects",
                Box::new(|rc| action(rc).max_internal_redirects = Some(UInt32Value { value: 2 })),
            ),
            (
                "t/r: unsupported max_stream_duration",
                Box::new(|rc| action(rc).max_stream_duration = Some(Default::default())),
            ),
            (
                "t/r: unsupported more than one hash_policy",
                Box::new(|rc| {
                    action(rc).hash_policy = vec![Default::default(), Default::default()]
                }),
            ),
            (
                "t/r: unsupported hash_policy other than",
                Box::new(|rc| {
                    use rt::route_action::hash_policy::{Cookie, PolicySpecifier};
                    action(rc).hash_policy = vec![rt::route_action::HashPolicy {
                        policy_specifier: Some(PolicySpecifier::Cookie(Cookie {
                            name: "s".into(),
                            ttl: secs(),
                            ..Default::default()
                        })),
                        terminal: false,
                    }];
                }),
            ),
            (
                "t/r: unsupported typed_per_filter_config",
                Box::new(|rc| {
                    route(rc)
                        .typed_per_filter_config
                        .insert("envoy.filters.http.cors".into(), Default::default());
                }),
            ),
        ];
        for (want, change) in cases {
            let mut rc = base();
            change(&mut rc);
            let got = RouteTable::compile(&rc, &stats).unwrap_err().to_string();
            assert!(got.contains(want), "{want}: {got}");
        }
    }

    /// Locations as a stock Envoy 1.40 builds them: the plaintext cases were checked against
    /// one (`tests/tests/redirect.rs` checks most again); those over TLS or with a request's
    /// own scheme follow Envoy's port rule as its source states it.
    #[test]
    fn a_location_is_built_as_envoy_builds_it() {
        let https = to(
            rt::RedirectAction {
                scheme_rewrite_specifier: Some(S::HttpsRedirect(true)),
                ..Default::default()
            },
            "/",
        );
        let http = to(
            rt::RedirectAction {
                scheme_rewrite_specifier: Some(S::SchemeRedirect("http".into())),
                ..Default::default()
            },
            "/",
        );
        let ws = to(
            rt::RedirectAction {
                scheme_rewrite_specifier: Some(S::SchemeRedirect("ws".into())),
                ..Default::default()
            },
            "/",
        );
        let port = to(
            rt::RedirectAction {
                port_redirect: 8443,
                ..Default::default()
            },
            "/",
        );
        let host = |h: &str| {
            to(
                rt::RedirectAction {
                    host_redirect: h.into(),
                    ..Default::default()
                },
                "/",
            )
        };
        let path = |p: &str, strip_query| {
            to(
                rt::RedirectAction {
                    path_rewrite_specifier: Some(P::PathRedirect(p.into())),
                    strip_query,
                    ..Default::default()
                },
                "/",
            )
        };
        let prefix = to(
            rt::RedirectAction {
                path_rewrite_specifier: Some(P::PrefixRewrite("/next/".into())),
                ..Default::default()
            },
            "/pre/",
        );
        let all = to(
            rt::RedirectAction {
                scheme_rewrite_specifier: Some(S::SchemeRedirect("https".into())),
                host_redirect: "z.com".into(),
                port_redirect: 9,
                path_rewrite_specifier: Some(P::PathRedirect("/p".into())),
                ..Default::default()
            },
            "/",
        );
        let cases: [(&Redirect, bool, &str, &str, &str); 17] = [
            (&https, false, "a.com", "/x?q=1", "https://a.com/x?q=1"),
            (&https, false, "a.com:8080", "/x", "https://a.com:8080/x"),
            // The old scheme's default port goes when the scheme changes.
            (&https, false, "a.com:80", "/x", "https://a.com/x"),
            (&https, false, "a.com:443", "/x", "https://a.com:443/x"),
            (&https, false, "[::1]:80", "/x", "https://[::1]/x"),
            (&ws, false, "a.com:80", "/x", "ws://a.com/x"),
            (&http, false, "a.com:80", "/x", "http://a.com:80/x"),
            (&http, true, "a.com:443", "/x", "http://a.com/x"),
            (&port, false, "a.com:8080", "/x", "http://a.com:8443/x"),
            (&port, false, "[::1]:8080", "/x", "http://[::1]:8443/x"),
            (&host("b.com"), false, "a.com:8080", "/x", "http://b.com/x"),
            (&host("b.com:99"), false, "a.com", "/x", "http://b.com:99/x"),
            // A path with a query of its own replaces the request's; without, keeps it.
            (
                &path("/new?x=1", false),
                false,
                "a.com",
                "/p?q=1",
                "http://a.com/new?x=1",
            ),
            (
                &path("/new", false),
                false,
                "a.com",
                "/p?q=1",
                "http://a.com/new?q=1",
            ),
            (
                &path("/new", true),
                false,
                "a.com",
                "/p?q=1",
                "http://a.com/new",
            ),
            (
                &prefix,
                true,
                "a.com",
                "/pre/a/b?q",
                "https://a.com/next/a/b?q",
            ),
            (&all, false, "a.com:5", "/all?q", "https://z.com:9/p?q"),
        ];
        for (x, tls, host, target, want) in cases {
            assert_eq!(
                x.location(tls, None, host, target),
                want,
                "{x:?} {host} {target}"
            );
        }
        // The scheme a request names (HTTP/2's `:scheme`) is kept; the port is dropped by the
        // connection's scheme, as Envoy's x-forwarded-proto rule does.
        assert_eq!(
            prefix.location(false, Some("https"), "a.com:80", "/pre/x"),
            "https://a.com/next/x"
        );
        assert_eq!(
            prefix.location(true, Some("https"), "a.com:443", "/pre/x"),
            "https://a.com:443/next/x"
        );
        // `require_tls` keeps the host as it is, port and all.
        let tls = Redirect::to_https();
        assert_eq!(
            tls.location(false, None, "secure.test:80", "/a?b=1"),
            "https://secure.test:80/a?b=1"
        );
        // Envoy's prefix rewrite of an exact match replaces the whole path.
        let exact = redirect(
            &rt::RedirectAction {
                path_rewrite_specifier: Some(P::PrefixRewrite("/e2".into())),
                ..Default::default()
            },
            &PathMatch::Exact("/exact".into()),
        )
        .unwrap();
        assert_eq!(
            exact.location(false, None, "a.com", "/exact?z"),
            "http://a.com/e2?z"
        );
        assert!(redirect(
            &rt::RedirectAction {
                path_rewrite_specifier: Some(P::PrefixRewrite("/e2".into())),
                ..Default::default()
            },
            &PathMatch::Regex(Regex::new("/a.*").unwrap()),
        )
        .is_err());
    }
}
