//! Request and response header rules (Envoy's): hop-by-hop headers removed, `x-forwarded-for`
//! appended, `x-request-id` kept or generated. Written to allocate as little as possible.

use hyper::header::{HeaderMap, HeaderName, HeaderValue, CONNECTION};
use std::net::SocketAddr;

static HOP_BY_HOP: [HeaderName; 8] = [
    HeaderName::from_static("connection"),
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-authenticate"),
    HeaderName::from_static("proxy-authorization"),
    HeaderName::from_static("te"),
    HeaderName::from_static("trailer"),
    HeaderName::from_static("transfer-encoding"),
    HeaderName::from_static("upgrade"),
];

/// `x-forwarded-for`.
pub static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
/// `x-request-id`.
pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// On a 503 a cluster limit refused (Envoy's `x-envoy-overloaded`).
pub static X_GW_OVERLOADED: HeaderName = HeaderName::from_static("x-gw-overloaded");

/// Removes hop-by-hop headers, including those the `Connection` header names.
pub fn strip_hop_by_hop(h: &mut HeaderMap) {
    if h.is_empty() {
        return;
    }
    if let Some(conn) = h.get(CONNECTION) {
        if conn.as_bytes().contains(&b',') || !is_keep_alive_or_close(conn.as_bytes()) {
            let named: Vec<HeaderName> = h
                .get_all(CONNECTION)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(','))
                .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
                .collect();
            for n in named {
                h.remove(n);
            }
        }
    }
    for n in &HOP_BY_HOP {
        if h.contains_key(n) {
            h.remove(n);
        }
    }
}

fn is_keep_alive_or_close(v: &[u8]) -> bool {
    v.eq_ignore_ascii_case(b"keep-alive") || v.eq_ignore_ascii_case(b"close")
}

/// The downstream peer's IP as a header value, made once per connection.
pub fn peer_ip(peer: SocketAddr) -> HeaderValue {
    HeaderValue::from_str(&peer.ip().to_string()).unwrap_or(HeaderValue::from_static("unknown"))
}

/// Appends `ip` to `x-forwarded-for` (or sets it).
pub fn append_forwarded_for(h: &mut HeaderMap, ip: &HeaderValue) {
    match h.get(&X_FORWARDED_FOR) {
        None => {
            h.insert(X_FORWARDED_FOR.clone(), ip.clone());
        }
        Some(prev) => {
            let mut v = Vec::with_capacity(prev.len() + 2 + ip.len());
            v.extend_from_slice(prev.as_bytes());
            v.extend_from_slice(b", ");
            v.extend_from_slice(ip.as_bytes());
            if let Ok(v) = HeaderValue::from_bytes(&v) {
                h.insert(X_FORWARDED_FOR.clone(), v);
            }
        }
    }
}

/// A random UUID v4, as Envoy generates for `x-request-id`.
pub fn request_id() -> HeaderValue {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let a = crate::lb::fast_rand();
    let b = crate::lb::fast_rand();
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&a.to_le_bytes());
    bytes[8..].copy_from_slice(&b.to_le_bytes());
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let mut out = [0u8; 36];
    let mut o = 0;
    for (i, byte) in bytes.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            out[o] = b'-';
            o += 1;
        }
        out[o] = HEX[usize::from(byte >> 4)];
        out[o + 1] = HEX[usize::from(byte & 0xf)];
        o += 2;
    }
    HeaderValue::from_bytes(&out).unwrap_or(HeaderValue::from_static("0"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_and_connection_named_headers_go() {
        let mut h = HeaderMap::new();
        h.insert(
            "connection",
            HeaderValue::from_static("keep-alive, x-secret"),
        );
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("te", HeaderValue::from_static("trailers"));
        h.insert("x-kept", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-kept"));
    }

    #[test]
    fn forwarded_for_appends() {
        let ip = peer_ip("10.1.2.3:5".parse().unwrap_or_else(|_| unreachable!()));
        let mut h = HeaderMap::new();
        append_forwarded_for(&mut h, &ip);
        assert_eq!(h["x-forwarded-for"], "10.1.2.3");
        append_forwarded_for(&mut h, &ip);
        assert_eq!(h["x-forwarded-for"], "10.1.2.3, 10.1.2.3");
    }

    #[test]
    fn request_ids_are_uuid_v4_and_differ() {
        let a = request_id();
        let b = request_id();
        assert_ne!(a, b);
        let s = a.to_str().unwrap_or_default();
        assert_eq!(s.len(), 36);
        assert_eq!(&s[14..15], "4");
        assert_eq!(s.matches('-').count(), 4);
    }
}
