//! `gwctl`: the operator's tool for gw, kubectl-like, over the same gRPC API automation uses.

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
