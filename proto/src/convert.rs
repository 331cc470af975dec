//! Conversion between the domain [`model`](crate::model) and the `gateway.v1` messages.
//!
//! proto3 cannot tell "unset" from zero, so a zero number or an unset message means "the default"
//! (DESIGN.md's defaults, as in [`model`](crate::model)). Conversions from protobuf report the offending
//! field the same way validation does.

use crate::gateway::v1 as pb;
use crate::model::{self, FieldError, Kind, Meta, Object, Spec};
use std::time::Duration;

/// `Duration` → protobuf.
pub fn duration_to_pb(d: Duration) -> prost_types::Duration {
    prost_types::Duration {
        seconds: d.as_secs() as i64,
        nanos: d.subsec_nanos() as i32,
    }
}

/// protobuf → `Duration`; negative durations are refused.
pub fn duration_from_pb(
    field: &str,
    d: Option<&prost_types::Duration>,
) -> Result<Option<Duration>, FieldError> {
    let Some(d) = d else { return Ok(None) };
    if d.seconds < 0 || d.nanos < 0 {
        return Err(FieldError::new(field, "must be > 0"));
    }
    Ok(Some(Duration::new(d.seconds as u64, d.nanos as u32)))
}

/// Milliseconds since the epoch → protobuf timestamp.
pub fn ts_to_pb(ms: i64) -> Option<prost_types::Timestamp> {
    (ms != 0).then(|| prost_types::Timestamp {
        seconds: ms.div_euclid(1000),
        nanos: (ms.rem_euclid(1000) * 1_000_000) as i32,
    })
}

/// Protobuf timestamp → milliseconds since the epoch.
pub fn ts_from_pb(ts: Option<&prost_types::Timestamp>) -> i64 {
    ts.map_or(0, |t| t.seconds * 1000 + i64::from(t.nanos) / 1_000_000)
}

fn or<T: PartialEq + Default>(v: T, default: T) -> T {
    if v == T::default() {
        default
    } else {
        v
    }
}

/// Metadata → protobuf.
pub fn meta_to_pb(m: &Meta) -> pb::ObjectMeta {
    pb::ObjectMeta {
        name: m.name.clone(),
        tenant: m.tenant.clone(),
        resource_version: m.resource_version,
        created_revision: m.created_revision,
        created_at: ts_to_pb(m.created_at_ms),
        updated_at: ts_to_pb(m.updated_at_ms),
        labels: m
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    }
}

/// Protobuf → metadata.
pub fn meta_from_pb(m: Option<&pb::ObjectMeta>) -> Meta {
    let Some(m) = m else { return Meta::default() };
    Meta {
        name: m.name.clone(),
        tenant: m.tenant.clone(),
        labels: m
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        resource_version: m.resource_version,
        created_revision: m.created_revision,
        created_at_ms: ts_from_pb(m.created_at.as_ref()),
        updated_at_ms: ts_from_pb(m.updated_at.as_ref()),
    }
}

/// Strategy → protobuf enum.
pub fn lb_to_pb(lb: model::LbPolicy) -> pb::LbPolicy {
    use model::LbPolicy as L;
    match lb {
        L::RoundRobin => pb::LbPolicy::RoundRobin,
        L::Weighted => pb::LbPolicy::Weighted,
        L::LeastConn => pb::LbPolicy::LeastConn,
        L::IpHash => pb::LbPolicy::IpHash,
        L::ResponseTime => pb::LbPolicy::ResponseTime,
        L::Availability => pb::LbPolicy::Availability,
    }
}

fn lb_from_pb(v: i32) -> Result<model::LbPolicy, FieldError> {
    use model::LbPolicy as L;
    Ok(match pb::LbPolicy::try_from(v) {
        Ok(pb::LbPolicy::Unspecified | pb::LbPolicy::RoundRobin) => L::RoundRobin,
        Ok(pb::LbPolicy::Weighted) => L::Weighted,
        Ok(pb::LbPolicy::LeastConn) => L::LeastConn,
        Ok(pb::LbPolicy::IpHash) => L::IpHash,
        Ok(pb::LbPolicy::ResponseTime) => L::ResponseTime,
        Ok(pb::LbPolicy::Availability) => L::Availability,
        Err(_) => return Err(FieldError::new("spec.lb", format!("unknown strategy {v}"))),
    })
}

/// Cluster spec → protobuf.
pub fn cluster_spec_to_pb(c: &model::ClusterSpec) -> pb::ClusterSpec {
    pb::ClusterSpec {
        lb: lb_to_pb(c.lb) as i32,
        connect_timeout: Some(duration_to_pb(c.connect_timeout)),
        endpoints: c
            .endpoints
            .iter()
            .map(|e| pb::StaticEndpoint {
                address: e.address.clone(),
                port: e.port,
                weight: e.weight,
                metadata: e
                    .metadata
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            })
            .collect(),
        health_check: c.health_check.as_ref().map(|h| pb::HealthCheck {
            path: h.path.clone().unwrap_or_default(),
            interval: Some(duration_to_pb(h.interval)),
            timeout: Some(duration_to_pb(h.timeout)),
            healthy_threshold: h.healthy_threshold,
            unhealthy_threshold: h.unhealthy_threshold,
            expected_statuses: h.expected_statuses.clone(),
            host: h.host.clone().unwrap_or_default(),
        }),
        circuit_breaker: Some(pb::CircuitBreaker {
            failure_rate_threshold: c.circuit_breaker.failure_rate_threshold,
            consecutive_failures: c.circuit_breaker.consecutive_failures,
            half_open_successes: c.circuit_breaker.half_open_successes,
            open_timeout: Some(duration_to_pb(c.circuit_breaker.open_timeout)),
            minimum_requests: c.circuit_breaker.minimum_requests,
            fail_on: c.circuit_breaker.fail_on.clone(),
        }),
        limits: Some(pb::Limits {
            max_connections: c.limits.max_connections,
            max_pending_requests: c.limits.max_pending_requests,
            max_requests: c.limits.max_requests,
            max_retries: c.limits.max_retries,
        }),
        fallback_cluster: c.fallback_cluster.clone().unwrap_or_default(),
        kubernetes: c.kubernetes.as_ref().map(|k| pb::KubernetesDiscovery {
            namespace: k.namespace.clone(),
            service: k.service.clone(),
            port: k.port.clone(),
        }),
        protocol: match c.protocol {
            model::UpstreamProtocol::Http1 => String::new(),
            p => p.as_str().to_owned(),
        },
        tls: c.tls.as_ref().map(|t| pb::UpstreamTls {
            sni: t.sni.clone(),
            ca: t.ca.clone(),
            insecure_skip_verify: t.insecure_skip_verify,
        }),
    }
}

/// Protobuf → cluster spec; zero values take the defaults.
pub fn cluster_spec_from_pb(c: Option<&pb::ClusterSpec>) -> Result<model::ClusterSpec, FieldError> {
    let d = model::ClusterSpec::default();
    let Some(c) = c else { return Ok(d) };
    let hc = match &c.health_check {
        None => None,
        Some(h) => {
            let dh = model::HealthCheck::default();
            Some(model::HealthCheck {
                path: (!h.path.is_empty()).then(|| h.path.clone()),
                interval: duration_from_pb("spec.healthCheck.interval", h.interval.as_ref())?
                    .unwrap_or(dh.interval),
                timeout: duration_from_pb("spec.healthCheck.timeout", h.timeout.as_ref())?
                    .unwrap_or(dh.timeout),
                healthy_threshold: or(h.healthy_threshold, dh.healthy_threshold),
                unhealthy_threshold: or(h.unhealthy_threshold, dh.unhealthy_threshold),
                expected_statuses: h.expected_statuses.clone(),
                host: (!h.host.is_empty()).then(|| h.host.clone()),
            })
        }
    };
    let cb = match &c.circuit_breaker {
        None => d.circuit_breaker.clone(),
        Some(b) => {
            let db = &d.circuit_breaker;
            model::CircuitBreaker {
                failure_rate_threshold: if b.failure_rate_threshold == 0.0 {
                    db.failure_rate_threshold
                } else {
                    b.failure_rate_threshold
                },
                consecutive_failures: or(b.consecutive_failures, db.consecutive_failures),
                half_open_successes: or(b.half_open_successes, db.half_open_successes),
                open_timeout: duration_from_pb(
                    "spec.circuitBreaker.openTimeout",
                    b.open_timeout.as_ref(),
                )?
                .unwrap_or(db.open_timeout),
                minimum_requests: or(b.minimum_requests, db.minimum_requests),
                fail_on: if b.fail_on.is_empty() {
                    db.fail_on.clone()
                } else {
                    b.fail_on.clone()
                },
            }
        }
    };
    let limits = match &c.limits {
        None => d.limits.clone(),
        Some(l) => model::Limits {
            max_connections: or(l.max_connections, d.limits.max_connections),
            max_pending_requests: or(l.max_pending_requests, d.limits.max_pending_requests),
            max_requests: or(l.max_requests, d.limits.max_requests),
            max_retries: or(l.max_retries, d.limits.max_retries),
        },
    };
    Ok(model::ClusterSpec {
        lb: lb_from_pb(c.lb)?,
        connect_timeout: duration_from_pb("spec.connectTimeout", c.connect_timeout.as_ref())?
            .unwrap_or(d.connect_timeout),
        endpoints: c
            .endpoints
            .iter()
            .map(|e| model::StaticEndpoint {
                address: e.address.clone(),
                port: e.port,
                weight: or(e.weight, 1),
                metadata: e
                    .metadata
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            })
            .collect(),
        health_check: hc,
        circuit_breaker: cb,
        limits,
        fallback_cluster: (!c.fallback_cluster.is_empty()).then(|| c.fallback_cluster.clone()),
        kubernetes: c.kubernetes.as_ref().map(|k| model::KubernetesDiscovery {
            namespace: k.namespace.clone(),
            service: k.service.clone(),
            port: k.port.clone(),
        }),
        protocol: model::UpstreamProtocol::parse(&c.protocol).ok_or_else(|| {
            FieldError::new(
                "spec.protocol",
                format!("must be http1 or http2, not {:?}", c.protocol),
            )
        })?,
        tls: c.tls.as_ref().map(|t| model::UpstreamTls {
            sni: t.sni.clone(),
            ca: t.ca.clone(),
            insecure_skip_verify: t.insecure_skip_verify,
        }),
    })
}

/// Route spec → protobuf.
pub fn route_spec_to_pb(r: &model::RouteSpec) -> pb::RouteSpec {
    let m = &r.match_;
    let path = if let Some(p) = &m.path {
        Some(pb::route_match::Path::PathExact(p.clone()))
    } else if let Some(p) = &m.path_regex {
        Some(pb::route_match::Path::PathRegex(p.clone()))
    } else {
        m.path_prefix.clone().map(pb::route_match::Path::PathPrefix)
    };
    pb::RouteSpec {
        r#match: Some(pb::RouteMatch {
            hosts: m.hosts.clone(),
            path,
            headers: m
                .headers
                .iter()
                .map(|h| pb::HeaderMatch {
                    name: h.name.clone(),
                    r#match: if let Some(v) = &h.exact {
                        Some(pb::header_match::Match::Exact(v.clone()))
                    } else if let Some(v) = &h.prefix {
                        Some(pb::header_match::Match::Prefix(v.clone()))
                    } else if let Some(v) = &h.regex {
                        Some(pb::header_match::Match::Regex(v.clone()))
                    } else {
                        h.present.map(pb::header_match::Match::Present)
                    },
                })
                .collect(),
            methods: m.methods.clone(),
        }),
        cluster: r.cluster.clone().unwrap_or_default(),
        weighted_clusters: r
            .weighted_clusters
            .iter()
            .map(|w| pb::WeightedCluster {
                cluster: w.cluster.clone(),
                weight: w.weight,
            })
            .collect(),
        timeout: Some(duration_to_pb(r.timeout)),
        retry: r.retry.as_ref().map(|x| pb::RetryPolicy {
            attempts: x.attempts,
            on: x.on.clone(),
            per_try_timeout: x.per_try_timeout.map(duration_to_pb),
        }),
        hash_on: r.hash_on.clone().unwrap_or_default(),
        priority: r.priority,
        idle_timeout: r.idle_timeout.map(duration_to_pb),
        upgrades: r.upgrades.clone(),
        rewrite: r.rewrite.as_ref().map(|w| pb::Rewrite {
            prefix: w.prefix.clone(),
            host: w.host.clone().unwrap_or_default(),
        }),
        request_headers: header_ops_to_pb(&r.request_headers),
        response_headers: header_ops_to_pb(&r.response_headers),
        direct_response: r.direct_response.as_ref().map(|d| pb::DirectResponse {
            status: u32::from(d.status),
            body: d.body.clone(),
        }),
        redirect: r.redirect.as_ref().map(|x| pb::Redirect {
            scheme: x.scheme.clone().unwrap_or_default(),
            host: x.host.clone().unwrap_or_default(),
            port: x.port.map_or(0, u32::from),
            path: x.path.clone().unwrap_or_default(),
            prefix: x.prefix.clone().unwrap_or_default(),
            strip_query: x.strip_query,
            code: u32::from(x.code),
        }),
    }
}

fn header_ops_to_pb(o: &model::HeaderOps) -> Option<pb::HeaderOps> {
    (!o.is_empty()).then(|| pb::HeaderOps {
        set: o.set.clone().into_iter().collect(),
        add: o.add.clone().into_iter().collect(),
        remove: o.remove.clone(),
    })
}

fn header_ops_from_pb(o: Option<&pb::HeaderOps>) -> model::HeaderOps {
    o.map_or_else(Default::default, |o| model::HeaderOps {
        set: o.set.clone().into_iter().collect(),
        add: o.add.clone().into_iter().collect(),
        remove: o.remove.clone(),
    })
}

/// Protobuf → route spec; zero values take the defaults.
pub fn route_spec_from_pb(r: Option<&pb::RouteSpec>) -> Result<model::RouteSpec, FieldError> {
    let d = model::RouteSpec::default();
    let Some(r) = r else { return Ok(d) };
    let mut m = model::RouteMatch::default();
    if let Some(pm) = &r.r#match {
        m.hosts = pm.hosts.clone();
        m.methods = pm.methods.clone();
        match &pm.path {
            Some(pb::route_match::Path::PathExact(p)) => m.path = Some(p.clone()),
            Some(pb::route_match::Path::PathPrefix(p)) => m.path_prefix = Some(p.clone()),
            Some(pb::route_match::Path::PathRegex(p)) => m.path_regex = Some(p.clone()),
            None => {}
        }
        m.headers = pm
            .headers
            .iter()
            .map(|h| {
                let mut x = model::HeaderMatch {
                    name: h.name.clone(),
                    exact: None,
                    prefix: None,
                    regex: None,
                    present: None,
                };
                match &h.r#match {
                    Some(pb::header_match::Match::Exact(v)) => x.exact = Some(v.clone()),
                    Some(pb::header_match::Match::Prefix(v)) => x.prefix = Some(v.clone()),
                    Some(pb::header_match::Match::Regex(v)) => x.regex = Some(v.clone()),
                    Some(pb::header_match::Match::Present(v)) => x.present = Some(*v),
                    None => {}
                }
                x
            })
            .collect();
    }
    let retry = match &r.retry {
        None => None,
        Some(x) => {
            let dr = model::RetryPolicy::default();
            Some(model::RetryPolicy {
                attempts: or(x.attempts, dr.attempts),
                on: if x.on.is_empty() { dr.on } else { x.on.clone() },
                per_try_timeout: duration_from_pb(
                    "spec.retry.perTryTimeout",
                    x.per_try_timeout.as_ref(),
                )?,
            })
        }
    };
    Ok(model::RouteSpec {
        match_: m,
        cluster: (!r.cluster.is_empty()).then(|| r.cluster.clone()),
        weighted_clusters: r
            .weighted_clusters
            .iter()
            .map(|w| model::WeightedCluster {
                cluster: w.cluster.clone(),
                weight: w.weight,
            })
            .collect(),
        timeout: duration_from_pb("spec.timeout", r.timeout.as_ref())?.unwrap_or(d.timeout),
        retry,
        hash_on: (!r.hash_on.is_empty()).then(|| r.hash_on.clone()),
        priority: r.priority,
        idle_timeout: duration_from_pb("spec.idleTimeout", r.idle_timeout.as_ref())?,
        upgrades: r.upgrades.clone(),
        // Empty strings are unset (what proto3's zero value says); neither set, no rewrite.
        rewrite: r
            .rewrite
            .as_ref()
            .filter(|w| !w.prefix.is_empty() || !w.host.is_empty())
            .map(|w| model::Rewrite {
                prefix: w.prefix.clone(),
                host: (!w.host.is_empty()).then(|| w.host.clone()),
            }),
        request_headers: header_ops_from_pb(r.request_headers.as_ref()),
        response_headers: header_ops_from_pb(r.response_headers.as_ref()),
        direct_response: r
            .direct_response
            .as_ref()
            .map(|d| {
                Ok(model::DirectResponse {
                    status: u16::try_from(d.status).map_err(|_| {
                        FieldError::new(
                            "spec.directResponse.status",
                            format!("{} is not in 200..=599", d.status),
                        )
                    })?,
                    body: d.body.clone(),
                })
            })
            .transpose()?,
        redirect: r.redirect.as_ref().map(redirect_from_pb).transpose()?,
    })
}

/// A redirect from protobuf: empty strings and zeros are unset, code 0 is 301.
fn redirect_from_pb(x: &pb::Redirect) -> Result<model::Redirect, FieldError> {
    let text = |s: &String| (!s.is_empty()).then(|| s.clone());
    let field = |name: &str, v: u32| {
        FieldError::new(
            format!("spec.redirect.{name}"),
            format!("{v} is out of range"),
        )
    };
    Ok(model::Redirect {
        scheme: text(&x.scheme),
        host: text(&x.host),
        port: match x.port {
            0 => None,
            p => Some(u16::try_from(p).map_err(|_| field("port", p))?),
        },
        path: text(&x.path),
        prefix: text(&x.prefix),
        strip_query: x.strip_query,
        code: match x.code {
            0 => 301,
            c => u16::try_from(c).map_err(|_| field("code", c))?,
        },
    })
}

/// Listener spec → protobuf.
pub fn listener_spec_to_pb(l: &model::ListenerSpec) -> pb::ListenerSpec {
    pb::ListenerSpec {
        node_cluster: l.node_cluster.clone(),
        address: l.address.clone(),
        port: u32::from(l.port),
        idle_timeout: Some(duration_to_pb(l.idle_timeout)),
        request_headers_timeout: (!l.request_headers_timeout.is_zero())
            .then(|| duration_to_pb(l.request_headers_timeout)),
        max_connection_duration: (!l.max_connection_duration.is_zero())
            .then(|| duration_to_pb(l.max_connection_duration)),
        stream_idle_timeout: Some(duration_to_pb(l.stream_idle_timeout)),
        tls: l.tls.as_ref().map(|t| pb::ListenerTls {
            certificates: t
                .certificates
                .iter()
                .map(|c| pb::TlsCertificate {
                    cert_chain: c.cert_chain.clone(),
                    private_key: c.private_key.clone(),
                })
                .collect(),
            min_version: t.min_version.clone(),
        }),
        https_redirect: l.https_redirect,
    }
}

/// Protobuf → listener spec.
pub fn listener_spec_from_pb(
    l: Option<&pb::ListenerSpec>,
) -> Result<model::ListenerSpec, FieldError> {
    let d = model::ListenerSpec::default();
    let Some(l) = l else { return Ok(d) };
    let port = if l.port == 0 {
        d.port
    } else {
        u16::try_from(l.port)
            .map_err(|_| FieldError::new("spec.port", format!("{} must be in 1..=65535", l.port)))?
    };
    Ok(model::ListenerSpec {
        node_cluster: or(l.node_cluster.clone(), d.node_cluster),
        address: or(l.address.clone(), d.address),
        port,
        idle_timeout: duration_from_pb("spec.idleTimeout", l.idle_timeout.as_ref())?
            .unwrap_or(d.idle_timeout),
        request_headers_timeout: duration_from_pb(
            "spec.requestHeadersTimeout",
            l.request_headers_timeout.as_ref(),
        )?
        .unwrap_or(d.request_headers_timeout),
        max_connection_duration: duration_from_pb(
            "spec.maxConnectionDuration",
            l.max_connection_duration.as_ref(),
        )?
        .unwrap_or(d.max_connection_duration),
        stream_idle_timeout: duration_from_pb(
            "spec.streamIdleTimeout",
            l.stream_idle_timeout.as_ref(),
        )?
        .unwrap_or(d.stream_idle_timeout),
        https_redirect: l.https_redirect,
        tls: l.tls.as_ref().map(|t| model::ListenerTls {
            certificates: t
                .certificates
                .iter()
                .map(|c| model::TlsCertificate {
                    cert_chain: c.cert_chain.clone(),
                    private_key: c.private_key.clone(),
                })
                .collect(),
            min_version: t.min_version.clone(),
        }),
    })
}

/// Domain object → protobuf `Object`.
pub fn object_to_pb(o: &Object) -> pb::Object {
    use pb::object::Kind as K;
    let metadata = Some(meta_to_pb(&o.meta));
    let kind = match &o.spec {
        Spec::Tenant(t) => K::Tenant(pb::Tenant {
            metadata,
            spec: Some(pb::TenantSpec {
                display_name: t.display_name.clone(),
            }),
        }),
        Spec::Listener(l) => K::Listener(pb::Listener {
            metadata,
            spec: Some(listener_spec_to_pb(l)),
        }),
        Spec::Cluster(c) => K::Cluster(pb::Cluster {
            metadata,
            spec: Some(cluster_spec_to_pb(c)),
        }),
        Spec::Route(r) => K::Route(pb::Route {
            metadata,
            spec: Some(route_spec_to_pb(r)),
        }),
        Spec::AlertRule(a) => K::AlertRule(pb::AlertRule {
            metadata,
            spec: Some(alert_rule_spec_to_pb(a)),
        }),
    };
    pb::Object { kind: Some(kind) }
}

/// Protobuf `Object` → domain object (not yet validated).
pub fn object_from_pb(o: &pb::Object) -> Result<Object, FieldError> {
    use pb::object::Kind as K;
    match &o.kind {
        None => Err(FieldError::new("kind", "is required")),
        Some(K::Tenant(t)) => tenant_from_pb(t),
        Some(K::Listener(l)) => listener_from_pb(l),
        Some(K::Cluster(c)) => cluster_from_pb(c),
        Some(K::Route(r)) => route_from_pb(r),
        Some(K::AlertRule(a)) => alert_rule_from_pb(a),
    }
}

/// Protobuf tenant → domain.
pub fn tenant_from_pb(t: &pb::Tenant) -> Result<Object, FieldError> {
    let spec = model::TenantSpec {
        display_name: t
            .spec
            .as_ref()
            .map(|s| s.display_name.clone())
            .unwrap_or_default(),
    };
    Ok(Object {
        meta: meta_from_pb(t.metadata.as_ref()),
        spec: Spec::Tenant(spec),
    })
}

/// Protobuf listener → domain.
pub fn listener_from_pb(l: &pb::Listener) -> Result<Object, FieldError> {
    Ok(Object {
        meta: meta_from_pb(l.metadata.as_ref()),
        spec: Spec::Listener(listener_spec_from_pb(l.spec.as_ref())?),
    })
}

/// Protobuf cluster → domain.
pub fn cluster_from_pb(c: &pb::Cluster) -> Result<Object, FieldError> {
    Ok(Object {
        meta: meta_from_pb(c.metadata.as_ref()),
        spec: Spec::Cluster(Box::new(cluster_spec_from_pb(c.spec.as_ref())?)),
    })
}

/// Protobuf route → domain.
pub fn route_from_pb(r: &pb::Route) -> Result<Object, FieldError> {
    Ok(Object {
        meta: meta_from_pb(r.metadata.as_ref()),
        spec: Spec::Route(Box::new(route_spec_from_pb(r.spec.as_ref())?)),
    })
}

/// The metadata of a protobuf `Object`, whatever its kind.
pub fn object_to_pb_meta(o: &pb::Object) -> Meta {
    use pb::object::Kind as K;
    let m = match &o.kind {
        Some(K::Tenant(x)) => x.metadata.as_ref(),
        Some(K::Listener(x)) => x.metadata.as_ref(),
        Some(K::Cluster(x)) => x.metadata.as_ref(),
        Some(K::Route(x)) => x.metadata.as_ref(),
        Some(K::AlertRule(x)) => x.metadata.as_ref(),
        None => None,
    };
    meta_from_pb(m)
}

/// Kind of a protobuf `Object`.
pub fn object_kind(o: &pb::Object) -> Option<Kind> {
    use pb::object::Kind as K;
    Some(match o.kind.as_ref()? {
        K::Tenant(_) => Kind::Tenant,
        K::Listener(_) => Kind::Listener,
        K::Cluster(_) => Kind::Cluster,
        K::Route(_) => Kind::Route,
        K::AlertRule(_) => Kind::AlertRule,
    })
}

/// Alert rule spec → protobuf.
pub fn alert_rule_spec_to_pb(a: &model::AlertRuleSpec) -> pb::AlertRuleSpec {
    let (threshold, threshold_duration) = match a.threshold {
        model::Threshold::Number(n) => (n, None),
        model::Threshold::Duration(d) => (0.0, Some(duration_to_pb(d))),
    };
    pb::AlertRuleSpec {
        metric: a.metric.as_str().into(),
        scope: Some(pb::AlertScope {
            route: a.scope.route.clone().unwrap_or_default(),
            cluster: a.scope.cluster.clone().unwrap_or_default(),
            tenant: a.scope.tenant.clone().unwrap_or_default(),
        }),
        threshold,
        threshold_duration,
        window: Some(duration_to_pb(a.window)),
        r#for: Some(duration_to_pb(a.for_)),
        webhook: a.webhook.as_ref().map(|w| pb::Webhook {
            url: w.url.clone(),
            secret: w.secret.clone().unwrap_or_default(),
        }),
    }
}

/// Protobuf alert rule → domain.
pub fn alert_rule_from_pb(a: &pb::AlertRule) -> Result<Object, FieldError> {
    let s = a.spec.clone().unwrap_or_default();
    let metric = model::AlertMetric::parse(&s.metric).ok_or_else(|| {
        FieldError::new(
            "spec.metric",
            format!("{:?} is not a known metric", s.metric),
        )
    })?;
    let threshold = match duration_from_pb("spec.threshold", s.threshold_duration.as_ref())? {
        Some(d) => model::Threshold::Duration(d),
        None => model::Threshold::Number(s.threshold),
    };
    let scope = s.scope.unwrap_or_default();
    let some = |v: String| (!v.is_empty()).then_some(v);
    let spec = model::AlertRuleSpec {
        metric,
        scope: model::AlertScope {
            route: some(scope.route),
            cluster: some(scope.cluster),
            tenant: some(scope.tenant),
        },
        threshold,
        window: duration_from_pb("spec.window", s.window.as_ref())?
            .unwrap_or(Duration::from_secs(60)),
        for_: duration_from_pb("spec.for", s.r#for.as_ref())?.unwrap_or_default(),
        webhook: s.webhook.map(|w| model::Webhook {
            url: w.url,
            secret: some(w.secret),
        }),
    };
    Ok(Object {
        meta: meta_from_pb(a.metadata.as_ref()),
        spec: Spec::AlertRule(Box::new(spec)),
    })
}

/// Endpoint source → protobuf enum.
pub fn source_to_pb(s: model::EndpointSource) -> pb::EndpointSource {
    match s {
        model::EndpointSource::Static => pb::EndpointSource::Static,
        model::EndpointSource::Registry => pb::EndpointSource::Registry,
        model::EndpointSource::Kubernetes => pb::EndpointSource::Kubernetes,
    }
}

/// Endpoint → protobuf.
pub fn endpoint_to_pb(e: &model::Endpoint) -> pb::Endpoint {
    pb::Endpoint {
        tenant: e.key.tenant.clone(),
        cluster: e.key.cluster.clone(),
        address: e.key.address.clone(),
        port: e.key.port,
        weight: e.weight,
        metadata: e
            .metadata
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        source: source_to_pb(e.source) as i32,
        ttl: e.ttl.map(duration_to_pb),
        expires_at: e.expires_at_ms.and_then(ts_to_pb),
        registered_at: ts_to_pb(e.registered_at_ms),
        resource_version: e.resource_version,
        healthy: e.healthy,
    }
}

/// Protobuf endpoint → domain (used by clients that print endpoints).
pub fn endpoint_from_pb(e: &pb::Endpoint) -> model::Endpoint {
    let source = match pb::EndpointSource::try_from(e.source) {
        Ok(pb::EndpointSource::Static) => model::EndpointSource::Static,
        Ok(pb::EndpointSource::Kubernetes) => model::EndpointSource::Kubernetes,
        _ => model::EndpointSource::Registry,
    };
    model::Endpoint {
        key: model::EndpointKey {
            tenant: e.tenant.clone(),
            cluster: e.cluster.clone(),
            address: e.address.clone(),
            port: e.port,
        },
        weight: e.weight,
        metadata: e
            .metadata
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        source,
        ttl: duration_from_pb("ttl", e.ttl.as_ref()).ok().flatten(),
        expires_at_ms: e.expires_at.as_ref().map(|t| ts_from_pb(Some(t))),
        registered_at_ms: ts_from_pb(e.registered_at.as_ref()),
        resource_version: e.resource_version,
        healthy: e.healthy,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_round_trip_keeps_everything() {
        let spec = model::ClusterSpec {
            lb: model::LbPolicy::IpHash,
            health_check: Some(model::HealthCheck {
                path: Some("/health".into()),
                ..Default::default()
            }),
            fallback_cluster: Some("maintenance".into()),
            endpoints: vec![model::StaticEndpoint {
                address: "127.0.0.1".into(),
                port: 8081,
                weight: 3,
                metadata: [("zone".to_string(), "a".to_string())].into(),
            }],
            ..Default::default()
        };
        let back = cluster_spec_from_pb(Some(&cluster_spec_to_pb(&spec))).unwrap();
        assert_eq!(back, spec);
    }

    #[test]
    fn zero_values_take_defaults() {
        let spec = cluster_spec_from_pb(Some(&pb::ClusterSpec::default())).unwrap();
        assert_eq!(spec, model::ClusterSpec::default());
        assert_eq!(spec.circuit_breaker.consecutive_failures, 5);
        assert_eq!(spec.circuit_breaker.open_timeout, Duration::from_secs(30));
    }

    #[test]
    fn route_round_trip_keeps_everything() {
        let mut spec = model::RouteSpec {
            cluster: Some("users".into()),
            retry: Some(model::RetryPolicy {
                per_try_timeout: Some(Duration::from_secs(2)),
                ..Default::default()
            }),
            hash_on: Some("header:x-user".into()),
            idle_timeout: Some(Duration::ZERO),
            upgrades: vec!["websocket".into()],
            ..Default::default()
        };
        spec.match_.path_regex = Some("^/u/[0-9]+$".into());
        spec.match_.headers.push(model::HeaderMatch {
            name: "x-tenant-id".into(),
            exact: Some("acme".into()),
            prefix: None,
            regex: None,
            present: None,
        });
        let back = route_spec_from_pb(Some(&route_spec_to_pb(&spec))).unwrap();
        assert_eq!(back, spec);
    }

    #[test]
    fn listener_timeouts_round_trip_and_default_as_envoy() {
        let spec = model::ListenerSpec {
            idle_timeout: Duration::ZERO,
            request_headers_timeout: Duration::from_millis(2500),
            max_connection_duration: Duration::from_secs(600),
            stream_idle_timeout: Duration::from_secs(30),
            ..Default::default()
        };
        let pb = listener_spec_to_pb(&spec);
        assert_eq!(listener_spec_from_pb(Some(&pb)).unwrap(), spec);
        // An explicit 0s stream idle timeout (off) stays 0s, not the default.
        let off = model::ListenerSpec {
            stream_idle_timeout: Duration::ZERO,
            ..Default::default()
        };
        let pb = listener_spec_to_pb(&off);
        assert_eq!(
            pb.stream_idle_timeout,
            Some(prost_types::Duration::default())
        );
        assert_eq!(listener_spec_from_pb(Some(&pb)).unwrap(), off);
        // Unset: Envoy's defaults (1 h idle, no headers bound, 5 min stream idle); an explicit
        // 0s idle stays 0s.
        let d = listener_spec_from_pb(Some(&pb::ListenerSpec::default())).unwrap();
        assert_eq!(d.idle_timeout, Duration::from_secs(3600));
        assert_eq!(d.request_headers_timeout, Duration::ZERO);
        assert_eq!(d.max_connection_duration, Duration::ZERO);
        assert_eq!(d.stream_idle_timeout, Duration::from_secs(300));
        let bad = pb::ListenerSpec {
            request_headers_timeout: Some(prost_types::Duration {
                seconds: -1,
                nanos: 0,
            }),
            ..Default::default()
        };
        let e = listener_spec_from_pb(Some(&bad)).unwrap_err();
        assert_eq!(e.field, "spec.requestHeadersTimeout");
        let bad = pb::ListenerSpec {
            stream_idle_timeout: Some(prost_types::Duration {
                seconds: -1,
                nanos: 0,
            }),
            ..Default::default()
        };
        let e = listener_spec_from_pb(Some(&bad)).unwrap_err();
        assert_eq!(e.field, "spec.streamIdleTimeout");
    }

    #[test]
    fn negative_duration_names_field() {
        let r = pb::RouteSpec {
            retry: Some(pb::RetryPolicy {
                per_try_timeout: Some(prost_types::Duration {
                    seconds: -1,
                    nanos: 0,
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(
            route_spec_from_pb(Some(&r)).unwrap_err().to_string(),
            "spec.retry.perTryTimeout: must be > 0"
        );
    }
}
