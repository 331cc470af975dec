//! Endpoints: static (in a cluster spec), registered through the API, or discovered from Kubernetes.

use super::validate::{host_or_ip, port, validate_name};
use super::FieldError;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

/// Where an endpoint came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndpointSource {
    /// Written in the cluster spec.
    Static,
    /// Registered through the Endpoints API.
    Registry,
    /// Discovered from Kubernetes EndpointSlices.
    Kubernetes,
}

impl EndpointSource {
    /// Stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            EndpointSource::Static => "static",
            EndpointSource::Registry => "registry",
            EndpointSource::Kubernetes => "kubernetes",
        }
    }

    /// Parses the stored spelling.
    pub fn parse(s: &str) -> Option<Self> {
        [
            EndpointSource::Static,
            EndpointSource::Registry,
            EndpointSource::Kubernetes,
        ]
        .into_iter()
        .find(|e| e.as_str() == s)
    }
}

/// Identity of an endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EndpointKey {
    /// Owning tenant.
    pub tenant: String,
    /// Cluster it belongs to.
    pub cluster: String,
    /// IP address or host name.
    pub address: String,
    /// TCP port.
    pub port: u32,
}

impl EndpointKey {
    /// Validates the key's fields.
    pub fn validate(&self) -> Result<(), FieldError> {
        validate_name("tenant", &self.tenant)?;
        validate_name("cluster", &self.cluster)?;
        host_or_ip("address", &self.address)?;
        port("port", self.port)
    }
}

impl std::fmt::Display for EndpointKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}/{}/{}:{}",
            self.tenant, self.cluster, self.address, self.port
        )
    }
}

/// A live endpoint of a cluster.
#[derive(Debug, Clone, PartialEq)]
pub struct Endpoint {
    /// Identity.
    pub key: EndpointKey,
    /// Relative weight.
    pub weight: u32,
    /// Free-form metadata.
    pub metadata: BTreeMap<String, String>,
    /// Where it came from.
    pub source: EndpointSource,
    /// Lease length; `None` never expires.
    pub ttl: Option<Duration>,
    /// When the lease runs out, ms since the epoch.
    pub expires_at_ms: Option<i64>,
    /// When it was first registered, ms since the epoch.
    pub registered_at_ms: i64,
    /// Revision of the last write.
    pub resource_version: u64,
    /// Health as the registry reports it.
    pub healthy: bool,
}

impl Endpoint {
    /// Validates weight and metadata (the key separately).
    pub fn validate(&self) -> Result<(), FieldError> {
        self.key.validate()?;
        if self.weight == 0 || self.weight > 1000 {
            return Err(FieldError::new(
                "weight",
                format!("{} must be in 1..=1000", self.weight),
            ));
        }
        if let Some(ttl) = self.ttl {
            if ttl < Duration::from_secs(1) {
                return Err(FieldError::new("ttl", "must be at least 1s"));
            }
        }
        if self.metadata.keys().any(|k| k.is_empty()) {
            return Err(FieldError::new("metadata", "keys must not be empty"));
        }
        Ok(())
    }
}

/// Serialized form of endpoint metadata, as stored.
pub fn metadata_json(m: &BTreeMap<String, String>) -> String {
    serde_json::to_string(m).unwrap_or_else(|_| "{}".into())
}
