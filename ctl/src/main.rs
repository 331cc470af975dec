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
    let cli = cli::Cli::parse();
    let verbose = cli.verbose;
    match cmd::run(cli).await {
        Ok(code) => std::process::ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {}", e.render(verbose));
            std::process::ExitCode::from(e.exit_code())
        }
    }
}
