//! Command dispatch and what commands share: server resolution, fetching live objects.

mod apply;
mod config;
mod delete;
mod describe;
mod diff;
mod endpoints;
mod fleet;
mod get;
mod objects;
mod telemetry;
mod tokens;

use crate::cli::{Cli, Command};
use crate::client::{Client, DEFAULT_SERVER};
use crate::error::{CliError, CliResult};
use gw_proto::model::Kind;

/// Global options every command sees.
pub struct Ctx {
    /// Output format.
    pub output: crate::cli::Format,
    /// `--tenant`.
    pub tenant: Option<String>,
    /// `--verbose`.
    pub verbose: bool,
    server: String,
    token: Option<String>,
    tls: crate::client::Tls,
}

impl Ctx {
    /// Connects to the control plane.
    pub async fn client(&self) -> CliResult<Client> {
        Client::connect(&self.server, self.token.as_deref(), &self.tls).await
    }

    /// `--tenant`, or an error saying the command needs it.
    pub fn require_tenant(&self, what: &str) -> CliResult<&str> {
        self.tenant
            .as_deref()
            .ok_or_else(|| CliError::other(format!("{what} needs --tenant")))
    }
}

/// Parses a kind as typed on the command line (`route`, `routes`, `alertrules`…).
pub fn parse_kind(s: &str) -> CliResult<Kind> {
    Kind::parse(s).ok_or_else(|| {
        let kinds: Vec<_> = Kind::ALL.iter().map(|k| format!("{k}s")).collect();
        CliError::other(format!(
            "unknown kind {s:?}: use one of {}",
            kinds.join(", ")
        ))
    })
}

/// Parses `15m`, `1h`, `30s`.
pub fn parse_duration(flag: &str, s: &str) -> CliResult<prost_types::Duration> {
    let d = humantime::parse_duration(s)
        .map_err(|e| CliError::other(format!("--{flag} {s:?}: {e}")))?;
    Ok(gw_proto::convert::duration_to_pb(d))
}

/// Runs the command and returns the process exit code; errors are printed as one line.
/// Errors exit with 1, except `diff`'s, which exit with 2 (1 means "different"), like `kubectl diff`.
pub async fn main(cli: Cli) -> u8 {
    let verbose = cli.verbose;
    let error_code = if matches!(cli.command, Command::Diff(_)) {
        2
    } else {
        1
    };
    match run(cli).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", e.render(verbose));
            error_code
        }
    }
}

async fn run(cli: Cli) -> CliResult<u8> {
    let file = crate::config::load()?;
    let ctx = Ctx {
        output: cli.output,
        tenant: cli.tenant,
        verbose: cli.verbose,
        server: cli
            .server
            .or(file.server)
            .unwrap_or_else(|| DEFAULT_SERVER.into()),
        token: cli.token.or(file.token),
        tls: crate::client::Tls {
            ca: cli.ca,
            identity: cli.cert.zip(cli.key),
        },
    };
    let server = crate::client::url(&ctx.server);
    let anonymous_tls = server.starts_with("https://") && ctx.tls.identity.is_none();
    dispatch(&ctx, cli.command)
        .await
        .map_err(|e| match e.at_server(&server) {
            // A control plane that requires client certificates drops the connection of one
            // without: say what may be missing.
            CliError::Unreachable { server, cause } if anonymous_tls => CliError::Unreachable {
                server,
                cause: format!(
                    "{cause}; if it requires client certificates (mTLS), pass --cert and --key"
                ),
            },
            e => e,
        })
}

async fn dispatch(ctx: &Ctx, command: Command) -> CliResult<u8> {
    match command {
        Command::Apply(a) => apply::run(ctx, a).await,
        Command::Diff(a) => diff::run(ctx, a).await,
        Command::Get(a) => get::run(ctx, a).await,
        Command::Describe(a) => describe::run(ctx, a).await,
        Command::Delete(a) => delete::run(ctx, a).await,
        Command::Endpoints(c) => endpoints::run(ctx, c).await,
        Command::Proxies(a) => fleet::proxies(ctx, a).await,
        Command::Stats(a) => telemetry::stats(ctx, a).await,
        Command::Logs(a) => telemetry::logs(ctx, a).await,
        Command::Events(a) => telemetry::events(ctx, a).await,
        Command::Alerts(a) => telemetry::alerts(ctx, a).await,
        Command::Tokens(c) => tokens::run(ctx, c).await,
        Command::Whoami => tokens::whoami(ctx).await,
        Command::Completion { shell } => {
            use clap::CommandFactory;
            clap_complete::generate(shell, &mut Cli::command(), "gwctl", &mut std::io::stdout());
            Ok(0)
        }
        Command::Config(c) => config::run(c),
    }
}
