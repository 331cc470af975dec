//! `gwctl config set-server|set-token|view`.

use crate::cli::ConfigCommand;
use crate::config;
use crate::error::CliResult;

/// Runs a `config` subcommand.
pub fn run(cmd: ConfigCommand) -> CliResult<u8> {
    let mut c = config::load()?;
    match cmd {
        ConfigCommand::SetServer { url } => {
            let url = crate::client::url(&url);
            if url.parse::<tonic::transport::Uri>().is_err() {
                return Err(crate::error::CliError::other(format!(
                    "{url:?} is not a URL (e.g. http://127.0.0.1:18000)"
                )));
            }
            c.server = Some(url.clone());
            let p = config::save(&c)?;
            println!("server set to {url} in {}", p.display());
        }
        ConfigCommand::SetToken { token } => {
            c.token = Some(token);
            let p = config::save(&c)?;
            println!("token stored in {}", p.display());
        }
        ConfigCommand::View => {
            println!("file:   {}", config::path().display());
            println!("server: {}", c.server.as_deref().unwrap_or("(unset)"));
            println!(
                "token:  {}",
                if c.token.is_some() {
                    "(set)"
                } else {
                    "(unset)"
                }
            );
        }
    }
    Ok(0)
}
