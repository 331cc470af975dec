//! One clear line per error, and the exit code that goes with it.

use std::fmt;

/// Why a command failed.
#[derive(Debug)]
pub enum CliError {
    /// The control plane answered with an error.
    Status {
        /// What we were doing.
        context: String,
        /// The answer.
        status: tonic::Status,
    },
    /// The control plane could not be reached.
    Unreachable {
        /// Address tried.
        server: String,
        /// Why.
        cause: String,
    },
    /// Anything else (bad input file, bad flag, …).
    Other(String),
}

/// Result of a command: the process exit code.
pub type CliResult<T = u8> = Result<T, CliError>;

impl CliError {
    /// `CliError::Other` from anything printable.
    pub fn other(m: impl fmt::Display) -> Self {
        CliError::Other(m.to_string())
    }

    /// The one-line message; `verbose` adds the gRPC status code.
    pub fn render(&self, verbose: bool) -> String {
        match self {
            CliError::Status { context, status } => {
                let msg = if status.message().is_empty() {
                    status.code().description()
                } else {
                    status.message()
                };
                let mut s = if context.is_empty() {
                    msg.to_owned()
                } else {
                    format!("{context}: {msg}")
                };
                if verbose {
                    s.push_str(&format!(" (gRPC status {:?})", status.code()));
                }
                s
            }
            CliError::Unreachable { server, cause } => {
                format!("cannot reach the control plane at {server}: {cause}")
            }
            CliError::Other(m) => m.clone(),
        }
    }

    /// 1 for every error; `diff` maps errors to 2 itself.
    pub fn exit_code(&self) -> u8 {
        1
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render(false))
    }
}

/// Adds context to a gRPC call's error.
pub trait StatusContext<T> {
    /// Names what was being done when the call failed.
    fn context(self, what: impl Into<String>) -> CliResult<T>;
}

impl<T> StatusContext<T> for Result<tonic::Response<T>, tonic::Status> {
    fn context(self, what: impl Into<String>) -> CliResult<T> {
        self.map(tonic::Response::into_inner)
            .map_err(|status| CliError::Status {
                context: what.into(),
                status,
            })
    }
}
