//! Webhook delivery: JSON POST with an HMAC-SHA256 signature, retried with exponential backoff,
//! every attempt recorded in userdb.

use crate::store::{Delivery, Store, StoreError};
use bytes::Bytes;
use hmac::{Hmac, Mac};
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use sha2::Sha256;
use std::time::Duration;

/// Header carrying `sha256=<hex HMAC of the body>`.
pub const SIGNATURE_HEADER: &str = "x-gw-signature";
/// Attempts before a delivery is marked failed.
pub const MAX_ATTEMPTS: u32 = 8;
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);

/// `sha256=<hex>` of `body` keyed with `secret`.
pub fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret.as_bytes()) {
        Ok(m) => m,
        // HMAC accepts keys of any length; this branch cannot be taken.
        Err(_) => return String::new(),
    };
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Delay before attempt `n + 1` after `n` failures: 1 s, 2 s, 4 s, … capped at 5 min.
pub fn backoff(failures: u32) -> Duration {
    Duration::from_secs(1u64 << failures.min(8)).min(Duration::from_secs(300))
}

/// Sends due deliveries.
pub struct Sender {
    store: Store,
    metrics: Option<crate::metrics::ControlPlaneMetrics>,
    client: Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
}

impl Sender {
    /// A sender over `store`.
    pub fn new(store: Store) -> Self {
        Sender {
            store,
            metrics: None,
            client: Client::builder(TokioExecutor::new()).build_http(),
        }
    }

    /// Counts attempts in `metrics`.
    pub fn with_metrics(mut self, metrics: crate::metrics::ControlPlaneMetrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Attempts every due delivery once.
    pub async fn deliver_due(&self) -> Result<usize, StoreError> {
        let due = self.store.due_deliveries(100).await?;
        let n = due.len();
        for d in due {
            let (ok, status, error) = self.attempt(&d).await;
            let failures = d.attempts + 1;
            let retry_at = (!ok && failures < MAX_ATTEMPTS)
                .then(|| self.store.now_ms() + backoff(failures - 1).as_millis() as i64);
            if let Some(m) = &self.metrics {
                let result = match (ok, retry_at) {
                    (true, _) => "delivered",
                    (false, Some(_)) => "retry",
                    (false, None) => "failed",
                };
                m.webhook_attempts.with_label_values(&[result]).inc();
            }
            if !ok {
                tracing::warn!(url = %d.url, attempt = failures, error = %error, "webhook delivery failed");
            }
            self.store
                .record_delivery_attempt(&d.id, ok, status, &error, retry_at)
                .await?;
        }
        Ok(n)
    }

    async fn attempt(&self, d: &Delivery) -> (bool, Option<u16>, String) {
        let secret = serde_json::from_str::<serde_json::Value>(&d.body)
            .ok()
            .and_then(|v| v.get("_secret").and_then(|s| s.as_str()).map(str::to_owned));
        let body = strip_secret(&d.body);
        let mut req = hyper::Request::post(&d.url)
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .header(
                "user-agent",
                concat!("gw-control-plane/", env!("CARGO_PKG_VERSION")),
            )
            .header("x-gw-delivery", &d.id);
        if let Some(s) = &secret {
            req = req.header(SIGNATURE_HEADER, sign(s, body.as_bytes()));
        }
        let req = match req.body(Full::new(Bytes::from(body))) {
            Ok(r) => r,
            Err(e) => return (false, None, format!("bad request: {e}")),
        };
        match tokio::time::timeout(ATTEMPT_TIMEOUT, self.client.request(req)).await {
            Err(_) => (false, None, "timed out".into()),
            Ok(Err(e)) => (false, None, e.to_string()),
            Ok(Ok(resp)) => {
                let s = resp.status();
                (
                    s.is_success(),
                    Some(s.as_u16()),
                    if s.is_success() {
                        String::new()
                    } else {
                        format!("HTTP {s}")
                    },
                )
            }
        }
    }
}

/// The stored body carries the signing key under `_secret` (userdb is trusted; the key never
/// leaves it); this removes it before sending.
fn strip_secret(body: &str) -> String {
    match serde_json::from_str::<serde_json::Value>(body) {
        Ok(serde_json::Value::Object(mut m)) => {
            m.remove("_secret");
            serde_json::Value::Object(m).to_string()
        }
        _ => body.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_like_openssl() {
        // printf 'hello' | openssl dgst -sha256 -hmac key
        assert_eq!(
            sign("key", b"hello"),
            "sha256=9307b3b915efb5171ff14d8cb55fbcc798c6c0ef1456d66ded1a6aa723a58b7b"
        );
    }

    #[test]
    fn backs_off_exponentially() {
        assert_eq!(backoff(0), Duration::from_secs(1));
        assert_eq!(backoff(3), Duration::from_secs(8));
        assert_eq!(backoff(30), Duration::from_secs(256));
    }

    #[test]
    fn never_sends_the_secret() {
        let b = strip_secret(r#"{"rule":"r","_secret":"s3cr3t"}"#);
        assert_eq!(b, r#"{"rule":"r"}"#);
    }
}
