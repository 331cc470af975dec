//! One clear line per error, and the exit code that goes with it.

use std::fmt;
use tonic::Code;

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
    /// Something answered at the address, but not a gRPC server (wrong port, HTTP proxy…).
    NotGrpc {
        /// Address tried.
        server: String,
        /// What came back.
        detail: String,
    },
    /// Anything else (bad input file, bad flag, …).
    Other(String),
}

/// Result of a command: the process exit code.
pub type CliResult<T = u8> = Result<T, CliError>;

/// Error messages are one line, whatever the server put in them.
fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// What the status means for an operator, in words.
fn explain(status: &tonic::Status) -> String {
    let msg = one_line(status.message());
    let or = |fallback: &str| {
        if msg.is_empty() {
            fallback.to_owned()
        } else {
            msg.clone()
        }
    };
    match status.code() {
        Code::Unauthenticated => format!(
            "not authenticated ({}): pass --token, set GW_TOKEN or run `gwctl config set-token`",
            or("no valid token")
        ),
        Code::PermissionDenied => {
            format!("permission denied: {}", or("this token may not do that"))
        }
        Code::Unimplemented => format!(
            "the control plane does not offer this call ({}); is it an older version than gwctl?",
            or("unimplemented")
        ),
        Code::Aborted => format!(
            "{}: it changed since it was read; fetch it again and retry",
            or("conflict")
        ),
        Code::DeadlineExceeded => format!(
            "timed out waiting for the control plane ({})",
            or("deadline exceeded")
        ),
        Code::Unavailable => format!("the control plane is unavailable: {}", or("try again")),
        Code::Internal => format!("the control plane failed: {}", or("internal error")),
        code => or(code.description()),
    }
}

/// Whether the status was made up on this side from an answer that was not gRPC at all
/// (an HTTP server, a proxy's error page).
fn not_grpc(status: &tonic::Status) -> bool {
    let m = status.message();
    m.contains("grpc-status header missing")
        || m.contains("invalid compression flag")
        || m.contains("invalid content-type")
}

impl CliError {
    /// `CliError::Other` from anything printable.
    pub fn other(m: impl fmt::Display) -> Self {
        CliError::Other(m.to_string())
    }

    /// Adds a sentence after the message.
    pub fn note(self, note: impl fmt::Display) -> Self {
        match self {
            CliError::Status { context, status } => CliError::Status {
                context,
                status: tonic::Status::new(status.code(), format!("{}; {note}", status.message())),
            },
            e => CliError::Other(format!("{}; {note}", e.render(false))),
        }
    }

    /// Names `server` in errors that are about reaching it rather than about the request.
    pub fn at_server(self, server: &str) -> Self {
        match self {
            CliError::Status { status, .. } if not_grpc(&status) => CliError::NotGrpc {
                server: server.to_owned(),
                detail: one_line(status.message()),
            },
            // A status with a source was made by the transport on this side: the connection
            // broke, it was not the control plane saying no.
            CliError::Status { status, .. }
                if matches!(
                    status.code(),
                    Code::Unavailable | Code::Unknown | Code::Internal | Code::Cancelled
                ) && std::error::Error::source(&status).is_some() =>
            {
                CliError::Unreachable {
                    server: server.to_owned(),
                    cause: format!("the connection was lost ({})", one_line(status.message())),
                }
            }
            e => e,
        }
    }

    /// The one-line message; `verbose` adds the gRPC status code.
    pub fn render(&self, verbose: bool) -> String {
        match self {
            CliError::Status { context, status } => {
                let msg = explain(status);
                let mut s = if context.is_empty() {
                    msg
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
            CliError::NotGrpc { server, detail } => {
                let mut s = format!(
                    "{server} is not a gw control plane's gRPC address (is it the HTTP port? the gRPC default is :18000)"
                );
                if verbose {
                    s.push_str(&format!(" ({detail})"));
                }
                s
            }
            CliError::Other(m) => one_line(m),
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn status(code: Code, msg: &str) -> CliError {
        CliError::Status {
            context: "apply".into(),
            status: tonic::Status::new(code, msg),
        }
    }

    #[test]
    fn validation_errors_pass_through_and_verbose_adds_the_code() {
        let e = status(Code::InvalidArgument, "spec.timeout: must be > 0");
        assert_eq!(e.render(false), "apply: spec.timeout: must be > 0");
        assert_eq!(
            e.render(true),
            "apply: spec.timeout: must be > 0 (gRPC status InvalidArgument)"
        );
    }

    #[test]
    fn codes_are_explained() {
        assert_eq!(
            status(Code::Unauthenticated, "").render(false),
            "apply: not authenticated (no valid token): pass --token, set GW_TOKEN or run `gwctl config set-token`"
        );
        assert_eq!(
            status(Code::Aborted, "route/a/b: resource_version 1 is stale (stored: 2)").render(false),
            "apply: route/a/b: resource_version 1 is stale (stored: 2): it changed since it was read; fetch it again and retry"
        );
        assert_eq!(
            status(Code::Unimplemented, "").render(false),
            "apply: the control plane does not offer this call (unimplemented); is it an older version than gwctl?"
        );
    }

    #[test]
    fn messages_are_one_line() {
        let e = status(Code::FailedPrecondition, "in use by\n  route a\n  route b");
        assert_eq!(e.render(false), "apply: in use by route a route b");
        assert_eq!(CliError::other("a\nb").render(false), "a b");
    }

    #[test]
    fn a_non_grpc_answer_names_the_server() {
        let e = status(
            Code::Unknown,
            "grpc-status header missing, mapped from HTTP status code 404",
        )
        .at_server("http://127.0.0.1:18001");
        assert_eq!(
            e.render(false),
            "http://127.0.0.1:18001 is not a gw control plane's gRPC address (is it the HTTP port? the gRPC default is :18000)"
        );
        // A broken connection, found by the transport on this side.
        let e = CliError::Status {
            context: "events".into(),
            status: tonic::Status::from_error(Box::new(std::io::Error::other(
                "error reading a body from connection",
            ))),
        }
        .at_server("http://127.0.0.1:18000");
        assert_eq!(
            e.render(false),
            "cannot reach the control plane at http://127.0.0.1:18000: the connection was lost (error reading a body from connection)"
        );
        // A server-side refusal is not rewritten.
        let e = status(Code::Unavailable, "userdb is unavailable; retry").at_server("x");
        assert_eq!(
            e.render(false),
            "apply: the control plane is unavailable: userdb is unavailable; retry"
        );
    }
}
