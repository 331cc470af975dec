//! `kind: AlertRule`: a condition over fleet stats or fleet state that fires and resolves alerts.

use super::serde_duration;
use super::validate::{positive, validate_name};
use super::FieldError;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// What an alert rule measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertMetric {
    /// Failed / total requests over the window (fraction).
    ErrorRate,
    /// 99th percentile latency over the window (duration).
    P99Latency,
    /// Endpoints whose breaker is open (count).
    BreakerOpen,
    /// Clusters with no healthy endpoint (count).
    NoHealthyEndpoints,
    /// Proxies that have not ACKed the latest config for longer than the threshold (duration).
    ProxyStale,
    /// Proxies whose last response was a NACK (count).
    ProxyNacked,
}

impl AlertMetric {
    /// Manifest spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertMetric::ErrorRate => "error_rate",
            AlertMetric::P99Latency => "p99_latency",
            AlertMetric::BreakerOpen => "breaker_open",
            AlertMetric::NoHealthyEndpoints => "no_healthy_endpoints",
            AlertMetric::ProxyStale => "proxy_stale",
            AlertMetric::ProxyNacked => "proxy_nacked",
        }
    }

    /// Parses the manifest spelling.
    pub fn parse(s: &str) -> Option<AlertMetric> {
        use AlertMetric::*;
        [
            ErrorRate,
            P99Latency,
            BreakerOpen,
            NoHealthyEndpoints,
            ProxyStale,
            ProxyNacked,
        ]
        .into_iter()
        .find(|m| m.as_str() == s)
    }

    /// Whether the threshold is a duration (else a number).
    pub fn threshold_is_duration(self) -> bool {
        matches!(self, AlertMetric::P99Latency | AlertMetric::ProxyStale)
    }
}

/// What a rule looks at: one route, one cluster, or the whole tenant.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct AlertScope {
    /// A route of the rule's tenant.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
    /// A cluster of the rule's tenant.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    /// The tenant (must be the rule's own).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
}

impl AlertScope {
    /// `route/NAME`, `cluster/NAME` or `tenant/NAME`.
    pub fn key(&self, tenant: &str) -> String {
        match (&self.route, &self.cluster) {
            (Some(r), _) => format!("route/{r}"),
            (None, Some(c)) => format!("cluster/{c}"),
            (None, None) => format!("tenant/{tenant}"),
        }
    }
}

/// A threshold: a number (fraction or count) or a duration.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Threshold {
    /// Fraction or count.
    Number(f64),
    /// Latency or staleness.
    Duration(#[serde(with = "serde_duration")] Duration),
}

impl Default for Threshold {
    fn default() -> Self {
        Threshold::Number(0.0)
    }
}

impl Threshold {
    /// As a number: the number itself, or a duration in seconds.
    pub fn value(self) -> f64 {
        match self {
            Threshold::Number(n) => n,
            Threshold::Duration(d) => d.as_secs_f64(),
        }
    }
}

/// Where alerts of a rule are delivered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Webhook {
    /// `http://` or `https://` URL receiving a JSON POST.
    pub url: String,
    /// HMAC-SHA256 key for the `X-Gw-Signature` header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

/// `kind: AlertRule` spec.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AlertRuleSpec {
    /// What is measured.
    pub metric: AlertMetric,
    /// What it is measured over.
    #[serde(default)]
    pub scope: AlertScope,
    /// Fires when the value exceeds this.
    #[serde(default)]
    pub threshold: Threshold,
    /// Evaluation window.
    #[serde(default = "one_minute", with = "serde_duration")]
    pub window: Duration,
    /// How long the condition must hold before firing.
    #[serde(rename = "for", default, with = "serde_duration")]
    pub for_: Duration,
    /// Delivery.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<Webhook>,
}

fn one_minute() -> Duration {
    Duration::from_secs(60)
}

impl AlertRuleSpec {
    /// Canonical form: the rule's tenant is implied, so an explicit one is dropped.
    pub fn normalize(&mut self, tenant: &str) {
        if self.scope.tenant.as_deref() == Some(tenant) {
            self.scope.tenant = None;
        }
    }

    /// Validates every field (references to routes/clusters are checked by the store).
    pub fn validate(&self) -> Result<(), FieldError> {
        let s = &self.scope;
        if s.route.is_some() && s.cluster.is_some() {
            return Err(FieldError::new(
                "spec.scope",
                "set at most one of route and cluster",
            ));
        }
        if let Some(r) = &s.route {
            validate_name("spec.scope.route", r)?;
        }
        if let Some(c) = &s.cluster {
            validate_name("spec.scope.cluster", c)?;
        }
        if let Some(t) = &s.tenant {
            return Err(FieldError::new(
                "spec.scope.tenant",
                format!("{t:?} is not the rule's own tenant"),
            ));
        }
        match (self.metric.threshold_is_duration(), self.threshold) {
            (true, Threshold::Duration(d)) => positive("spec.threshold", d)?,
            (true, Threshold::Number(_)) => {
                return Err(FieldError::new(
                    "spec.threshold",
                    format!(
                        "must be a duration (e.g. 250ms) for {}",
                        self.metric.as_str()
                    ),
                ))
            }
            (false, Threshold::Duration(_)) => {
                return Err(FieldError::new(
                    "spec.threshold",
                    format!("must be a number for {}", self.metric.as_str()),
                ))
            }
            (false, Threshold::Number(n)) => {
                if !n.is_finite() || n < 0.0 {
                    return Err(FieldError::new("spec.threshold", "must be >= 0"));
                }
                if self.metric == AlertMetric::ErrorRate && n > 1.0 {
                    return Err(FieldError::new(
                        "spec.threshold",
                        "is a fraction of requests: must be in [0, 1]",
                    ));
                }
            }
        }
        positive("spec.window", self.window)?;
        if let Some(w) = &self.webhook {
            if !(w.url.starts_with("http://") || w.url.starts_with("https://")) || w.url.len() < 10
            {
                return Err(FieldError::new(
                    "spec.webhook.url",
                    format!("{:?} is not an http(s) URL", w.url),
                ));
            }
        }
        Ok(())
    }
}
