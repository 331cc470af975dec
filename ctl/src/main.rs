//! `gwctl`: the operator's tool for gw, kubectl-like, over the same gRPC API automation uses.
//!
//! # Layout
//! - `cli.rs`: every command and flag (clap derive); usage errors as one line.
//! - `cmd.rs`: dispatch, global options (`Ctx`), exit codes; one file per command under `cmd/`:
//!   `apply` (batched, ordered by dependency, `--dry-run`, `--prune`), `diff` (semantic, exit
//!   0/1/2), `get` (tables, `-o yaml` re-appliable), `describe` (fetch, then `describe/render.rs`
//!   turns it into text), `delete`, `endpoints` (the registry), `fleet` (proxies), `telemetry`
//!   (stats, logs, events, alerts), `config`; `objects` fetches live objects of any kind.
//! - `client.rs`: the connection and the bearer token; `error.rs`: one readable line per failure.
//! - `manifests.rs`: reading files, directories and stdin, errors naming file/document/object/field.
//! - `output.rs`: tables, ages, colours (terminal only, `NO_COLOR`), progress.
//! - `config.rs`: the config file (`$GW_CONFIG`, else `~/.config/gw/config.yaml`).

mod cli;
mod client;
mod cmd;
mod config;
mod error;
mod manifests;
mod output;

use clap::Parser;

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    let cli = match cli::Cli::try_parse() {
        Ok(cli) => cli,
        // --help, --version, and help for a bare `gwctl` or `gwctl endpoints`.
        Err(e)
            if !e.use_stderr()
                || e.kind() == clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand =>
        {
            e.exit()
        }
        Err(e) => {
            eprintln!("{}", cli::usage_error_line(&e.render().to_string()));
            return std::process::ExitCode::from(2);
        }
    };
    std::process::ExitCode::from(cmd::main(cli).await)
}
