//! Command-line interface: every command and flag.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

/// gwctl controls gw, the tenant-aware API gateway.
#[derive(Debug, Parser)]
#[command(name = "gwctl", version, about, propagate_version = true)]
pub struct Cli {
    /// Control-plane gRPC URL [env: GW_SERVER; config file; default http://127.0.0.1:18000]
    #[arg(long, global = true, env = "GW_SERVER", hide_env = true)]
    pub server: Option<String>,
    /// Bearer token [env: GW_TOKEN; config file]
    #[arg(
        long,
        global = true,
        env = "GW_TOKEN",
        hide_env = true,
        hide_env_values = true
    )]
    pub token: Option<String>,
    /// PEM CA of the control plane's certificate, for an https:// server [env: GW_CA]
    #[arg(long, global = true, env = "GW_CA", hide_env = true)]
    pub ca: Option<PathBuf>,
    /// PEM client certificate, for a control plane that requires one (mTLS) [env: GW_CERT]
    #[arg(
        long,
        global = true,
        env = "GW_CERT",
        hide_env = true,
        requires = "key"
    )]
    pub cert: Option<PathBuf>,
    /// The PEM key of --cert [env: GW_KEY]
    #[arg(
        long,
        global = true,
        env = "GW_KEY",
        hide_env = true,
        requires = "cert"
    )]
    pub key: Option<PathBuf>,
    /// Output format.
    #[arg(short = 'o', long, global = true, value_enum, default_value_t = Format::Table)]
    pub output: Format,
    /// Tenant to scope the command to.
    #[arg(short = 't', long, global = true)]
    pub tenant: Option<String>,
    /// Add the gRPC status code to error messages.
    #[arg(short = 'v', long, global = true)]
    pub verbose: bool,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// A clap usage error as one line: the error, its tips and the usage, without the help pointer.
pub fn usage_error_line(rendered: &str) -> String {
    let mut parts = Vec::new();
    for paragraph in rendered.split("\n\n") {
        let p = paragraph.split_whitespace().collect::<Vec<_>>().join(" ");
        if p.is_empty() || p.starts_with("For more information") {
            continue;
        }
        parts.push(match p.strip_prefix("Usage: ") {
            Some(u) => format!("usage: {u}"),
            None => p,
        });
    }
    parts.join("; ")
}

/// How results are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Aligned columns.
    Table,
    /// More columns.
    Wide,
    /// JSON (manifests for config objects).
    Json,
    /// YAML (manifests for config objects; re-appliable).
    Yaml,
}

/// Every command.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create or update the objects in manifest files (idempotent).
    Apply(ApplyArgs),
    /// Show how manifest files differ from the live config (exit 0 equal, 1 different, 2 error).
    Diff(DiffArgs),
    /// List objects, or show one.
    Get(GetArgs),
    /// Show everything about one object.
    Describe(DescribeArgs),
    /// Delete objects named on the command line or in manifest files.
    Delete(DeleteArgs),
    /// The service registry: register, deregister, heartbeat, list.
    #[command(subcommand)]
    Endpoints(EndpointsCommand),
    /// Connected proxies and their config sync status (like istioctl proxy-status).
    Proxies(ProxiesArgs),
    /// Request stats per route, cluster or endpoint, for the whole fleet.
    Stats(StatsArgs),
    /// Access-log records sent by the proxies.
    Logs(LogsArgs),
    /// Events: proxy connects, NACKs, breaker and health transitions, alerts.
    Events(EventsArgs),
    /// Firing and resolved alerts; `alerts ack ID` acknowledges one.
    Alerts(AlertsArgs),
    /// API tokens (admin): create, list, revoke. `-t TENANT` scopes a new token to one tenant.
    #[command(subcommand)]
    Tokens(TokensCommand),
    /// Who the token is: its name, role and tenant.
    Whoami,
    /// Print a shell completion script.
    Completion {
        /// Shell.
        shell: clap_complete::Shell,
    },
    /// Store the server and token in the config file.
    #[command(subcommand)]
    Config(ConfigCommand),
}

/// `tokens` subcommands.
#[derive(Debug, Subcommand)]
pub enum TokensCommand {
    /// Make a token and print its secret (once).
    Create {
        /// Unique name, e.g. ci-deploy.
        name: String,
        /// admin | tenant-admin | viewer (tenant-admin needs -t; viewer may have one).
        #[arg(long)]
        role: String,
        /// Expire after this long (30d, 12h); never when omitted.
        #[arg(long)]
        ttl: Option<String>,
        /// Also let a client certificate with this subject common name act as the token, on a
        /// control plane that requires client certificates (mTLS): no bearer token needed.
        #[arg(long)]
        subject: Option<String>,
    },
    /// Every token (never their secrets).
    List,
    /// Delete a token; it stops working at once.
    Revoke {
        /// The token's name.
        name: String,
    },
}

/// `apply` flags.
#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// Manifest file, directory of .yaml files, or - for stdin (repeatable).
    #[arg(short = 'f', long = "filename", required = true)]
    pub files: Vec<PathBuf>,
    /// Validate on the server and report what would change; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Also delete objects of --tenant that the files no longer contain.
    #[arg(long, requires = "tenant")]
    pub prune: bool,
    /// Objects per API call for large files.
    #[arg(long, default_value_t = 2000)]
    pub batch: usize,
}

/// `diff` flags.
#[derive(Debug, Args)]
pub struct DiffArgs {
    /// Manifest file, directory, or - (repeatable).
    #[arg(short = 'f', long = "filename", required = true)]
    pub files: Vec<PathBuf>,
    /// Also show objects of --tenant that the files no longer contain as removed.
    #[arg(long, requires = "tenant")]
    pub prune: bool,
}

/// `get` flags.
#[derive(Debug, Args)]
pub struct GetArgs {
    /// tenants | listeners | clusters | routes | endpoints | alertrules | proxies
    pub kind: String,
    /// One object.
    pub name: Option<String>,
    /// Endpoints: only this cluster.
    #[arg(long)]
    pub cluster: Option<String>,
}

/// `describe` flags.
#[derive(Debug, Args)]
pub struct DescribeArgs {
    /// route | cluster | tenant | listener | alertrule | endpoint | proxy
    pub kind: String,
    /// Its name (endpoint: CLUSTER/ADDR:PORT).
    pub name: String,
}

/// `delete` flags.
#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// Kind of the object to delete.
    pub kind: Option<String>,
    /// Name of the object to delete.
    pub name: Option<String>,
    /// Delete every object in these manifest files (repeatable).
    #[arg(short = 'f', long = "filename")]
    pub files: Vec<PathBuf>,
    /// With -f: objects that do not exist are not an error.
    #[arg(long)]
    pub ignore_not_found: bool,
}

/// `endpoints` subcommands.
#[derive(Debug, Subcommand)]
pub enum EndpointsCommand {
    /// Add (or update) an endpoint of a cluster.
    Register(EndpointArgs),
    /// Remove a registered endpoint.
    Deregister(EndpointKeyArgs),
    /// Renew an endpoint's TTL lease.
    Heartbeat(EndpointKeyArgs),
    /// Static, registered and discovered endpoints.
    List {
        /// Only this cluster.
        #[arg(long)]
        cluster: Option<String>,
    },
}

/// Identity of an endpoint.
#[derive(Debug, Args)]
pub struct EndpointKeyArgs {
    /// Cluster the endpoint belongs to.
    #[arg(long)]
    pub cluster: String,
    /// IP address or host name.
    #[arg(long)]
    pub address: String,
    /// TCP port.
    #[arg(long)]
    pub port: u32,
}

/// `endpoints register` flags.
#[derive(Debug, Args)]
pub struct EndpointArgs {
    /// The endpoint.
    #[command(flatten)]
    pub key: EndpointKeyArgs,
    /// Relative weight.
    #[arg(long, default_value_t = 1)]
    pub weight: u32,
    /// Lease: the endpoint disappears unless heartbeats renew it (e.g. 30s).
    #[arg(long)]
    pub ttl: Option<String>,
    /// Metadata, KEY=VALUE (repeatable).
    #[arg(long = "meta")]
    pub metadata: Vec<String>,
}

/// `proxies` flags.
#[derive(Debug, Args)]
pub struct ProxiesArgs {
    /// Only proxies of this node cluster.
    #[arg(long)]
    pub node_cluster: Option<String>,
    /// Include proxies that disconnected recently.
    #[arg(long, short = 'a')]
    pub all: bool,
}

/// `stats` flags.
#[derive(Debug, Args)]
pub struct StatsArgs {
    /// routes | clusters | endpoints
    pub kind: String,
    /// One object.
    pub name: Option<String>,
    /// Look back this far.
    #[arg(long, default_value = "15m")]
    pub since: String,
}

/// `logs` flags.
#[derive(Debug, Args)]
pub struct LogsArgs {
    /// Only this route.
    #[arg(long)]
    pub route: Option<String>,
    /// Only this cluster.
    #[arg(long)]
    pub cluster: Option<String>,
    /// Status class (5xx) or code (503).
    #[arg(long)]
    pub status: Option<String>,
    /// Look back this far.
    #[arg(long, default_value = "10m")]
    pub since: String,
    /// At most this many records.
    #[arg(long, default_value_t = 100)]
    pub limit: u32,
}

/// `events` flags.
#[derive(Debug, Args)]
pub struct EventsArgs {
    /// Keep streaming new events.
    #[arg(long, short = 'f')]
    pub follow: bool,
    /// Only this kind (proxy_connected, config_nacked, alert_firing, …).
    #[arg(long)]
    pub kind: Option<String>,
    /// Look back this far.
    #[arg(long, default_value = "1h")]
    pub since: String,
    /// At most this many past events.
    #[arg(long, default_value_t = 100)]
    pub limit: u32,
}

/// `alerts` flags.
#[derive(Debug, Args)]
pub struct AlertsArgs {
    /// `ack ID` acknowledges an alert.
    #[command(subcommand)]
    pub action: Option<AlertsAction>,
    /// Only alerts in this state: pending, firing, resolved.
    #[arg(long)]
    pub state: Option<String>,
}

/// `alerts` subcommands.
#[derive(Debug, Subcommand)]
pub enum AlertsAction {
    /// Acknowledge an alert.
    Ack {
        /// Alert id.
        id: String,
        /// Who acknowledges (default: $USER).
        #[arg(long)]
        by: Option<String>,
    },
}

/// `config` subcommands.
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Store the control-plane URL.
    SetServer {
        /// e.g. http://127.0.0.1:18000
        url: String,
    },
    /// Store the bearer token.
    SetToken {
        /// The token.
        token: String,
    },
    /// Show the stored config (token masked).
    View,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    fn usage_error(args: &[&str]) -> String {
        let e = Cli::try_parse_from(args).unwrap_err();
        usage_error_line(&e.render().to_string())
    }

    #[test]
    fn usage_errors_are_one_line() {
        assert_eq!(
            usage_error(&["gwctl", "apply"]),
            "error: the following required arguments were not provided: --filename <FILES>; usage: gwctl apply --filename <FILES>"
        );
        assert_eq!(
            usage_error(&["gwctl", "-o", "xml", "get", "tenants"]),
            "error: invalid value 'xml' for '--output <OUTPUT>' [possible values: table, wide, json, yaml]; tip: a similar value exists: 'yaml'"
        );
    }
}
