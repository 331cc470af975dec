//! Request and response header rules (Envoy's): hop-by-hop headers removed, `x-forwarded-for`
//! appended, `x-request-id` kept or generated. Written to allocate as little as possible.

use hyper::header::{HeaderMap, HeaderName, HeaderValue, CONNECTION, TE, UPGRADE};
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

/// Removes hop-by-hop headers, including those the `Connection` header names (read by the
/// native path's rule, `h1::names_a_header`: `close`, `keep-alive` and
/// `Content-Length` name nothing to drop).
pub fn strip_hop_by_hop(h: &mut HeaderMap) {
    if h.is_empty() {
        return;
    }
    use super::h1::{connection_tokens, names_a_header};
    let names = |v: &HeaderValue| connection_tokens(v.as_bytes()).any(names_a_header);
    if h.get_all(CONNECTION).iter().any(names) {
        let named: Vec<HeaderName> = h
            .get_all(CONNECTION)
            .iter()
            .flat_map(|v| connection_tokens(v.as_bytes()))
            .filter(|t| names_a_header(t))
            .filter_map(|t| HeaderName::from_bytes(t).ok())
            .collect();
        for n in named {
            h.remove(n);
        }
    }
    // `te: trailers` is kept, as Envoy keeps it (gRPC asks for it end to end); any other `te`
    // goes.
    let trailers = h.get_all(TE).iter().any(|v| {
        connection_tokens(v.as_bytes()).any(|t| {
            let name = t.split(|&b| b == b';').next().unwrap_or(t);
            name.trim_ascii().eq_ignore_ascii_case(b"trailers")
        })
    });
    for n in &HOP_BY_HOP {
        if h.contains_key(n) {
            h.remove(n);
        }
    }
    if trailers {
        h.insert(TE, HeaderValue::from_static("trailers"));
    }
}

/// The `Upgrade` of an HTTP/1.1 upgrade request: one with `Upgrade` and `Connection: upgrade`.
/// `h2c` is none: as Envoy, such a request is served as it is, its upgrade headers dropped.
pub fn upgrade_of(h: &HeaderMap) -> Option<&HeaderValue> {
    let upgrade = h
        .get(UPGRADE)
        .filter(|v| !v.as_bytes().trim_ascii().eq_ignore_ascii_case(b"h2c"))?;
    h.get_all(CONNECTION)
        .iter()
        .any(|v| {
            super::h1::connection_tokens(v.as_bytes()).any(|t| t.eq_ignore_ascii_case(b"upgrade"))
        })
        .then_some(upgrade)
}

/// Makes hop-by-hop headers already stripped say an upgrade to `upgrade` (both ways of a
/// tunnel's request and `101`).
pub fn set_upgrade(h: &mut HeaderMap, upgrade: HeaderValue) {
    h.insert(UPGRADE, upgrade);
    h.insert(CONNECTION, HeaderValue::from_static("upgrade"));
}

/// The downstream peer's IP as a header value, made once per connection.
pub fn peer_ip(peer: SocketAddr) -> HeaderValue {
    HeaderValue::from_str(&peer.ip().to_string()).unwrap_or(HeaderValue::from_static("unknown"))
}

/// The path a route's rewrite replaced (Envoy's header).
pub static X_ENVOY_ORIGINAL_PATH: HeaderName = HeaderName::from_static("x-envoy-original-path");

/// `x-forwarded-proto`.
pub static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");

/// Sets `x-forwarded-proto` to the client connection's scheme, replacing what the client sent,
/// as an edge Envoy (`use_remote_address`, no trusted hops) does: a plaintext client cannot
/// claim HTTPS.
pub fn set_forwarded_proto(h: &mut HeaderMap, tls: bool) {
    let v = if tls { "https" } else { "http" };
    h.insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static(v));
}

/// `x-envoy-external-address`: the client's address, as an edge Envoy tells its upstreams.
pub static X_ENVOY_EXTERNAL_ADDRESS: HeaderName =
    HeaderName::from_static("x-envoy-external-address");

/// Envoy's headers an edge Envoy drops from an external request (they steer the Envoys behind:
/// retries, timeouts, tracing), without their common `x-envoy-` prefix. Other `x-envoy-*`
/// headers (Istio's `x-envoy-peer-metadata`, say) go through, as through Envoy.
const CLIENTS_ENVOY_HEADERS: [&str; 21] = [
    "internal",
    "retriable-status-codes",
    "retriable-header-names",
    "retry-on",
    "retry-grpc-on",
    "max-retries",
    "upstream-alt-stat-name",
    "upstream-rq-timeout-ms",
    "upstream-rq-per-try-timeout-ms",
    "upstream-rq-timeout-alt-response",
    "expected-rq-timeout-ms",
    "force-trace",
    "ip-tags",
    "original-url",
    "hedge-on-per-try-timeout",
    "decorator-operation",
    "downstream-service-cluster",
    "downstream-service-node",
    "original-path",
    "original-host",
    "external-address",
];

/// Whether a client's header `name` (any case) is dropped, as an edge Envoy drops it: one of
/// Envoy's own ([`CLIENTS_ENVOY_HEADERS`]), or `x-forwarded-client-cert` (Envoy's default
/// `SANITIZE`; gw-proxy asks clients for no certificate, so there is never one of its own to
/// put in). Both of gw-proxy's paths ask this.
#[inline]
pub fn dropped_from_client(name: &[u8]) -> bool {
    if name.len() <= 8 || !name[..8].eq_ignore_ascii_case(b"x-envoy-") {
        return name.eq_ignore_ascii_case(b"x-forwarded-client-cert");
    }
    CLIENTS_ENVOY_HEADERS
        .iter()
        .any(|h| h.as_bytes().eq_ignore_ascii_case(&name[8..]))
}

/// `x-envoy-original-host`: the host a client asked for, when a route rewrote it (Envoy's).
pub static X_ENVOY_ORIGINAL_HOST: HeaderName = HeaderName::from_static("x-envoy-original-host");

/// Drops the headers an edge Envoy drops from a client ([`dropped_from_client`]) and says who
/// the client is in `x-envoy-external-address`.
pub fn sanitize_client_headers(h: &mut HeaderMap, ip: &HeaderValue) {
    let dropped = |k: &HeaderName| dropped_from_client(k.as_str().as_bytes());
    if h.keys().any(dropped) {
        let names: Vec<HeaderName> = h.keys().filter(|k| dropped(k)).cloned().collect();
        for k in names {
            h.remove(k);
        }
    }
    h.insert(X_ENVOY_EXTERNAL_ADDRESS.clone(), ip.clone());
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
    HeaderValue::from_bytes(&request_id_bytes()).unwrap_or(HeaderValue::from_static("0"))
}

/// [`request_id`]'s text (ASCII), for a caller that writes it out itself.
pub fn request_id_bytes() -> [u8; 36] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    // Where the 32 hex digits go in `xxxxxxxx-xxxx-4xxx-yxxx-xxxxxxxxxxxx`.
    const AT: [u8; 32] = {
        let mut at = [0u8; 32];
        let (mut i, mut o) = (0, 0);
        while i < 32 {
            if matches!(o, 8 | 13 | 18 | 23) {
                o += 1;
            }
            at[i] = o as u8;
            i += 1;
            o += 1;
        }
        at
    };
    let mut x = u128::from(crate::lb::fast_rand()) << 64 | u128::from(crate::lb::fast_rand());
    // Version 4 (the 13th digit), variant 10 (the top bits of the 17th).
    x = (x & !(0xf << 76)) | (0x4 << 76);
    x = (x & !(0x3 << 62)) | (0x2 << 62);
    let mut out = *b"00000000-0000-0000-0000-000000000000";
    for (byte, at) in x.to_be_bytes().into_iter().zip(AT.chunks_exact(2)) {
        out[usize::from(at[0])] = HEX[usize::from(byte >> 4)];
        out[usize::from(at[1])] = HEX[usize::from(byte & 0xf)];
    }
    out
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
        h.insert("te", HeaderValue::from_static("gzip"));
        h.insert("x-kept", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-kept"));
        // `te: trailers` stays, as in Envoy (gRPC asks for it end to end), alone.
        h.insert("te", HeaderValue::from_static("gzip, Trailers"));
        h.append("te", HeaderValue::from_static("deflate"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.get_all("te").iter().collect::<Vec<_>>(), ["trailers"]);
    }

    #[test]
    fn connection_tokens_are_read_as_on_the_native_path() {
        let mut h = HeaderMap::new();
        h.append("connection", HeaderValue::from_static("Content-Length"));
        h.append("connection", HeaderValue::from_static(" X-Secret ,, close"));
        h.insert("content-length", HeaderValue::from_static("3"));
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("close", HeaderValue::from_static("kept"));
        strip_hop_by_hop(&mut h);
        let mut left: Vec<&str> = h.keys().map(HeaderName::as_str).collect();
        left.sort_unstable();
        assert_eq!(left, ["close", "content-length"]);
        // A lone token naming a header is read too.
        let mut h = HeaderMap::new();
        h.insert("connection", HeaderValue::from_static("x-secret"));
        h.insert("x-secret", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut h);
        assert!(h.is_empty());
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
        for s in (0..64).map(|_| request_id_bytes()) {
            let s = std::str::from_utf8(&s).unwrap_or_default();
            let dashes: Vec<usize> = s.match_indices('-').map(|(i, _)| i).collect();
            assert_eq!(dashes, [8, 13, 18, 23], "{s}");
            assert!(s.chars().all(|c| c == '-' || c.is_ascii_hexdigit()), "{s}");
            assert!(
                matches!(&s[19..20], "8" | "9" | "a" | "b"),
                "variant 10: {s}"
            );
        }
    }
}
