//! `envoy.service.accesslog.v3.AccessLogService`: `HTTPAccessLogEntry` in, access-log records out.

use super::buffer::Buffer;
use crate::store::AccessLog;
use gw_proto::envoy::pb::envoy::config::core::v3::{address, Address, RequestMethod};
use gw_proto::envoy::pb::envoy::data::accesslog::v3::HttpAccessLogEntry;
use gw_proto::envoy::pb::envoy::service::accesslog::v3::access_log_service_server::{
    AccessLogService, AccessLogServiceServer,
};
use gw_proto::envoy::pb::envoy::service::accesslog::v3::stream_access_logs_message::LogEntries;
use gw_proto::envoy::pb::envoy::service::accesslog::v3::{
    StreamAccessLogsMessage, StreamAccessLogsResponse,
};
use tonic::{Request, Response, Status, Streaming};

/// The AccessLogService server.
#[derive(Clone)]
pub struct AccessLogIngest {
    buffer: Buffer,
}

impl AccessLogIngest {
    /// Ingests into `buffer`.
    pub fn new(buffer: Buffer) -> Self {
        AccessLogIngest { buffer }
    }

    /// The tonic service.
    pub fn into_service(self) -> AccessLogServiceServer<Self> {
        AccessLogServiceServer::new(self).max_decoding_message_size(32 << 20)
    }
}

fn addr(a: Option<&Address>) -> String {
    match a.and_then(|a| a.address.as_ref()) {
        Some(address::Address::SocketAddress(s)) => match &s.port_specifier {
            Some(gw_proto::envoy::pb::envoy::config::core::v3::socket_address::PortSpecifier::PortValue(p)) => {
                format!("{}:{p}", s.address)
            }
            _ => s.address.clone(),
        },
        _ => String::new(),
    }
}

fn ip_only(a: Option<&Address>) -> String {
    match a.and_then(|a| a.address.as_ref()) {
        Some(address::Address::SocketAddress(s)) => s.address.clone(),
        _ => String::new(),
    }
}

/// Converts one Envoy entry; names resolve through `buffer.names`.
pub fn record(buffer: &Buffer, node: &str, e: &HttpAccessLogEntry) -> AccessLog {
    let c = e.common_properties.clone().unwrap_or_default();
    let req = e.request.clone().unwrap_or_default();
    let status = e
        .response
        .as_ref()
        .and_then(|r| r.response_code)
        .map_or(0, |c| c.value);
    let (tenant, route) = buffer
        .names
        .resolve(&c.route_name)
        .unwrap_or_else(|| (String::new(), c.route_name.clone()));
    let (ctenant, cluster) = buffer
        .names
        .resolve(&c.upstream_cluster)
        .unwrap_or_else(|| (String::new(), c.upstream_cluster.clone()));
    let flags = c.response_flags.unwrap_or_default();
    let upstream_error = if !c.upstream_transport_failure_reason.is_empty() {
        c.upstream_transport_failure_reason.clone()
    } else if flags.upstream_connection_failure {
        "connect_failure".into()
    } else if flags.upstream_request_timeout {
        "timeout".into()
    } else if flags.upstream_remote_reset {
        "reset".into()
    } else if flags.no_healthy_upstream {
        "no_healthy_upstream".into()
    } else if flags.upstream_overflow {
        "overflow".into()
    } else {
        String::new()
    };
    let at_ms = c.start_time.map_or_else(
        || buffer.now_ms(),
        |t| t.seconds * 1000 + i64::from(t.nanos) / 1_000_000,
    );
    let duration_us = c
        .duration
        .or(c.time_to_last_downstream_tx_byte)
        .map_or(0, |d| d.seconds * 1_000_000 + i64::from(d.nanos) / 1000);
    AccessLog {
        at_ms,
        node: node.to_owned(),
        request_id: req.request_id,
        client_ip: ip_only(c.downstream_remote_address.as_ref()),
        tenant: if tenant.is_empty() { ctenant } else { tenant },
        route,
        cluster,
        endpoint: addr(c.upstream_remote_address.as_ref()),
        method: RequestMethod::try_from(req.request_method)
            .map_or("", |m| m.as_str_name())
            .to_owned(),
        authority: req.authority,
        path: req.path,
        status,
        duration_us,
        upstream_error,
    }
}

#[tonic::async_trait]
impl AccessLogService for AccessLogIngest {
    async fn stream_access_logs(
        &self,
        req: Request<Streaming<StreamAccessLogsMessage>>,
    ) -> Result<Response<StreamAccessLogsResponse>, Status> {
        let mut stream = req.into_inner();
        let mut node = String::new();
        while let Some(msg) = stream.message().await? {
            if let Some(n) = msg.identifier.as_ref().and_then(|i| i.node.as_ref()) {
                node = n.id.clone();
            }
            if let Some(LogEntries::HttpLogs(logs)) = &msg.log_entries {
                self.buffer.add_logs(
                    logs.log_entry
                        .iter()
                        .map(|e| record(&self.buffer, &node, e)),
                );
            }
        }
        Ok(Response::new(StreamAccessLogsResponse {}))
    }
}
