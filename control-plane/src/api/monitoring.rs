//! Alerts, Events and Stats services: the monitoring chain as operators see it.

use super::store_status;
use crate::auth::{check, list_scope, principal, Access};
use crate::store::{
    parse_status_filter, AccessLog, AlertRecord, EventFilter, EventRecord, LogFilter, Store,
};
use gw_proto::convert::{duration_from_pb, ts_to_pb};
use gw_proto::gateway::v1 as pb;
use std::pin::Pin;
use std::time::Duration;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

fn since_ms(
    store: &Store,
    since: Option<&prost_types::Duration>,
    default: Duration,
) -> Result<i64, Status> {
    let d = duration_from_pb("since", since)
        .map_err(|e| Status::invalid_argument(e.to_string()))?
        .unwrap_or(default);
    Ok(store.now_ms() - d.as_millis() as i64)
}

/// `Alerts`: list and acknowledge.
#[derive(Clone, Debug)]
pub struct AlertsApi {
    store: Store,
}

impl AlertsApi {
    /// Serves `store`.
    pub fn new(store: Store) -> Self {
        AlertsApi { store }
    }

    /// The tonic service.
    pub fn into_service(self) -> pb::alerts_server::AlertsServer<Self> {
        pb::alerts_server::AlertsServer::new(self)
    }
}

fn alert_pb(a: AlertRecord) -> pb::Alert {
    pb::Alert {
        id: a.id,
        tenant: a.tenant,
        rule: a.rule,
        metric: a.metric,
        scope: a.scope,
        state: a.state,
        value: a.value,
        threshold: a.threshold,
        started_at: ts_to_pb(a.started_at_ms),
        fired_at: a.fired_at_ms.and_then(ts_to_pb),
        resolved_at: a.resolved_at_ms.and_then(ts_to_pb),
        acked_at: a.acked_at_ms.and_then(ts_to_pb),
        acked_by: a.acked_by,
        delivery: a.delivery,
    }
}

#[tonic::async_trait]
impl pb::alerts_server::Alerts for AlertsApi {
    async fn list_alerts(
        &self,
        req: Request<pb::ListAlertsRequest>,
    ) -> Result<Response<pb::ListAlertsResponse>, Status> {
        let tenant = list_scope(principal(&req), &req.get_ref().tenant)?;
        let r = req.into_inner();
        if !matches!(r.state.as_str(), "" | "pending" | "firing" | "resolved") {
            return Err(Status::invalid_argument(format!(
                "state: {:?} is not pending, firing or resolved",
                r.state
            )));
        }
        let alerts = self
            .store
            .list_alerts(&tenant, &r.state, r.limit)
            .await
            .map_err(store_status)?;
        Ok(Response::new(pb::ListAlertsResponse {
            alerts: alerts.into_iter().map(alert_pb).collect(),
        }))
    }

    async fn ack_alert(
        &self,
        req: Request<pb::AckAlertRequest>,
    ) -> Result<Response<pb::Alert>, Status> {
        let who = principal(&req).cloned();
        let r = req.into_inner();
        if r.id.is_empty() {
            return Err(Status::invalid_argument("id: is required"));
        }
        if who.is_some() {
            let alert = self.store.get_alert(&r.id).await.map_err(store_status)?;
            let tenant = (!alert.tenant.is_empty()).then_some(alert.tenant.as_str());
            check(who.as_ref(), Access::Write, tenant)?;
        }
        let by = if r.by.is_empty() {
            "gwctl".to_owned()
        } else {
            r.by
        };
        let a = self
            .store
            .ack_alert(&r.id, &by)
            .await
            .map_err(store_status)?;
        Ok(Response::new(alert_pb(a)))
    }
}

/// `Events`: list, follow, record.
#[derive(Clone, Debug)]
pub struct EventsApi {
    store: Store,
    shutdown: Option<tokio::sync::watch::Receiver<bool>>,
    tokens: Option<crate::auth::Tokens>,
}

impl EventsApi {
    /// Serves `store`.
    pub fn new(store: Store) -> Self {
        EventsApi {
            store,
            shutdown: None,
            tokens: None,
        }
    }

    /// With auth on: a followed stream ends when its token is revoked or expires.
    pub fn with_tokens(mut self, tokens: Option<crate::auth::Tokens>) -> Self {
        self.tokens = tokens;
        self
    }

    /// Ends `--follow` streams cleanly when `shutdown` turns true.
    pub fn with_shutdown(mut self, shutdown: tokio::sync::watch::Receiver<bool>) -> Self {
        self.shutdown = Some(shutdown);
        self
    }

    /// The tonic service.
    pub fn into_service(self) -> pb::events_server::EventsServer<Self> {
        pb::events_server::EventsServer::new(self)
    }
}

fn event_pb(e: EventRecord) -> pb::Event {
    pb::Event {
        id: e.id,
        at: ts_to_pb(e.at_ms),
        kind: e.kind,
        severity: e.severity,
        tenant: e.tenant,
        object: e.object,
        node: e.node,
        message: e.message,
        attributes: e.attributes.into_iter().collect(),
    }
}

type EventStream = Pin<Box<dyn Stream<Item = Result<pb::Event, Status>> + Send>>;

#[tonic::async_trait]
impl pb::events_server::Events for EventsApi {
    type ListEventsStream = EventStream;

    async fn list_events(
        &self,
        req: Request<pb::ListEventsRequest>,
    ) -> Result<Response<EventStream>, Status> {
        let who = principal(&req).cloned();
        let tenant = list_scope(who.as_ref(), &req.get_ref().tenant)?;
        let tokens = self.tokens.clone();
        let r = req.into_inner();
        let mut filter = EventFilter {
            tenant,
            kind: r.kind,
            since_ms: since_ms(&self.store, r.since.as_ref(), Duration::from_secs(3600))?,
            after_id: String::new(),
            limit: r.limit,
        };
        // Subscribe before the first read so nothing recorded in between is missed.
        let mut live = self.store.subscribe_events();
        let first = self
            .store
            .list_events(&filter)
            .await
            .map_err(store_status)?;
        let store = self.store.clone();
        let follow = r.follow;
        let mut shutdown = self.shutdown.clone();
        let stream = async_stream(move |tx| async move {
            for e in first {
                filter.after_id = e.id.clone();
                if tx.send(Ok(event_pb(e))).await.is_err() {
                    return;
                }
            }
            if !follow {
                return;
            }
            // Local events wake the stream at once; the poll catches other replicas' events.
            let mut poll = tokio::time::interval(Duration::from_secs(1));
            loop {
                tokio::select! {
                    _ = live.recv() => {}
                    _ = poll.tick() => {}
                    _ = tx.closed() => return,
                    _ = shutdown_signal(&mut shutdown) => return,
                }
                if let (Some(tokens), Some(p)) = (&tokens, &who) {
                    if !tokens.still_valid(p) {
                        let gone = Status::unauthenticated("the token was revoked or expired");
                        let _ = tx.send(Err(gone)).await;
                        return;
                    }
                }
                match store.list_events(&filter).await {
                    Ok(events) => {
                        for e in events {
                            filter.after_id = e.id.clone();
                            if tx.send(Ok(event_pb(e))).await.is_err() {
                                return;
                            }
                        }
                    }
                    Err(e) => {
                        let _ = tx.send(Err(store_status(e))).await;
                        return;
                    }
                }
            }
        });
        Ok(Response::new(stream))
    }

    async fn record_event(
        &self,
        req: Request<pb::RecordEventRequest>,
    ) -> Result<Response<pb::RecordEventResponse>, Status> {
        let who = principal(&req).cloned();
        let e = req
            .into_inner()
            .event
            .ok_or_else(|| Status::invalid_argument("event: is required"))?;
        if e.kind.is_empty() {
            return Err(Status::invalid_argument("event.kind: is required"));
        }
        if !matches!(e.severity.as_str(), "" | "info" | "warning" | "error") {
            return Err(Status::invalid_argument(
                "event.severity: must be info, warning or error",
            ));
        }
        let tenant = (!e.tenant.is_empty()).then_some(e.tenant.as_str());
        check(who.as_ref(), Access::Write, tenant)?;
        let rec = EventRecord {
            id: String::new(),
            at_ms: e
                .at
                .as_ref()
                .map_or(0, |t| t.seconds * 1000 + i64::from(t.nanos) / 1_000_000),
            kind: e.kind,
            severity: e.severity,
            tenant: e.tenant,
            object: e.object,
            node: e.node,
            message: e.message,
            attributes: e.attributes.into_iter().collect(),
        };
        let saved = self.store.record_event(rec).await.map_err(store_status)?;
        Ok(Response::new(pb::RecordEventResponse { id: saved.id }))
    }
}

/// Resolves when `shutdown` turns true; never without one.
async fn shutdown_signal(shutdown: &mut Option<tokio::sync::watch::Receiver<bool>>) {
    match shutdown {
        Some(rx) => crate::server::stopped(rx).await,
        None => std::future::pending().await,
    }
}

/// Runs `f` with the sending half of a channel and returns the receiving half as a stream.
fn async_stream<F, Fut>(f: F) -> EventStream
where
    F: FnOnce(tokio::sync::mpsc::Sender<Result<pb::Event, Status>>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    tokio::spawn(f(tx));
    Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))
}

/// `Stats`: rollups and access logs.
#[derive(Clone, Debug)]
pub struct StatsApi {
    store: Store,
}

impl StatsApi {
    /// Serves `store`.
    pub fn new(store: Store) -> Self {
        StatsApi { store }
    }

    /// The tonic service.
    pub fn into_service(self) -> pb::stats_server::StatsServer<Self> {
        pb::stats_server::StatsServer::new(self)
    }
}

fn log_pb(l: AccessLog) -> pb::AccessLogRecord {
    pb::AccessLogRecord {
        at: ts_to_pb(l.at_ms),
        node: l.node,
        request_id: l.request_id,
        client_ip: l.client_ip,
        tenant: l.tenant,
        route: l.route,
        cluster: l.cluster,
        endpoint: l.endpoint,
        method: l.method,
        path: l.path,
        status: l.status,
        duration: Some(prost_types::Duration {
            seconds: l.duration_us / 1_000_000,
            nanos: ((l.duration_us % 1_000_000) * 1000) as i32,
        }),
        upstream_error: l.upstream_error,
        authority: l.authority,
    }
}

#[tonic::async_trait]
impl pb::stats_server::Stats for StatsApi {
    async fn get_stats(
        &self,
        req: Request<pb::StatsRequest>,
    ) -> Result<Response<pb::StatsResponse>, Status> {
        let tenant = list_scope(principal(&req), &req.get_ref().tenant)?;
        let r = req.into_inner();
        if !matches!(r.kind.as_str(), "route" | "cluster" | "endpoint") {
            return Err(Status::invalid_argument(format!(
                "kind: {:?} is not route, cluster or endpoint",
                r.kind
            )));
        }
        let since = since_ms(&self.store, r.since.as_ref(), Duration::from_secs(15 * 60))?;
        let rows = self
            .store
            .stats(&r.kind, &tenant, &r.name, since)
            .await
            .map_err(store_status)?;
        let rows = rows
            .into_iter()
            .map(|(tenant, name, x)| pb::StatsRow {
                kind: r.kind.clone(),
                tenant,
                name,
                requests: x.requests,
                success_rate: if x.requests == 0 {
                    1.0
                } else {
                    1.0 - x.error_rate()
                },
                status_1xx: x.status[0],
                status_2xx: x.status[1],
                status_3xx: x.status[2],
                status_4xx: x.status[3],
                status_5xx: x.status[4],
                upstream_errors: x.upstream_errors,
                mean_ms: x.mean_ms(),
                p50_ms: x.quantile_ms(0.5),
                p90_ms: x.quantile_ms(0.9),
                p99_ms: x.quantile_ms(0.99),
            })
            .collect();
        Ok(Response::new(pb::StatsResponse { rows }))
    }

    async fn get_logs(
        &self,
        req: Request<pb::LogsRequest>,
    ) -> Result<Response<pb::LogsResponse>, Status> {
        let tenant = list_scope(principal(&req), &req.get_ref().tenant)?;
        let r = req.into_inner();
        let status = match r.status.as_str() {
            "" => None,
            s => Some(parse_status_filter(s).ok_or_else(|| {
                Status::invalid_argument(format!(
                    "status: {s:?} is not a class like 5xx or a code like 503"
                ))
            })?),
        };
        let filter = LogFilter {
            tenant,
            route: r.route,
            cluster: r.cluster,
            status,
            since_ms: since_ms(&self.store, r.since.as_ref(), Duration::from_secs(10 * 60))?,
            limit: r.limit,
        };
        let logs = self.store.query_logs(&filter).await.map_err(store_status)?;
        Ok(Response::new(pb::LogsResponse {
            records: logs.into_iter().map(log_pb).collect(),
        }))
    }

    async fn get_endpoint_states(
        &self,
        req: Request<pb::EndpointStatesRequest>,
    ) -> Result<Response<pb::EndpointStatesResponse>, Status> {
        let tenant = list_scope(principal(&req), &req.get_ref().tenant)?;
        let r = req.into_inner();
        let since = self.store.now_ms() - 120_000;
        let states = self
            .store
            .endpoint_states(since)
            .await
            .map_err(store_status)?;
        let states = states
            .into_iter()
            .filter(|s| {
                (tenant.is_empty() || s.tenant == tenant)
                    && (r.cluster.is_empty() || s.cluster == r.cluster)
            })
            .map(|s| pb::EndpointState {
                node: s.node,
                tenant: s.tenant,
                cluster: s.cluster,
                endpoint: s.endpoint,
                breaker: s.breaker,
                healthy: s.healthy,
                updated_at: ts_to_pb(s.updated_at_ms),
            })
            .collect();
        Ok(Response::new(pb::EndpointStatesResponse { states }))
    }
}
