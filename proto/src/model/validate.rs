//! Field-level validation: every error names the field (`spec.retry.perTryTimeout`) and the reason.

use super::{ListenerSpec, TenantSpec};
use std::time::Duration;

/// A validation failure: which field, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct FieldError {
    /// Dotted path of the offending field, e.g. `spec.retry.perTryTimeout`.
    pub field: String,
    /// What is wrong with it.
    pub reason: String,
}

impl FieldError {
    /// Builds an error for `field`.
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        FieldError {
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// Prefixes the field path, e.g. `prefixed("spec")` turns `lb` into `spec.lb`.
    pub fn prefixed(mut self, prefix: &str) -> Self {
        self.field = format!("{prefix}.{}", self.field);
        self
    }
}

/// Names: 1–63 characters of `a-z 0-9 - . _`, starting and ending alphanumeric (DNS-label-like).
pub fn validate_name(field: &str, name: &str) -> Result<(), FieldError> {
    if name.is_empty() {
        return Err(FieldError::new(field, "is required"));
    }
    if name.len() > 63 {
        return Err(FieldError::new(field, "must be at most 63 characters"));
    }
    let ok_char =
        |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '.' | '_');
    let alnum = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    let first = name.chars().next().is_some_and(alnum);
    let last = name.chars().last().is_some_and(alnum);
    if !name.chars().all(ok_char) || !first || !last {
        return Err(FieldError::new(
            field,
            format!("{name:?} must be lower-case alphanumerics, '-', '.' or '_', starting and ending alphanumeric"),
        ));
    }
    Ok(())
}

pub(crate) fn positive(field: &str, d: Duration) -> Result<(), FieldError> {
    if d.is_zero() {
        return Err(FieldError::new(field, "must be > 0"));
    }
    Ok(())
}

pub(crate) fn host_or_ip(field: &str, s: &str) -> Result<(), FieldError> {
    if s.is_empty() {
        return Err(FieldError::new(field, "is required"));
    }
    if s.parse::<std::net::IpAddr>().is_ok() {
        return Ok(());
    }
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if s.len() <= 253 && s.split('.').all(label_ok) {
        return Ok(());
    }
    Err(FieldError::new(
        field,
        format!("{s:?} is neither an IP address nor a host name"),
    ))
}

pub(crate) fn port(field: &str, p: u32) -> Result<(), FieldError> {
    if p == 0 || p > 65535 {
        return Err(FieldError::new(field, format!("{p} must be in 1..=65535")));
    }
    Ok(())
}

pub(crate) fn tenant(t: &TenantSpec) -> Result<(), FieldError> {
    if t.display_name.len() > 256 {
        return Err(FieldError::new(
            "spec.displayName",
            "must be at most 256 characters",
        ));
    }
    Ok(())
}

/// Whether `p` is what a request path may start with, as a rewrite puts it in the request
/// line: `/`, then RFC 3986 path characters, `%` only before two hex digits.
pub fn path_prefix(p: &str) -> Result<(), String> {
    if !p.starts_with('/') {
        return Err("must start with '/'".into());
    }
    let b = p.as_bytes();
    for (i, c) in p.char_indices() {
        if c == '%' {
            let hex = |j: usize| b.get(j).is_some_and(u8::is_ascii_hexdigit);
            if !(hex(i + 1) && hex(i + 2)) {
                return Err("'%' must start an escape of two hex digits".into());
            }
        } else if !(c.is_ascii_alphanumeric() || "/-._~!$&'()*+,;=:@".contains(c)) {
            return Err(format!("{c:?} may not appear in a path"));
        }
    }
    Ok(())
}

/// A path with an optional query, as it may go in a request line or a `location`.
pub fn path_and_query(p: &str) -> Result<(), String> {
    let (path, query) = p.split_once('?').unwrap_or((p, ""));
    path_prefix(path)?;
    match query.chars().find(|c| !c.is_ascii_graphic() || *c == '#') {
        Some(c) => Err(format!("{c:?} may not appear in a query")),
        None => Ok(()),
    }
}

pub(crate) fn listener(l: &ListenerSpec) -> Result<(), FieldError> {
    validate_name("spec.nodeCluster", &l.node_cluster)?;
    if l.address.parse::<std::net::IpAddr>().is_err() {
        return Err(FieldError::new(
            "spec.address",
            format!("{:?} is not an IP address", l.address),
        ));
    }
    port("spec.port", u32::from(l.port))?;
    let day = Duration::from_secs(86_400);
    for (field, d) in [
        ("spec.idleTimeout", l.idle_timeout),
        ("spec.requestHeadersTimeout", l.request_headers_timeout),
        ("spec.maxConnectionDuration", l.max_connection_duration),
        ("spec.streamIdleTimeout", l.stream_idle_timeout),
    ] {
        if d > 365 * day {
            return Err(FieldError::new(field, "must be at most 365d (0s: none)"));
        }
    }
    if l.https_redirect && l.tls.is_some() {
        return Err(FieldError::new(
            "spec.httpsRedirect",
            "is for a plaintext listener (this one's requests come over TLS already)",
        ));
    }
    l.tls.as_ref().map_or(Ok(()), |t| t.validate())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(validate_name("n", "users-svc").is_ok());
        assert!(validate_name("n", "a").is_ok());
        assert_eq!(validate_name("n", "").unwrap_err().reason, "is required");
        assert!(validate_name("n", "Users").is_err());
        assert!(validate_name("n", "-x").is_err());
        assert!(validate_name("n", &"x".repeat(64)).is_err());
    }

    #[test]
    fn hosts() {
        assert!(host_or_ip("a", "127.0.0.1").is_ok());
        assert!(host_or_ip("a", "::1").is_ok());
        assert!(host_or_ip("a", "users.default.svc").is_ok());
        assert!(host_or_ip("a", "bad host").is_err());
    }
}
