//! `kind: Cluster`: an upstream service with its balancing and resilience policy.

use super::serde_duration;
use super::validate::{host_or_ip, port, positive, validate_name};
use super::FieldError;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

/// What a proxy speaks to a cluster's endpoints.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UpstreamProtocol {
    /// HTTP/1.1, pooled keep-alive connections.
    #[default]
    Http1,
    /// HTTP/2 over cleartext (prior knowledge), requests multiplexed: gRPC services.
    Http2,
}

impl UpstreamProtocol {
    /// Its name in manifests and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            UpstreamProtocol::Http1 => "http1",
            UpstreamProtocol::Http2 => "http2",
        }
    }

    /// Parses a name (`""`: the default).
    pub fn parse(s: &str) -> Option<UpstreamProtocol> {
        match s {
            "" | "http1" => Some(UpstreamProtocol::Http1),
            "http2" => Some(UpstreamProtocol::Http2),
            _ => None,
        }
    }
}

/// TLS to a cluster's endpoints (Envoy's `UpstreamTlsContext` transport socket).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct UpstreamTls {
    /// The server name sent (SNI) and, unless `insecureSkipVerify`, the name the endpoints'
    /// certificates must be valid for. Empty: none sent, and any name accepted (the chain is
    /// still verified).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub sni: String,
    /// PEM CA certificates the endpoints' certificates must lead to. Empty: the system's trust
    /// store ([`SYSTEM_CA_FILE`]).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub ca: String,
    /// The endpoints' certificates are not verified at all.
    #[serde(skip_serializing_if = "is_default")]
    pub insecure_skip_verify: bool,
}

/// Where the system's CA certificates are (Debian, Ubuntu, Alpine, and Envoy's images).
pub const SYSTEM_CA_FILE: &str = "/etc/ssl/certs/ca-certificates.crt";

impl UpstreamTls {
    /// How many PEM certificates `ca` holds, each one a proxy can trust (what gw-proxy checks
    /// when it loads them).
    pub fn ca_certificates(&self) -> Result<usize, String> {
        use rustls_pki_types::pem::PemObject;
        let mut n = 0;
        for c in rustls_pki_types::CertificateDer::pem_slice_iter(self.ca.as_bytes()) {
            let c = c.map_err(|e| e.to_string())?;
            webpki::anchor_from_trusted_cert(&c)
                .map_err(|e| format!("certificate {}: not a usable CA certificate ({e})", n + 1))?;
            n += 1;
        }
        Ok(n)
    }

    fn validate(&self) -> Result<(), FieldError> {
        if !self.sni.is_empty()
            && (self.sni.ends_with('.')
                || rustls_pki_types::DnsName::try_from(self.sni.as_str()).is_err())
        {
            return Err(FieldError::new(
                "spec.tls.sni",
                format!("{:?} is not a DNS name", self.sni),
            ));
        }
        if self.ca.is_empty() {
            return Ok(());
        }
        if self.insecure_skip_verify {
            return Err(FieldError::new(
                "spec.tls.ca",
                "is not used with insecureSkipVerify: true",
            ));
        }
        match self.ca_certificates() {
            Ok(0) => Err(FieldError::new(
                "spec.tls.ca",
                "holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
            )),
            Ok(_) => Ok(()),
            Err(e) => Err(FieldError::new("spec.tls.ca", e)),
        }
    }
}

fn is_default<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
}

/// Load-balancing strategies (DESIGN.md "Strategy ↔ Envoy mapping").
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LbPolicy {
    /// Smooth weighted round robin.
    #[default]
    RoundRobin,
    /// Round robin honouring endpoint weights.
    Weighted,
    /// Power of two choices on in-flight requests.
    LeastConn,
    /// Consistent hash on the route's `hashOn` key.
    IpHash,
    /// Peak-EWMA latency × (in-flight + 1), power of two choices.
    ResponseTime,
    /// Lowest recent failure rate.
    Availability,
}

impl LbPolicy {
    /// All strategies.
    pub const ALL: [LbPolicy; 6] = [
        LbPolicy::RoundRobin,
        LbPolicy::Weighted,
        LbPolicy::LeastConn,
        LbPolicy::IpHash,
        LbPolicy::ResponseTime,
        LbPolicy::Availability,
    ];

    /// Manifest spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            LbPolicy::RoundRobin => "round_robin",
            LbPolicy::Weighted => "weighted",
            LbPolicy::LeastConn => "least_conn",
            LbPolicy::IpHash => "ip_hash",
            LbPolicy::ResponseTime => "response_time",
            LbPolicy::Availability => "availability",
        }
    }
}

/// An endpoint written into the cluster spec.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StaticEndpoint {
    /// IP address or host name.
    pub address: String,
    /// TCP port.
    pub port: u32,
    /// Relative weight (default 1).
    #[serde(default = "one")]
    pub weight: u32,
    /// Free-form metadata.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
}

fn one() -> u32 {
    1
}

/// Active health checking; a missing `path` means a TCP connect check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct HealthCheck {
    /// HTTP path to probe; `None` probes with a TCP connect.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Time between probes.
    #[serde(with = "serde_duration")]
    pub interval: Duration,
    /// Probe timeout.
    #[serde(with = "serde_duration")]
    pub timeout: Duration,
    /// Consecutive successes that mark an endpoint healthy.
    pub healthy_threshold: u32,
    /// Consecutive failures that mark an endpoint unhealthy.
    pub unhealthy_threshold: u32,
    /// HTTP statuses counted as healthy; empty means 200–299.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub expected_statuses: Vec<u32>,
    /// Host header sent with HTTP probes; defaults to the cluster name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
}

impl Default for HealthCheck {
    fn default() -> Self {
        HealthCheck {
            path: None,
            interval: Duration::from_secs(5),
            timeout: Duration::from_secs(1),
            healthy_threshold: 2,
            unhealthy_threshold: 3,
            expected_statuses: Vec::new(),
            host: None,
        }
    }
}

/// Per-endpoint circuit breaker, with the origin's defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct CircuitBreaker {
    /// Failure fraction over the window that opens the breaker.
    pub failure_rate_threshold: f64,
    /// Consecutive failures that open the breaker.
    pub consecutive_failures: u32,
    /// Probe successes in HALF_OPEN that close it again.
    pub half_open_successes: u32,
    /// How long the breaker stays OPEN before probing.
    #[serde(with = "serde_duration")]
    pub open_timeout: Duration,
    /// Requests in the window before the failure rate counts.
    pub minimum_requests: u32,
    /// What counts as a failure, from [`FAIL_ON`]; a 4xx never does.
    pub fail_on: Vec<String>,
}

/// The failure kinds a breaker may count: any 5xx answer, a 502/503/504 answer, a failed
/// connect, a reset, a timeout.
pub const FAIL_ON: [&str; 5] = [
    "5xx",
    "gateway-error",
    "connect-failure",
    "reset",
    "timeout",
];

impl CircuitBreaker {
    /// Whether `kind` (one of [`FAIL_ON`]) counts as a failure.
    pub fn fails_on(&self, kind: &str) -> bool {
        self.fail_on.iter().any(|k| k == kind)
    }
}

impl Default for CircuitBreaker {
    fn default() -> Self {
        CircuitBreaker {
            failure_rate_threshold: 0.5,
            consecutive_failures: 5,
            half_open_successes: 3,
            open_timeout: Duration::from_secs(30),
            minimum_requests: 20,
            fail_on: ["5xx", "connect-failure", "reset", "timeout"]
                .map(String::from)
                .to_vec(),
        }
    }
}

/// Envoy-style cluster limits; overflow is answered with 503 at once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Limits {
    /// Upstream connections.
    pub max_connections: u32,
    /// Requests waiting for a connection.
    pub max_pending_requests: u32,
    /// Requests in flight.
    pub max_requests: u32,
    /// Retries in flight.
    pub max_retries: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 1024,
            max_pending_requests: 1024,
            max_requests: 1024,
            max_retries: 3,
        }
    }
}

/// Endpoints come from a Kubernetes Service's EndpointSlices.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KubernetesDiscovery {
    /// Namespace of the Service.
    pub namespace: String,
    /// Service name.
    pub service: String,
    /// Port name or number; empty takes the slice's first port.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub port: String,
}

/// `kind: Cluster` spec.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct ClusterSpec {
    /// Balancing strategy.
    pub lb: LbPolicy,
    /// Upstream TCP connect timeout.
    #[serde(with = "serde_duration")]
    pub connect_timeout: Duration,
    /// Static endpoints; registry and Kubernetes endpoints come from elsewhere.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub endpoints: Vec<StaticEndpoint>,
    /// Active health checking.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub health_check: Option<HealthCheck>,
    /// Per-endpoint breaker.
    pub circuit_breaker: CircuitBreaker,
    /// Cluster limits.
    pub limits: Limits,
    /// Cluster (same tenant) that takes the traffic when no endpoint here is usable.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fallback_cluster: Option<String>,
    /// Kubernetes EndpointSlice discovery.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kubernetes: Option<KubernetesDiscovery>,
    /// What the proxy speaks to the endpoints (Envoy's `http2_protocol_options` for `http2`).
    #[serde(skip_serializing_if = "is_default")]
    pub protocol: UpstreamProtocol,
    /// TLS to the endpoints (Envoy's `transport_socket`); none: plaintext.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<UpstreamTls>,
}

impl Default for ClusterSpec {
    fn default() -> Self {
        ClusterSpec {
            lb: LbPolicy::RoundRobin,
            connect_timeout: Duration::from_secs(5),
            endpoints: Vec::new(),
            health_check: None,
            circuit_breaker: CircuitBreaker::default(),
            limits: Limits::default(),
            fallback_cluster: None,
            kubernetes: None,
            protocol: UpstreamProtocol::Http1,
            tls: None,
        }
    }
}

impl ClusterSpec {
    /// Canonical order for set-like lists.
    pub fn normalize(&mut self) {
        self.endpoints
            .sort_by(|a, b| (&a.address, a.port).cmp(&(&b.address, b.port)));
        if let Some(hc) = &mut self.health_check {
            hc.expected_statuses.sort_unstable();
            hc.expected_statuses.dedup();
        }
        // Unknown kinds stay where they are, so the error names the index the user wrote.
        let f = &mut self.circuit_breaker.fail_on;
        if f.iter().all(|k| FAIL_ON.contains(&k.as_str())) {
            f.sort_by_key(|k| FAIL_ON.iter().position(|x| x == k));
            f.dedup();
        }
    }

    /// Validates every field.
    pub fn validate(&self) -> Result<(), FieldError> {
        positive("spec.connectTimeout", self.connect_timeout)?;
        if let Some(tls) = &self.tls {
            tls.validate()?;
        }
        let mut seen = std::collections::HashSet::new();
        for (i, e) in self.endpoints.iter().enumerate() {
            let f = format!("spec.endpoints[{i}]");
            host_or_ip(&format!("{f}.address"), &e.address)?;
            port(&format!("{f}.port"), e.port)?;
            if e.weight == 0 || e.weight > 1000 {
                return Err(FieldError::new(
                    format!("{f}.weight"),
                    format!("{} must be in 1..=1000", e.weight),
                ));
            }
            if !seen.insert((&e.address, e.port)) {
                return Err(FieldError::new(
                    f,
                    format!("duplicate endpoint {}:{}", e.address, e.port),
                ));
            }
        }
        if let Some(hc) = &self.health_check {
            if let Some(p) = &hc.path {
                if !p.starts_with('/') {
                    return Err(FieldError::new(
                        "spec.healthCheck.path",
                        "must start with '/'",
                    ));
                }
            }
            positive("spec.healthCheck.interval", hc.interval)?;
            positive("spec.healthCheck.timeout", hc.timeout)?;
            if hc.healthy_threshold == 0 {
                return Err(FieldError::new(
                    "spec.healthCheck.healthyThreshold",
                    "must be > 0",
                ));
            }
            if hc.unhealthy_threshold == 0 {
                return Err(FieldError::new(
                    "spec.healthCheck.unhealthyThreshold",
                    "must be > 0",
                ));
            }
            if let Some(s) = hc
                .expected_statuses
                .iter()
                .find(|s| !(100..600).contains(*s))
            {
                return Err(FieldError::new(
                    "spec.healthCheck.expectedStatuses",
                    format!("{s} is not an HTTP status"),
                ));
            }
        }
        let cb = &self.circuit_breaker;
        if !(cb.failure_rate_threshold > 0.0 && cb.failure_rate_threshold <= 1.0) {
            return Err(FieldError::new(
                "spec.circuitBreaker.failureRateThreshold",
                "must be in (0, 1]",
            ));
        }
        if cb.consecutive_failures == 0 {
            return Err(FieldError::new(
                "spec.circuitBreaker.consecutiveFailures",
                "must be > 0",
            ));
        }
        if cb.half_open_successes == 0 {
            return Err(FieldError::new(
                "spec.circuitBreaker.halfOpenSuccesses",
                "must be > 0",
            ));
        }
        positive("spec.circuitBreaker.openTimeout", cb.open_timeout)?;
        if cb.fail_on.is_empty() {
            return Err(FieldError::new(
                "spec.circuitBreaker.failOn",
                format!("must name at least one of {}", FAIL_ON.join(", ")),
            ));
        }
        for (i, k) in cb.fail_on.iter().enumerate() {
            if !FAIL_ON.contains(&k.as_str()) {
                return Err(FieldError::new(
                    format!("spec.circuitBreaker.failOn[{i}]"),
                    format!("unknown failure kind {k:?}; one of {}", FAIL_ON.join(", ")),
                ));
            }
        }
        for (name, v) in [
            ("maxConnections", self.limits.max_connections),
            ("maxPendingRequests", self.limits.max_pending_requests),
            ("maxRequests", self.limits.max_requests),
        ] {
            if v == 0 {
                return Err(FieldError::new(
                    format!("spec.limits.{name}"),
                    "must be > 0",
                ));
            }
        }
        if let Some(fb) = &self.fallback_cluster {
            validate_name("spec.fallbackCluster", fb)?;
        }
        if let Some(k) = &self.kubernetes {
            validate_name("spec.kubernetes.namespace", &k.namespace)?;
            validate_name("spec.kubernetes.service", &k.service)?;
        }
        Ok(())
    }
}
