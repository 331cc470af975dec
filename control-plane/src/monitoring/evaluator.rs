//! Alert-rule evaluation: one step per tick, an explicit state machine per (rule, scope).
//!
//! | stored state | condition holds | condition clear |
//! |---|---|---|
//! | none | → pending (→ firing at once when `for` is 0) | — |
//! | pending | → firing once held for `for` | dropped (never notified) |
//! | firing | value updated | → resolved, webhook sent |
//!
//! Firing and resolving each enqueue a webhook delivery and record an event, in the transaction
//! that changes the alert.

use crate::store::{new_id, AlertRecord, Delivery, EventRecord, Rollup, Store, StoreError};
use gw_proto::model::{AlertMetric, AlertRuleSpec, Kind, Spec};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// One proxy's config sync, as the xDS server knows it.
#[derive(Debug, Clone, PartialEq)]
pub struct ProxySync {
    /// Node id.
    pub node: String,
    /// Its last response to a push was a NACK.
    pub nacked: bool,
    /// How long it has lagged behind the latest config (`None` when in sync).
    pub stale_for: Option<Duration>,
}

/// The fleet's sync state (implemented by the xDS server's fleet registry).
pub trait FleetView: Send + Sync + 'static {
    /// Every connected proxy.
    fn proxies(&self) -> Vec<ProxySync>;
}

/// A fleet with no proxies (when no xDS server runs in this process).
#[derive(Debug, Default)]
pub struct NoFleet;

impl FleetView for NoFleet {
    fn proxies(&self) -> Vec<ProxySync> {
        Vec::new()
    }
}

/// Endpoint state older than this is ignored (its proxy is gone).
const STATE_FRESHNESS: Duration = Duration::from_secs(120);

/// Evaluates every alert rule.
pub struct Evaluator {
    store: Store,
    fleet: Arc<dyn FleetView>,
}

fn rfc3339(ms: i64) -> String {
    let t = std::time::UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_millis(t).to_string()
}

impl Evaluator {
    /// An evaluator over `store` and `fleet`.
    pub fn new(store: Store, fleet: Arc<dyn FleetView>) -> Self {
        Evaluator { store, fleet }
    }

    /// One evaluation of every rule; returns the number of alert state changes.
    pub async fn tick(&self) -> Result<usize, StoreError> {
        let now = self.store.now_ms();
        let rules = self.rules().await?;
        let mut open: HashMap<(String, String, String), AlertRecord> = self
            .store
            .open_alerts()
            .await?
            .into_iter()
            .map(|a| ((a.tenant.clone(), a.rule.clone(), a.scope.clone()), a))
            .collect();
        let mut changes = 0;
        for (tenant, name, spec) in &rules {
            let scope = spec.scope.key(tenant);
            let value = self.measure(tenant, spec, now).await?;
            let threshold = spec.threshold.value();
            let holds = value > threshold;
            let current = open.remove(&(tenant.clone(), name.clone(), scope.clone()));
            changes += self
                .step(tenant, name, spec, &scope, value, holds, current, now)
                .await?;
        }
        // Alerts whose rule is gone resolve: nobody is watching that condition any more.
        for (_, a) in open {
            if a.state == "pending" {
                self.store.drop_pending_alert(&a.id).await?;
            } else {
                self.resolve(a, None, now).await?;
            }
            changes += 1;
        }
        Ok(changes)
    }

    async fn rules(&self) -> Result<Vec<(String, String, AlertRuleSpec)>, StoreError> {
        let mut out = Vec::new();
        let mut token = String::new();
        loop {
            let page = self.store.list(Kind::AlertRule, None, 1000, &token).await?;
            for o in page.items {
                if let Spec::AlertRule(spec) = o.spec {
                    out.push((o.meta.tenant, o.meta.name, *spec));
                }
            }
            match page.next_page_token {
                Some(t) => token = t,
                None => return Ok(out),
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn step(
        &self,
        tenant: &str,
        rule: &str,
        spec: &AlertRuleSpec,
        scope: &str,
        value: f64,
        holds: bool,
        current: Option<AlertRecord>,
        now: i64,
    ) -> Result<usize, StoreError> {
        let for_ms = spec.for_.as_millis() as i64;
        match (current, holds) {
            (None, false) => Ok(0),
            (None, true) => {
                let a = AlertRecord {
                    id: new_id(now),
                    tenant: tenant.into(),
                    rule: rule.into(),
                    metric: spec.metric.as_str().into(),
                    scope: scope.into(),
                    state: "pending".into(),
                    value,
                    threshold: spec.threshold.value(),
                    started_at_ms: now,
                    updated_at_ms: now,
                    ..Default::default()
                };
                if for_ms == 0 {
                    self.fire(a, spec, now).await?;
                } else {
                    self.store.save_alert(&a, None).await?;
                }
                Ok(1)
            }
            (Some(a), false) if a.state == "pending" => {
                self.store.drop_pending_alert(&a.id).await?;
                Ok(1)
            }
            (Some(mut a), false) => {
                a.value = value;
                self.resolve(a, Some(spec), now).await?;
                Ok(1)
            }
            (Some(a), true) if a.state == "pending" && now - a.started_at_ms >= for_ms => {
                self.fire(AlertRecord { value, ..a }, spec, now).await?;
                Ok(1)
            }
            (Some(mut a), true) => {
                if a.value != value {
                    a.value = value;
                    a.updated_at_ms = now;
                    self.store.save_alert(&a, None).await?;
                }
                Ok(0)
            }
        }
    }

    fn delivery(a: &AlertRecord, spec: Option<&AlertRuleSpec>, status: &str) -> Option<Delivery> {
        let hook = spec?.webhook.as_ref()?;
        let mut body = serde_json::json!({
            "rule": a.rule,
            "tenant": a.tenant,
            "status": status,
            "metric": a.metric,
            "scope": a.scope,
            "value": a.value,
            "threshold": a.threshold,
            "startsAt": rfc3339(a.fired_at_ms.unwrap_or(a.started_at_ms)),
            "alertId": a.id,
        });
        if let Some(r) = a.resolved_at_ms {
            body["endsAt"] = rfc3339(r).into();
        }
        if let Some(s) = &hook.secret {
            body["_secret"] = s.clone().into();
        }
        Some(Delivery {
            status: status.into(),
            url: hook.url.clone(),
            body: body.to_string(),
            ..Default::default()
        })
    }

    async fn fire(
        &self,
        mut a: AlertRecord,
        spec: &AlertRuleSpec,
        now: i64,
    ) -> Result<(), StoreError> {
        a.state = "firing".into();
        a.fired_at_ms = Some(now);
        a.updated_at_ms = now;
        self.store
            .save_alert(&a, Self::delivery(&a, Some(spec), "firing"))
            .await?;
        tracing::warn!(rule = %a.rule, tenant = %a.tenant, scope = %a.scope, value = a.value, "alert firing");
        self.event(
            &a,
            "alert_firing",
            "warning",
            format!("{} {} > {}", a.metric, a.value, a.threshold),
        )
        .await
    }

    async fn resolve(
        &self,
        mut a: AlertRecord,
        spec: Option<&AlertRuleSpec>,
        now: i64,
    ) -> Result<(), StoreError> {
        a.state = "resolved".into();
        a.resolved_at_ms = Some(now);
        a.updated_at_ms = now;
        self.store
            .save_alert(&a, Self::delivery(&a, spec, "resolved"))
            .await?;
        tracing::info!(rule = %a.rule, tenant = %a.tenant, scope = %a.scope, "alert resolved");
        self.event(
            &a,
            "alert_resolved",
            "info",
            format!("{} back to {}", a.metric, a.value),
        )
        .await
    }

    async fn event(
        &self,
        a: &AlertRecord,
        kind: &str,
        severity: &str,
        message: String,
    ) -> Result<(), StoreError> {
        let e = EventRecord {
            kind: kind.into(),
            severity: severity.into(),
            tenant: a.tenant.clone(),
            object: format!("alertrule/{}", a.rule),
            message,
            attributes: [
                ("alert".to_string(), a.id.clone()),
                ("scope".to_string(), a.scope.clone()),
            ]
            .into(),
            ..Default::default()
        };
        self.store.record_event(e).await.map(|_| ())
    }

    /// The rule's current value.
    async fn measure(
        &self,
        tenant: &str,
        spec: &AlertRuleSpec,
        now: i64,
    ) -> Result<f64, StoreError> {
        let since = now - spec.window.as_millis() as i64;
        match spec.metric {
            AlertMetric::ErrorRate => Ok(self.traffic(tenant, spec, since).await?.error_rate()),
            AlertMetric::P99Latency => {
                Ok(self.traffic(tenant, spec, since).await?.quantile_ms(0.99) / 1000.0)
            }
            AlertMetric::BreakerOpen | AlertMetric::NoHealthyEndpoints => {
                let clusters = self.scope_clusters(tenant, spec).await?;
                let states = self
                    .store
                    .endpoint_states(now - STATE_FRESHNESS.as_millis() as i64)
                    .await?;
                let in_scope = states.iter().filter(|s| {
                    s.tenant == tenant && clusters.as_ref().is_none_or(|c| c.contains(&s.cluster))
                });
                if spec.metric == AlertMetric::BreakerOpen {
                    let mut open: Vec<(&str, &str)> = in_scope
                        .filter(|s| s.breaker == "open")
                        .map(|s| (s.cluster.as_str(), s.endpoint.as_str()))
                        .collect();
                    open.sort_unstable();
                    open.dedup();
                    Ok(open.len() as f64)
                } else {
                    let mut healthy: HashMap<&str, bool> = HashMap::new();
                    for s in in_scope {
                        *healthy.entry(s.cluster.as_str()).or_default() |= s.healthy;
                    }
                    Ok(healthy.values().filter(|h| !**h).count() as f64)
                }
            }
            AlertMetric::ProxyStale => Ok(self
                .fleet
                .proxies()
                .iter()
                .filter_map(|p| p.stale_for)
                .max()
                .map_or(0.0, |d| d.as_secs_f64())),
            AlertMetric::ProxyNacked => {
                Ok(self.fleet.proxies().iter().filter(|p| p.nacked).count() as f64)
            }
        }
    }

    async fn traffic(
        &self,
        tenant: &str,
        spec: &AlertRuleSpec,
        since: i64,
    ) -> Result<Rollup, StoreError> {
        let (kind, name) = match (&spec.scope.route, &spec.scope.cluster) {
            (Some(r), _) => ("route", r.as_str()),
            (None, Some(c)) => ("cluster", c.as_str()),
            (None, None) => ("route", ""),
        };
        let mut total = Rollup::default();
        for (_, _, r) in self.store.stats(kind, tenant, name, since).await? {
            total.add(&r);
        }
        Ok(total)
    }

    /// Clusters a rule looks at; `None` means every cluster of the tenant.
    async fn scope_clusters(
        &self,
        tenant: &str,
        spec: &AlertRuleSpec,
    ) -> Result<Option<Vec<String>>, StoreError> {
        if let Some(c) = &spec.scope.cluster {
            return Ok(Some(vec![c.clone()]));
        }
        let Some(r) = &spec.scope.route else {
            return Ok(None);
        };
        let key = gw_proto::model::ObjectKey {
            kind: Kind::Route,
            tenant: tenant.into(),
            name: r.clone(),
        };
        Ok(Some(match self.store.get(&key).await? {
            Some(o) => match &o.spec {
                Spec::Route(route) => route.clusters().map(str::to_owned).collect(),
                _ => Vec::new(),
            },
            None => Vec::new(),
        }))
    }
}
