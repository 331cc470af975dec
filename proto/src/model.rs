//! The domain model: the manifest kinds of DESIGN.md, their defaults and their validation.
//!
//! Everything here is plain data. Serialization is the manifest format (camelCase, durations as
//! `"1s"` / `"250ms"`), and defaults are filled at parse time, so two specs that mean the same
//! thing compare equal after [`Spec::normalize`] — that is what makes `apply` idempotent and `diff`
//! free of false drift.

mod alert;
mod cluster;
mod duration;
mod endpoint;
mod route;
mod tls;
mod validate;

pub use alert::{AlertMetric, AlertRuleSpec, AlertScope, Threshold, Webhook};
pub use cluster::{
    CircuitBreaker, ClusterSpec, HealthCheck, KubernetesDiscovery, LbPolicy, Limits,
    StaticEndpoint, UpstreamProtocol, UpstreamTls, SYSTEM_CA_FILE,
};
pub use duration::{format as format_duration, parse as parse_duration, serde_duration};
pub use endpoint::{metadata_json, Endpoint, EndpointKey, EndpointSource};
pub use route::{
    DirectResponse, HashOn, HeaderMatch, HeaderOps, Redirect, RetryPolicy, Rewrite, RouteMatch,
    RouteSpec, WeightedCluster, FIXED_HEADERS,
};
pub use tls::{certified_key, KeyPart, ListenerTls, TlsCertificate, HIDDEN_KEY};
pub use validate::{path_and_query, path_prefix, validate_name, FieldError};

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

/// The kinds of stored objects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Kind {
    /// A tenant: owns clusters, routes and endpoints.
    Tenant,
    /// What LDS gives proxies of a node cluster.
    Listener,
    /// An upstream service with its balancing and resilience policy.
    Cluster,
    /// A request match and where matching requests go.
    Route,
    /// A condition that fires and resolves alerts.
    AlertRule,
}

impl Kind {
    /// All kinds, in dependency order (a kind only references kinds before it).
    pub const ALL: [Kind; 5] = [
        Kind::Tenant,
        Kind::Listener,
        Kind::Cluster,
        Kind::Route,
        Kind::AlertRule,
    ];

    /// Lower-case name, as stored and as used by `gwctl get KIND`.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Tenant => "tenant",
            Kind::Listener => "listener",
            Kind::Cluster => "cluster",
            Kind::Route => "route",
            Kind::AlertRule => "alertrule",
        }
    }

    /// Manifest `kind:` value.
    pub fn manifest_name(self) -> &'static str {
        match self {
            Kind::Tenant => "Tenant",
            Kind::Listener => "Listener",
            Kind::Cluster => "Cluster",
            Kind::Route => "Route",
            Kind::AlertRule => "AlertRule",
        }
    }

    /// Whether objects of this kind belong to a tenant.
    pub fn is_tenant_scoped(self) -> bool {
        matches!(self, Kind::Cluster | Kind::Route | Kind::AlertRule)
    }

    /// Parses `tenant`, `tenants`, `Tenant`, `cluster`, `clusters`, … .
    pub fn parse(s: &str) -> Option<Kind> {
        let s = s.to_ascii_lowercase();
        let s = s.strip_suffix('s').unwrap_or(&s);
        Kind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Identity of a stored object.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectKey {
    /// Kind of the object.
    pub kind: Kind,
    /// Owning tenant; empty for cluster-wide kinds.
    pub tenant: String,
    /// Name, unique per kind and tenant.
    pub name: String,
}

impl std::fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.tenant.is_empty() {
            write!(f, "{}/{}", self.kind, self.name)
        } else {
            write!(f, "{}/{}/{}", self.kind, self.tenant, self.name)
        }
    }
}

/// Object metadata: identity plus bookkeeping the store maintains.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Meta {
    /// Name, unique per kind and tenant.
    pub name: String,
    /// Owning tenant; empty for cluster-wide kinds.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub tenant: String,
    /// Free-form labels.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Revision of the last write; 0 for objects not yet stored.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub resource_version: u64,
    /// Revision that created the object.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub created_revision: u64,
    /// Creation time, milliseconds since the Unix epoch.
    #[serde(default, skip)]
    pub created_at_ms: i64,
    /// Last update time, milliseconds since the Unix epoch.
    #[serde(default, skip)]
    pub updated_at_ms: i64,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

/// A tenant's spec.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct TenantSpec {
    /// Human-friendly name.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub display_name: String,
}

/// A listener's spec: which proxies get it and where they bind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct ListenerSpec {
    /// Proxies whose xDS `node.cluster` equals this get the listener.
    pub node_cluster: String,
    /// Bind address.
    pub address: String,
    /// Bind port.
    pub port: u16,
    /// A client connection with no request in flight for this long is closed (HTTP/2: GOAWAY,
    /// then closed); `0s` never closes an idle connection. Envoy's HCM
    /// `common_http_protocol_options.idle_timeout`, and its default (1 h).
    #[serde(with = "serde_duration")]
    pub idle_timeout: Duration,
    /// A request's headers must arrive within this long of their first byte, or the client gets
    /// 408 and the connection is closed; `0s` (the default) sets no such bound. Envoy's HCM
    /// `request_headers_timeout`.
    #[serde(with = "serde_duration", skip_serializing_if = "Duration::is_zero")]
    pub request_headers_timeout: Duration,
    /// A client connection older than this is closed at its next request boundary: idle, it is
    /// closed; with a request in flight, the response says `connection: close` (HTTP/2: GOAWAY,
    /// in-flight streams finish). `0s` (the default) sets no bound. Spreads long-lived
    /// keep-alive clients over a fleet that was scaled out. Envoy's HCM
    /// `common_http_protocol_options.max_connection_duration`.
    #[serde(with = "serde_duration", skip_serializing_if = "Duration::is_zero")]
    pub max_connection_duration: Duration,
    /// A request/response stream with no progress for this long is ended: a head still
    /// arriving gets 408 and the close; a request sent whole whose response head has not come
    /// gets 504 `stream timeout`; a response body that stops is cut (HTTP/1.1: the connection is
    /// closed; HTTP/2: the stream is reset). `0s` never ends one.
    /// Envoy's HCM `stream_idle_timeout`, and its default (5 min).
    #[serde(with = "serde_duration")]
    pub stream_idle_timeout: Duration,
    /// Clients speak TLS to the listener (HTTPS; HTTP/2 or HTTP/1.1 by ALPN). Unset:
    /// plaintext. Envoy's `DownstreamTlsContext` transport socket.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<ListenerTls>,
    /// Every request is answered with a `301` to the same URL over `https` (host, port, path
    /// and query kept): the plaintext port of a site served over HTTPS by another listener.
    /// Envoy's virtual host `require_tls: ALL`; Istio's `httpsRedirect`.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub https_redirect: bool,
}

impl Default for ListenerSpec {
    fn default() -> Self {
        ListenerSpec {
            node_cluster: "ingress".into(),
            address: "0.0.0.0".into(),
            port: 8080,
            idle_timeout: Duration::from_secs(3600),
            request_headers_timeout: Duration::ZERO,
            max_connection_duration: Duration::ZERO,
            stream_idle_timeout: Duration::from_secs(300),
            tls: None,
            https_redirect: false,
        }
    }
}

/// The spec of any kind.
#[derive(Debug, Clone, PartialEq)]
pub enum Spec {
    /// A tenant.
    Tenant(TenantSpec),
    /// A listener.
    Listener(ListenerSpec),
    /// A cluster.
    Cluster(Box<ClusterSpec>),
    /// A route.
    Route(Box<RouteSpec>),
    /// An alert rule.
    AlertRule(Box<AlertRuleSpec>),
}

impl Spec {
    /// The kind this spec belongs to.
    pub fn kind(&self) -> Kind {
        match self {
            Spec::Tenant(_) => Kind::Tenant,
            Spec::Listener(_) => Kind::Listener,
            Spec::Cluster(_) => Kind::Cluster,
            Spec::Route(_) => Kind::Route,
            Spec::AlertRule(_) => Kind::AlertRule,
        }
    }

    /// Puts set-like lists into canonical order so equal meaning gives equal values.
    pub fn normalize(&mut self) {
        match self {
            Spec::Tenant(_) | Spec::Listener(_) | Spec::AlertRule(_) => {}
            Spec::Cluster(c) => c.normalize(),
            Spec::Route(r) => r.normalize(),
        }
    }

    /// Checks every field; the error names the first offending field (`spec.…`).
    pub fn validate(&self) -> Result<(), FieldError> {
        match self {
            Spec::Tenant(t) => validate::tenant(t),
            Spec::Listener(l) => validate::listener(l),
            Spec::Cluster(c) => c.validate(),
            Spec::Route(r) => r.validate(),
            Spec::AlertRule(a) => a.validate(),
        }
    }

    /// The spec as JSON, the form the store keeps.
    pub fn to_json(&self) -> Result<String, serde_json::Error> {
        match self {
            Spec::Tenant(s) => serde_json::to_string(s),
            Spec::Listener(s) => serde_json::to_string(s),
            Spec::Cluster(s) => serde_json::to_string(s),
            Spec::Route(s) => serde_json::to_string(s),
            Spec::AlertRule(s) => serde_json::to_string(s),
        }
    }

    /// Parses a spec of `kind` from its JSON (or YAML) value.
    pub fn from_value(kind: Kind, v: serde_json::Value) -> Result<Spec, serde_json::Error> {
        Ok(match kind {
            Kind::Tenant => Spec::Tenant(serde_json::from_value(v)?),
            Kind::Listener => Spec::Listener(serde_json::from_value(v)?),
            Kind::Cluster => Spec::Cluster(Box::new(serde_json::from_value(v)?)),
            Kind::Route => Spec::Route(Box::new(serde_json::from_value(v)?)),
            Kind::AlertRule => Spec::AlertRule(Box::new(serde_json::from_value(v)?)),
        })
    }

    /// Parses a spec of `kind` from stored JSON text.
    pub fn from_json(kind: Kind, s: &str) -> Result<Spec, serde_json::Error> {
        Spec::from_value(kind, serde_json::from_str(s)?)
    }

    /// The spec as a JSON value (manifest form).
    pub fn to_value(&self) -> serde_json::Value {
        let v = match self {
            Spec::Tenant(s) => serde_json::to_value(s),
            Spec::Listener(s) => serde_json::to_value(s),
            Spec::Cluster(s) => serde_json::to_value(s),
            Spec::Route(s) => serde_json::to_value(s),
            Spec::AlertRule(s) => serde_json::to_value(s),
        };
        v.unwrap_or(serde_json::Value::Null)
    }

    /// Names of clusters this spec references within its tenant.
    pub fn cluster_refs(&self) -> Vec<&str> {
        match self {
            Spec::Tenant(_) | Spec::Listener(_) | Spec::AlertRule(_) => Vec::new(),
            Spec::Cluster(c) => c.fallback_cluster.as_deref().into_iter().collect(),
            Spec::Route(r) => r.clusters().collect(),
        }
    }
}

/// A stored or to-be-stored object.
#[derive(Debug, Clone, PartialEq)]
pub struct Object {
    /// Identity and bookkeeping.
    pub meta: Meta,
    /// What the object says.
    pub spec: Spec,
}

impl Object {
    /// The object's key.
    pub fn key(&self) -> ObjectKey {
        ObjectKey {
            kind: self.spec.kind(),
            tenant: self.meta.tenant.clone(),
            name: self.meta.name.clone(),
        }
    }

    /// Validates identity and spec. The spec is normalized first.
    pub fn validate(&mut self) -> Result<(), FieldError> {
        let kind = self.spec.kind();
        validate_name("metadata.name", &self.meta.name)?;
        if kind.is_tenant_scoped() {
            if self.meta.tenant.is_empty() {
                return Err(FieldError::new(
                    "metadata.tenant",
                    "is required for a ".to_owned() + kind.as_str(),
                ));
            }
            validate_name("metadata.tenant", &self.meta.tenant)?;
        } else if !self.meta.tenant.is_empty() {
            return Err(FieldError::new(
                "metadata.tenant",
                format!("must be empty: a {kind} is not tenant-scoped"),
            ));
        }
        self.spec.normalize();
        if let Spec::AlertRule(a) = &mut self.spec {
            a.normalize(&self.meta.tenant);
        }
        self.spec.validate()
    }
}
