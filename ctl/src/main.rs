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
    std::process::ExitCode::from(cmd::main(cli::Cli::parse()).await)
}
