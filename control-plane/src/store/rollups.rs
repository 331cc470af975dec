//! Stats rollups: per time bucket and per route / cluster / endpoint, mergeable across proxies
//! and replicas (counters and fixed latency buckets are added, never overwritten).

use super::{Store, StoreError};
use sqlx::any::AnyRow;
use sqlx::Row;

pub use gw_proto::telemetry::LATENCY_BOUNDS_MS;

/// Number of latency buckets.
pub const BUCKETS: usize = LATENCY_BOUNDS_MS.len() + 1;

/// Counters of one object over some time.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rollup {
    /// Requests finished (with a status or an upstream error).
    pub requests: u64,
    /// Responses by status class 1xx..5xx.
    pub status: [u64; 5],
    /// Requests that failed without an upstream status (connect failure, reset, timeout).
    pub upstream_errors: u64,
    /// Sum of latencies, µs.
    pub latency_sum_us: u64,
    /// Requests per latency bucket.
    pub buckets: [u64; BUCKETS],
}

/// Index of the latency bucket for `ms`.
pub fn bucket_of(ms: f64) -> usize {
    LATENCY_BOUNDS_MS
        .iter()
        .position(|b| ms <= *b)
        .unwrap_or(BUCKETS - 1)
}

impl Rollup {
    /// Counts one request.
    pub fn record(&mut self, status: u32, latency_us: u64, upstream_error: bool) {
        self.requests += 1;
        if (100..600).contains(&status) {
            self.status[(status / 100 - 1) as usize] += 1;
        }
        if upstream_error && !(500..600).contains(&status) {
            self.upstream_errors += 1;
        }
        self.latency_sum_us += latency_us;
        self.buckets[bucket_of(latency_us as f64 / 1000.0)] += 1;
    }

    /// Adds another rollup's counters.
    pub fn add(&mut self, o: &Rollup) {
        self.requests += o.requests;
        for i in 0..5 {
            self.status[i] += o.status[i];
        }
        self.upstream_errors += o.upstream_errors;
        self.latency_sum_us += o.latency_sum_us;
        for i in 0..BUCKETS {
            self.buckets[i] += o.buckets[i];
        }
    }

    /// Adds per-bucket latency counts and their sum (ms).
    pub fn add_latencies(&mut self, counts: &[u64; BUCKETS], sum_ms: f64) {
        for (b, n) in self.buckets.iter_mut().zip(counts) {
            *b += n;
        }
        self.latency_sum_us += (sum_ms * 1000.0) as u64;
    }

    /// Whether nothing was counted.
    pub fn is_empty(&self) -> bool {
        self.requests == 0 && self.buckets.iter().all(|b| *b == 0)
    }

    /// Failed requests: 5xx plus upstream errors.
    pub fn errors(&self) -> u64 {
        self.status[4] + self.upstream_errors
    }

    /// Failed / total, 0 without requests.
    pub fn error_rate(&self) -> f64 {
        if self.requests == 0 {
            0.0
        } else {
            self.errors() as f64 / self.requests as f64
        }
    }

    /// Mean latency, ms.
    pub fn mean_ms(&self) -> f64 {
        let n: u64 = self.buckets.iter().sum();
        if n == 0 {
            0.0
        } else {
            self.latency_sum_us as f64 / 1000.0 / n as f64
        }
    }

    /// Latency quantile (0..1), ms, interpolated linearly inside its bucket.
    pub fn quantile_ms(&self, q: f64) -> f64 {
        let total: u64 = self.buckets.iter().sum();
        if total == 0 {
            return 0.0;
        }
        let rank = q.clamp(0.0, 1.0) * total as f64;
        let mut seen = 0u64;
        for (i, &n) in self.buckets.iter().enumerate() {
            if n > 0 && (seen + n) as f64 >= rank {
                let lo = if i == 0 {
                    0.0
                } else {
                    LATENCY_BOUNDS_MS[i - 1]
                };
                let hi = LATENCY_BOUNDS_MS.get(i).copied().unwrap_or(lo * 2.0);
                let frac = ((rank - seen as f64) / n as f64).clamp(0.0, 1.0);
                return lo + (hi - lo) * frac;
            }
            seen += n;
        }
        LATENCY_BOUNDS_MS[LATENCY_BOUNDS_MS.len() - 1]
    }
}

/// Which object a rollup row is for.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RollupKey {
    /// Start of the time bucket, ms.
    pub bucket_ms: i64,
    /// `route`, `cluster` or `endpoint`.
    pub kind: String,
    /// Tenant.
    pub tenant: String,
    /// Object name (`cluster/ADDR:PORT` for endpoints).
    pub name: String,
}

fn bucket_cols() -> String {
    (0..BUCKETS)
        .map(|i| format!("b{i:02}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Counter columns of `gw_rollups`, in bind order.
const COUNTERS: [&str; 8] = [
    "requests",
    "s1xx",
    "s2xx",
    "s3xx",
    "s4xx",
    "s5xx",
    "upstream_errors",
    "latency_sum_us",
];

/// Every summable column: counters, then latency buckets.
fn value_columns() -> impl Iterator<Item = String> {
    COUNTERS
        .iter()
        .map(|c| c.to_string())
        .chain((0..BUCKETS).map(|i| format!("b{i:02}")))
}

fn sums() -> String {
    value_columns()
        .map(|c| format!("CAST(SUM({c}) AS BIGINT) AS {c}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn decode(r: &AnyRow) -> Result<Rollup, StoreError> {
    let g = |c: &str| -> Result<u64, StoreError> {
        Ok(r.try_get::<Option<i64>, _>(c)?.unwrap_or(0).max(0) as u64)
    };
    let mut out = Rollup {
        requests: g("requests")?,
        status: [g("s1xx")?, g("s2xx")?, g("s3xx")?, g("s4xx")?, g("s5xx")?],
        upstream_errors: g("upstream_errors")?,
        latency_sum_us: g("latency_sum_us")?,
        buckets: [0; BUCKETS],
    };
    for i in 0..BUCKETS {
        out.buckets[i] = g(&format!("b{i:02}"))?;
    }
    Ok(out)
}

impl Store {
    /// Adds rollup deltas, all in one transaction.
    pub async fn add_rollups(&self, rows: &[(RollupKey, Rollup)]) -> Result<(), StoreError> {
        if rows.is_empty() {
            return Ok(());
        }
        let b = bucket_cols();
        let params: Vec<String> = (5..5 + 8 + BUCKETS).map(|i| format!("${i}")).collect();
        let updates: Vec<String> = value_columns()
            .map(|c| format!("{c} = gw_rollups.{c} + excluded.{c}"))
            .collect();
        let sql = format!(
            "INSERT INTO gw_rollups (bucket, kind, tenant, name, requests, s1xx, s2xx, s3xx, s4xx, s5xx, upstream_errors, latency_sum_us, {b}) \
             VALUES ($1, $2, $3, $4, {}) ON CONFLICT (bucket, kind, tenant, name) DO UPDATE SET {}",
            params.join(", "),
            updates.join(", ")
        );
        let mut tx = self.pool.begin().await?;
        for (k, r) in rows {
            let mut q = sqlx::query(&sql)
                .bind(k.bucket_ms)
                .bind(&k.kind)
                .bind(&k.tenant)
                .bind(&k.name)
                .bind(r.requests as i64);
            for s in r.status {
                q = q.bind(s as i64);
            }
            q = q
                .bind(r.upstream_errors as i64)
                .bind(r.latency_sum_us as i64);
            for n in r.buckets {
                q = q.bind(n as i64);
            }
            q.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Totals per object of `kind` since `since_ms`, optionally for one tenant and/or one name,
    /// ordered by tenant and name.
    pub async fn stats(
        &self,
        kind: &str,
        tenant: &str,
        name: &str,
        since_ms: i64,
    ) -> Result<Vec<(String, String, Rollup)>, StoreError> {
        let sql = format!(
            "SELECT tenant, name, {} FROM gw_rollups WHERE bucket >= $1 AND kind = $2 AND ($3 = '' OR tenant = $3) \
             AND ($4 = '' OR name = $4) GROUP BY tenant, name ORDER BY tenant, name",
            sums()
        );
        let rows = sqlx::query(&sql)
            .bind(since_ms)
            .bind(kind)
            .bind(tenant)
            .bind(name)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("tenant")?, r.try_get("name")?, decode(r)?)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_and_rates() {
        let mut r = Rollup::default();
        for i in 0..100u64 {
            r.record(if i < 10 { 503 } else { 200 }, (i + 1) * 1000, false);
        }
        assert_eq!(r.requests, 100);
        assert!((r.error_rate() - 0.1).abs() < 1e-9);
        let p50 = r.quantile_ms(0.5);
        assert!((25.0..=50.0).contains(&p50), "p50 {p50}");
        let p99 = r.quantile_ms(0.99);
        assert!((50.0..=100.0).contains(&p99), "p99 {p99}");
        assert!((r.mean_ms() - 50.5).abs() < 1e-9);
        let mut twice = r.clone();
        twice.add(&r);
        assert_eq!(twice.requests, 200);
        assert_eq!(
            twice.quantile_ms(0.5),
            p50,
            "merging equal histograms keeps quantiles"
        );
        r.record(0, 5_000, true);
        assert_eq!(r.upstream_errors, 1);
        assert_eq!(r.errors(), 11);
    }
}
