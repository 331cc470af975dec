//! RouteConfiguration: one virtual host per distinct host, routes ordered by priority and
//! specificity, matches on path / headers / `:method`, single or weighted clusters, timeout, retry
//! and hash policy.

use super::{cluster_name, duration, resource, route_name, Model};
use crate::xds::snapshot::Resource;
use gw_proto::envoy::pb::envoy::config::route::v3::{
    header_matcher, redirect_action, route, route_action, route_match, virtual_host,
    weighted_cluster, HeaderMatcher, RedirectAction, RetryPolicy as EnvoyRetry, Route, RouteAction,
    RouteConfiguration, RouteMatch as EnvoyMatch, VirtualHost, WeightedCluster,
};
use gw_proto::envoy::pb::envoy::r#type::matcher::v3::{
    string_matcher, RegexMatcher, StringMatcher,
};
use gw_proto::envoy::pb::google::protobuf::{BoolValue, UInt32Value};
use gw_proto::model::{HashOn, HeaderMatch, LbPolicy, RouteSpec};
use prost::encoding::{encode_key, encode_varint, WireType};
use prost::Message;
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

/// Encoded `Route` messages by (tenant, name), with the inputs they were built from: a write
/// re-encodes only the routes it changed; the RouteConfiguration is assembled from bytes.
pub type RouteCache = HashMap<(String, String), (RouteSpec, bool, Arc<Vec<u8>>)>;

/// The RouteConfiguration named `name` holding every route of every tenant.
pub fn route_configuration(name: &str, model: &Model<'_>, cache: &mut RouteCache) -> Resource {
    let mut routes: Vec<(&str, &str, &RouteSpec)> =
        model.routes.iter().map(|(&(t, n), r)| (t, n, *r)).collect();
    routes.sort_by_key(|(t, n, r)| order_key(t, n, r));

    // Every distinct host gets a virtual host with the routes that can match it; `*` takes the rest.
    let hosts: BTreeSet<&str> = routes
        .iter()
        .flat_map(|(_, _, r)| r.match_.hosts.iter().map(String::as_str))
        .collect();
    let encoded: Vec<Arc<Vec<u8>>> = routes
        .iter()
        .map(|(t, n, r)| encoded_route(t, n, r, model, cache))
        .collect();
    let pick = |keep: &dyn Fn(&RouteSpec) -> bool| {
        routes
            .iter()
            .zip(&encoded)
            .filter(|((_, _, r), _)| keep(r))
            .map(|(_, e)| e.clone())
            .collect::<Vec<_>>()
    };
    let mut virtual_hosts: Vec<Vec<u8>> = hosts
        .iter()
        .map(|h| virtual_host(h, &pick(&|r| serves(r, h))))
        .collect();
    virtual_hosts.push(virtual_host("*", &pick(&|r| r.match_.hosts.is_empty())));

    let mut refs: BTreeSet<String> = BTreeSet::new();
    let mut origin = Vec::new();
    let mut hints = Vec::new();
    for (t, n, r) in &routes {
        let object = format!("route/{t}/{n}");
        refs.extend(r.clusters().map(|c| cluster_name(t, c)));
        hints.push((route_name(t, n), object.clone()));
        hints.extend(r.clusters().map(|c| (cluster_name(t, c), object.clone())));
        let regexes = r.match_.path_regex.iter();
        let regexes = regexes.chain(r.match_.headers.iter().filter_map(|h| h.regex.as_ref()));
        hints.extend(regexes.map(|re| (re.clone(), object.clone())));
        origin.push(object);
    }
    // Concatenating length-delimited entries is exactly how protobuf encodes a repeated field.
    let mut value = RouteConfiguration {
        name: name.to_owned(),
        ..Default::default()
    }
    .encode_to_vec();
    for vh in &virtual_hosts {
        append_field(&mut value, 2, vh);
    }
    let body = gw_proto::envoy::pb::google::protobuf::Any {
        type_url: <RouteConfiguration as prost::Name>::type_url(),
        value,
    };
    let mut res = resource(name.to_owned(), body, origin, refs.into_iter().collect());
    res.hints = hints;
    res
}

/// Lower priority first, then exact path, regex, longest prefix; more header/method conditions
/// first; then tenant/name for a stable order.
fn order_key(tenant: &str, name: &str, r: &RouteSpec) -> (i32, u8, usize, usize, String) {
    let m = &r.match_;
    let (rank, len) = match (&m.path, &m.path_regex, &m.path_prefix) {
        (Some(p), _, _) => (0, p.len()),
        (_, Some(_), _) => (1, 0),
        (_, _, Some(p)) => (2, p.len()),
        _ => (3, 0),
    };
    let conditions = m.headers.len() + usize::from(!m.methods.is_empty());
    (
        r.priority,
        rank,
        usize::MAX - len,
        usize::MAX - conditions,
        route_name(tenant, name),
    )
}

/// Whether a route takes requests for virtual host `host` (itself possibly `*.suffix`). A
/// `host:port` virtual host also takes the routes of the bare host: it is tried first for requests
/// with that port, and must not hide the bare host's routes from them.
fn serves(r: &RouteSpec, host: &str) -> bool {
    let bare = host
        .rsplit_once(':')
        .filter(|(h, p)| !h.is_empty() && !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
        .map(|(h, _)| h);
    let covers = |host: &str| {
        r.match_.hosts.iter().any(|h| {
            h == host
                || h.strip_prefix('*')
                    .is_some_and(|suffix| host.ends_with(suffix) && host.len() > suffix.len())
        })
    };
    r.match_.hosts.is_empty() || covers(host) || bare.is_some_and(covers)
}

/// Appends field `tag` holding the encoded message `bytes`.
fn append_field(buf: &mut Vec<u8>, tag: u32, bytes: &[u8]) {
    encode_key(tag, WireType::LengthDelimited, buf);
    encode_varint(bytes.len() as u64, buf);
    buf.extend_from_slice(bytes);
}

/// An encoded VirtualHost for `host` with the encoded routes.
fn virtual_host(host: &str, routes: &[Arc<Vec<u8>>]) -> Vec<u8> {
    let mut buf = VirtualHost {
        name: host.to_owned(),
        domains: vec![host.to_owned()],
        ..Default::default()
    }
    .encode_to_vec();
    for r in routes {
        append_field(&mut buf, 3, r);
    }
    buf
}

/// A route's encoding, from the cache when its spec (and its clusters' hashing) is unchanged.
fn encoded_route(
    tenant: &str,
    name: &str,
    r: &RouteSpec,
    model: &Model<'_>,
    cache: &mut RouteCache,
) -> Arc<Vec<u8>> {
    // ip_hash clusters hash on the source address unless the route says otherwise.
    let hashed = r.clusters().any(|c| {
        model
            .clusters
            .get(&(tenant, c))
            .is_some_and(|c| c.lb == LbPolicy::IpHash)
    });
    let key = (tenant.to_owned(), name.to_owned());
    if let Some((spec, h, bytes)) = cache.get(&key) {
        if spec == r && *h == hashed {
            return bytes.clone();
        }
    }
    let bytes = Arc::new(route(tenant, name, r, hashed).encode_to_vec());
    cache.insert(key, (r.clone(), hashed, bytes.clone()));
    bytes
}

fn route(tenant: &str, name: &str, r: &RouteSpec, hashed: bool) -> Route {
    Route {
        name: route_name(tenant, name),
        r#match: Some(route_match(r)),
        action: Some(match (&r.direct_response, &r.redirect) {
            (Some(d), _) => route::Action::DirectResponse(direct_response(d)),
            (None, Some(x)) => route::Action::Redirect(redirect(x)),
            (None, None) => route::Action::Route(route_action(tenant, r, hashed)),
        }),
        request_headers_to_add: headers_to_add(&r.request_headers),
        request_headers_to_remove: r.request_headers.remove.clone(),
        response_headers_to_add: headers_to_add(&r.response_headers),
        response_headers_to_remove: r.response_headers.remove.clone(),
        ..Default::default()
    }
}

/// Envoy's direct response: the status, and the body inline (none when empty).
fn direct_response(
    d: &gw_proto::model::DirectResponse,
) -> gw_proto::envoy::pb::envoy::config::route::v3::DirectResponseAction {
    use gw_proto::envoy::pb::envoy::config::core::v3::{data_source, DataSource};
    gw_proto::envoy::pb::envoy::config::route::v3::DirectResponseAction {
        status: u32::from(d.status),
        body: (!d.body.is_empty()).then(|| DataSource {
            specifier: Some(data_source::Specifier::InlineString(d.body.clone())),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Envoy's redirect: what the model sets, the rest left as the request has it.
fn redirect(x: &gw_proto::model::Redirect) -> RedirectAction {
    use redirect_action::{PathRewriteSpecifier as P, RedirectResponseCode as Code};
    RedirectAction {
        scheme_rewrite_specifier: x
            .scheme
            .clone()
            .map(redirect_action::SchemeRewriteSpecifier::SchemeRedirect),
        host_redirect: x.host.clone().unwrap_or_default(),
        port_redirect: x.port.map_or(0, u32::from),
        path_rewrite_specifier: match (&x.path, &x.prefix) {
            (Some(p), _) => Some(P::PathRedirect(p.clone())),
            (None, Some(p)) => Some(P::PrefixRewrite(p.clone())),
            (None, None) => None,
        },
        response_code: match x.code {
            302 => Code::Found,
            303 => Code::SeeOther,
            307 => Code::TemporaryRedirect,
            308 => Code::PermanentRedirect,
            _ => Code::MovedPermanently,
        } as i32,
        strip_query: x.strip_query,
    }
}

/// The RouteConfiguration of a listener that sends every request to `https`: one virtual host
/// for every domain that requires TLS (Envoy answers its `301` before matching any route).
pub fn https_redirect_configuration(name: &str) -> Resource {
    let rc = RouteConfiguration {
        name: name.to_owned(),
        virtual_hosts: vec![VirtualHost {
            name: "https-redirect".into(),
            domains: vec!["*".into()],
            require_tls: virtual_host::TlsRequirementType::All as i32,
            ..Default::default()
        }],
        ..Default::default()
    };
    resource(
        name.to_owned(),
        super::any(&rc),
        vec![format!("listener/{name}")],
        Vec::new(),
    )
}

/// Envoy's headers to add for `ops`: `set` replacing (`OVERWRITE_IF_EXISTS_OR_ADD`), `add` as
/// one more line (`APPEND_IF_EXISTS_OR_ADD`). Values hold no `%` (the model refuses it), so
/// Envoy's substitution reads them as they are.
fn headers_to_add(
    ops: &gw_proto::model::HeaderOps,
) -> Vec<gw_proto::envoy::pb::envoy::config::core::v3::HeaderValueOption> {
    use gw_proto::envoy::pb::envoy::config::core::v3::{
        header_value_option::HeaderAppendAction, HeaderValue, HeaderValueOption,
    };
    let option = |(k, v): (&String, &String), action: HeaderAppendAction| HeaderValueOption {
        header: Some(HeaderValue {
            key: k.clone(),
            value: v.clone(),
            ..Default::default()
        }),
        append_action: action as i32,
        // An empty value is sent as one (Envoy would drop it otherwise).
        keep_empty_value: true,
        ..Default::default()
    };
    ops.set
        .iter()
        .map(|kv| option(kv, HeaderAppendAction::OverwriteIfExistsOrAdd))
        .chain(
            ops.add
                .iter()
                .map(|kv| option(kv, HeaderAppendAction::AppendIfExistsOrAdd)),
        )
        .collect()
}

fn route_match(r: &RouteSpec) -> EnvoyMatch {
    let m = &r.match_;
    let path = if let Some(p) = &m.path {
        route_match::PathSpecifier::Path(p.clone())
    } else if let Some(re) = &m.path_regex {
        route_match::PathSpecifier::SafeRegex(regex(re))
    } else {
        route_match::PathSpecifier::Prefix(m.path_prefix.clone().unwrap_or_else(|| "/".into()))
    };
    let mut headers: Vec<HeaderMatcher> = m.headers.iter().map(header).collect();
    if !m.methods.is_empty() {
        headers.push(HeaderMatcher {
            name: ":method".into(),
            header_match_specifier: Some(header_matcher::HeaderMatchSpecifier::StringMatch(
                StringMatcher {
                    match_pattern: Some(string_matcher::MatchPattern::SafeRegex(regex(
                        &m.methods.join("|"),
                    ))),
                    ..Default::default()
                },
            )),
            ..Default::default()
        });
    }
    EnvoyMatch {
        path_specifier: Some(path),
        headers,
        ..Default::default()
    }
}

fn regex(re: &str) -> RegexMatcher {
    RegexMatcher {
        regex: re.to_owned(),
        ..Default::default()
    }
}

fn header(h: &HeaderMatch) -> HeaderMatcher {
    use header_matcher::HeaderMatchSpecifier as S;
    let string = |p| {
        S::StringMatch(StringMatcher {
            match_pattern: Some(p),
            ..Default::default()
        })
    };
    let spec = if let Some(v) = &h.exact {
        string(string_matcher::MatchPattern::Exact(v.clone()))
    } else if let Some(v) = &h.prefix {
        string(string_matcher::MatchPattern::Prefix(v.clone()))
    } else if let Some(v) = &h.regex {
        string(string_matcher::MatchPattern::SafeRegex(regex(v)))
    } else {
        S::PresentMatch(h.present.unwrap_or(true))
    };
    HeaderMatcher {
        name: h.name.clone(),
        header_match_specifier: Some(spec),
        ..Default::default()
    }
}

fn route_action(tenant: &str, r: &RouteSpec, hashed: bool) -> RouteAction {
    let clusters = if let Some(c) = &r.cluster {
        route_action::ClusterSpecifier::Cluster(cluster_name(tenant, c))
    } else {
        route_action::ClusterSpecifier::WeightedClusters(WeightedCluster {
            clusters: r
                .weighted_clusters
                .iter()
                .map(|w| weighted_cluster::ClusterWeight {
                    name: cluster_name(tenant, &w.cluster),
                    weight: Some(UInt32Value { value: w.weight }),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        })
    };
    let retry_policy = r.retry.as_ref().map(|p| EnvoyRetry {
        retry_on: p.on.join(","),
        num_retries: Some(UInt32Value { value: p.attempts }),
        per_try_timeout: p.per_try_timeout.map(duration),
        ..Default::default()
    });
    let hash_on = match &r.hash_on {
        Some(h) => HashOn::parse(h),
        None if hashed => Some(HashOn::SourceIp),
        None => None,
    };
    RouteAction {
        cluster_specifier: Some(clusters),
        timeout: Some(duration(r.timeout)),
        idle_timeout: r.idle_timeout.map(duration),
        upgrade_configs: r
            .upgrades
            .iter()
            .map(|u| route_action::UpgradeConfig {
                upgrade_type: u.clone(),
                // On the route alone: the connection manager lists no upgrade, so a route
                // without one refuses it (Envoy's 403).
                enabled: Some(BoolValue { value: true }),
                ..Default::default()
            })
            .collect(),
        retry_policy,
        hash_policy: hash_on.map(hash_policy).into_iter().collect(),
        prefix_rewrite: r
            .rewrite
            .as_ref()
            .map(|w| w.prefix.clone())
            .unwrap_or_default(),
        host_rewrite_specifier: r
            .rewrite
            .as_ref()
            .and_then(|w| w.host.clone())
            .map(route_action::HostRewriteSpecifier::HostRewriteLiteral),
        ..Default::default()
    }
}

fn hash_policy(h: HashOn) -> route_action::HashPolicy {
    use route_action::hash_policy::{ConnectionProperties, Cookie, Header, PolicySpecifier};
    let spec = match h {
        HashOn::SourceIp => {
            PolicySpecifier::ConnectionProperties(ConnectionProperties { source_ip: true })
        }
        HashOn::Header(name) => PolicySpecifier::Header(Header {
            header_name: name,
            ..Default::default()
        }),
        HashOn::Cookie(name) => PolicySpecifier::Cookie(Cookie {
            name,
            ..Default::default()
        }),
    };
    route_action::HashPolicy {
        policy_specifier: Some(spec),
        terminal: false,
    }
}

#[cfg(test)]
mod tests {
    use super::{redirect, route_action, serves};
    use gw_proto::model::RouteSpec;

    fn route(hosts: &[&str]) -> RouteSpec {
        let mut r = RouteSpec::default();
        r.match_.hosts = hosts.iter().map(|h| h.to_string()).collect();
        r
    }

    #[test]
    fn a_host_port_virtual_host_keeps_the_bare_hosts_routes() {
        let exact = route(&["api.globex.test"]);
        let wild = route(&["*.globex.test"]);
        let any = route(&[]);
        let with_port = route(&["api.globex.test:8080"]);
        for (r, host, ok) in [
            (&exact, "api.globex.test", true),
            (&exact, "api.globex.test:8080", true),
            (&wild, "api.globex.test:8080", true),
            (&any, "api.globex.test:8080", true),
            (&with_port, "api.globex.test:8080", true),
            (&with_port, "api.globex.test", false),
            (&exact, "api.globex.test:http", false),
            (&exact, "other.test:8080", false),
        ] {
            assert_eq!(serves(r, host), ok, "{:?} serving {host}", r.match_.hosts);
        }
    }

    #[test]
    fn a_rewrite_is_envoys_prefix_rewrite() {
        let mut r = route(&[]);
        r.cluster = Some("svc".into());
        assert_eq!(route_action("acme", &r, false).prefix_rewrite, "");
        r.rewrite = Some(gw_proto::model::Rewrite {
            prefix: "/v2/".into(),
            host: None,
        });
        let a = route_action("acme", &r, false);
        assert_eq!(
            (a.prefix_rewrite.as_str(), a.host_rewrite_specifier),
            ("/v2/", None)
        );
        r.rewrite = Some(gw_proto::model::Rewrite {
            prefix: String::new(),
            host: Some("users.internal:8080".into()),
        });
        let a = route_action("acme", &r, false);
        assert_eq!(a.prefix_rewrite, "");
        assert_eq!(
            a.host_rewrite_specifier,
            Some(
                super::route_action::HostRewriteSpecifier::HostRewriteLiteral(
                    "users.internal:8080".into()
                )
            )
        );
    }

    #[test]
    fn a_redirect_is_envoys_redirect_action() {
        use super::redirect_action::{PathRewriteSpecifier as P, SchemeRewriteSpecifier as S};
        use gw_proto::model::Redirect;
        let all = redirect(&Redirect {
            scheme: Some("https".into()),
            host: Some("new.example.com".into()),
            port: Some(8443),
            path: Some("/p?v=2".into()),
            strip_query: true,
            code: 307,
            ..Redirect::default()
        });
        assert_eq!(
            all.scheme_rewrite_specifier,
            Some(S::SchemeRedirect("https".into()))
        );
        assert_eq!(
            (all.host_redirect.as_str(), all.port_redirect),
            ("new.example.com", 8443)
        );
        assert_eq!(
            all.path_rewrite_specifier,
            Some(P::PathRedirect("/p?v=2".into()))
        );
        assert!(all.strip_query);
        assert_eq!(all.response_code, 3, "TEMPORARY_REDIRECT");
        // Unset parts stay unset: Envoy keeps the request's.
        let prefix = redirect(&Redirect {
            prefix: Some("/new/".into()),
            ..Redirect::default()
        });
        assert_eq!(prefix.scheme_rewrite_specifier, None);
        assert_eq!(
            (prefix.host_redirect.as_str(), prefix.port_redirect),
            ("", 0)
        );
        assert_eq!(
            prefix.path_rewrite_specifier,
            Some(P::PrefixRewrite("/new/".into()))
        );
        assert_eq!(prefix.response_code, 0, "MOVED_PERMANENTLY");
    }

    #[test]
    fn an_https_redirect_listener_requires_tls_on_every_host() {
        use gw_proto::envoy::pb::envoy::config::route::v3::RouteConfiguration;
        use prost::Message;
        let res = super::https_redirect_configuration("plain");
        let rc = RouteConfiguration::decode(res.body.value.as_slice()).unwrap();
        assert_eq!(rc.name, "plain");
        assert_eq!(rc.virtual_hosts.len(), 1);
        let vh = &rc.virtual_hosts[0];
        assert_eq!(vh.domains, ["*"]);
        assert_eq!(vh.require_tls, 2, "ALL");
        assert!(vh.routes.is_empty());
        assert_eq!(res.origin, ["listener/plain"]);
    }

    #[test]
    fn a_routes_upgrades_are_enabled_on_its_route_action() {
        let mut r = route(&[]);
        r.cluster = Some("svc".into());
        assert!(route_action("acme", &r, false).upgrade_configs.is_empty());
        r.upgrades = vec!["websocket".into(), "spdy/3.1".into()];
        let a = route_action("acme", &r, false);
        let got: Vec<_> = a
            .upgrade_configs
            .iter()
            .map(|u| (u.upgrade_type.as_str(), u.enabled.map(|b| b.value)))
            .collect();
        assert_eq!(got, [("websocket", Some(true)), ("spdy/3.1", Some(true))]);
    }
}
