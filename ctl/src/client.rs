//! The connection to the control plane: server resolution, bearer token, clear connect errors.

use crate::error::{CliError, CliResult};
use gw_proto::gateway::v1 as pb;
use std::time::Duration;
use tonic::metadata::MetadataValue;
use tonic::transport::{Channel, Endpoint};

/// Default control-plane address.
pub const DEFAULT_SERVER: &str = "http://127.0.0.1:18000";

/// A connected API client.
#[derive(Clone)]
pub struct Client {
    channel: Channel,
    token: Option<MetadataValue<tonic::metadata::Ascii>>,
}

fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur: &(dyn std::error::Error + 'static) = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    if let Some(io) = cur.downcast_ref::<std::io::Error>() {
        return match io.kind() {
            std::io::ErrorKind::ConnectionRefused => "connection refused".into(),
            std::io::ErrorKind::TimedOut => "timed out".into(),
            _ => io.to_string(),
        };
    }
    cur.to_string()
}

/// `--server` as a URL: `host:port` means `http://host:port`.
pub fn url(server: &str) -> String {
    if server.contains("://") {
        server.to_owned()
    } else {
        format!("http://{server}")
    }
}

/// TLS to the control plane (`--ca`, `--cert`, `--key`).
#[derive(Debug, Clone, Default)]
pub struct Tls {
    /// CA of the control plane's certificate.
    pub ca: Option<std::path::PathBuf>,
    /// Client certificate and key (mTLS).
    pub identity: Option<(std::path::PathBuf, std::path::PathBuf)>,
}

impl Tls {
    fn config(&self, server: &str) -> CliResult<tonic::transport::ClientTlsConfig> {
        let read = |p: &std::path::Path, flag: &str| {
            std::fs::read(p).map_err(|e| CliError::other(format!("--{flag} {}: {e}", p.display())))
        };
        let Some(ca) = &self.ca else {
            // Sending the token to a server whose certificate nothing vouches for would be worse
            // than failing.
            return Err(CliError::other(format!(
                "--server {server}: an https control plane needs --ca (the PEM CA of its certificate)"
            )));
        };
        let mut cfg = tonic::transport::ClientTlsConfig::new()
            .ca_certificate(tonic::transport::Certificate::from_pem(read(ca, "ca")?));
        if let Some((cert, key)) = &self.identity {
            cfg = cfg.identity(tonic::transport::Identity::from_pem(
                read(cert, "cert")?,
                read(key, "key")?,
            ));
        }
        Ok(cfg)
    }
}

impl Client {
    /// Connects to `server` (scheme optional), failing fast with the address in the message.
    pub async fn connect(server: &str, token: Option<&str>, tls: &Tls) -> CliResult<Client> {
        let server = url(server);
        let mut endpoint = Endpoint::from_shared(server.clone())
            .map_err(|e| CliError::other(format!("--server {server:?} is not a URL: {e}")))?
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(120));
        if server.starts_with("https://") {
            endpoint = endpoint
                .tls_config(tls.config(&server)?)
                .map_err(|e| CliError::other(format!("--server {server}: TLS: {e}")))?;
        } else if tls.ca.is_some() || tls.identity.is_some() {
            return Err(CliError::other(format!(
                "--server {server}: --ca, --cert and --key need an https:// server"
            )));
        }
        let channel = endpoint
            .connect()
            .await
            .map_err(|e| CliError::Unreachable {
                server: server.clone(),
                cause: root_cause(&e),
            })?;
        if token.is_some_and(|t| !t.is_empty()) && !server.starts_with("https://") {
            let host = endpoint.uri().host().unwrap_or_default();
            let local = host == "localhost"
                || host
                    .trim_matches(|c| c == '[' || c == ']')
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback());
            if !local {
                eprintln!(
                    "warning: sending the token in clear text to {host} (use https:// and --ca)"
                );
            }
        }
        let token = match token.filter(|t| !t.is_empty()) {
            Some(t) => Some(format!("Bearer {t}").parse().map_err(|_| {
                CliError::other("the token contains characters not allowed in a header")
            })?),
            None => None,
        };
        Ok(Client { channel, token })
    }

    /// A request carrying the token.
    pub fn req<T>(&self, msg: T) -> tonic::Request<T> {
        let mut r = tonic::Request::new(msg);
        if let Some(t) = &self.token {
            r.metadata_mut().insert("authorization", t.clone());
        }
        r
    }

    /// Batch config API.
    pub fn config(&self) -> pb::config_client::ConfigClient<Channel> {
        pb::config_client::ConfigClient::new(self.channel.clone())
            .max_decoding_message_size(256 << 20)
            .max_encoding_message_size(256 << 20)
    }

    /// Tenants.
    pub fn tenants(&self) -> pb::tenants_client::TenantsClient<Channel> {
        pb::tenants_client::TenantsClient::new(self.channel.clone())
    }

    /// Listeners.
    pub fn listeners(&self) -> pb::listeners_client::ListenersClient<Channel> {
        pb::listeners_client::ListenersClient::new(self.channel.clone())
    }

    /// Clusters.
    pub fn clusters(&self) -> pb::clusters_client::ClustersClient<Channel> {
        pb::clusters_client::ClustersClient::new(self.channel.clone())
            .max_decoding_message_size(64 << 20)
    }

    /// Routes.
    pub fn routes(&self) -> pb::routes_client::RoutesClient<Channel> {
        pb::routes_client::RoutesClient::new(self.channel.clone())
            .max_decoding_message_size(64 << 20)
    }

    /// Alert rules.
    pub fn alert_rules(&self) -> pb::alert_rules_client::AlertRulesClient<Channel> {
        pb::alert_rules_client::AlertRulesClient::new(self.channel.clone())
    }

    /// The registry.
    pub fn endpoints(&self) -> pb::endpoints_client::EndpointsClient<Channel> {
        pb::endpoints_client::EndpointsClient::new(self.channel.clone())
            .max_decoding_message_size(64 << 20)
    }

    /// Fleet sync status.
    pub fn fleet(&self) -> pb::fleet_client::FleetClient<Channel> {
        pb::fleet_client::FleetClient::new(self.channel.clone())
    }

    /// Stats and access logs.
    pub fn stats(&self) -> pb::stats_client::StatsClient<Channel> {
        pb::stats_client::StatsClient::new(self.channel.clone())
    }

    /// Events.
    pub fn events(&self) -> pb::events_client::EventsClient<Channel> {
        pb::events_client::EventsClient::new(self.channel.clone())
    }

    /// API tokens and `WhoAmI`.
    pub fn tokens(&self) -> pb::tokens_client::TokensClient<Channel> {
        pb::tokens_client::TokensClient::new(self.channel.clone())
    }

    /// Alerts.
    pub fn alerts(&self) -> pb::alerts_client::AlertsClient<Channel> {
        pb::alerts_client::AlertsClient::new(self.channel.clone())
    }
}
