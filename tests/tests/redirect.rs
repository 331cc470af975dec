//! A route's `redirect` (Envoy's `RedirectAction`) and a listener's `httpsRedirect` (Envoy's
//! virtual host `require_tls: ALL`) through a stock Envoy 1.40 and through gw-proxy fed the same
//! manifest: the same status and the same `location`, over HTTP/1.1 and HTTP/2.

#![allow(clippy::unwrap_used)]

use gw_e2e::echo;
use gw_e2e::serving::on_both_with;
use std::net::SocketAddr;

/// `GET path` with `host`, over HTTP/1.1 or HTTP/2: the status and the `location`.
async fn get(addr: SocketAddr, host: &str, path: &str, h2: bool) -> (u16, String) {
    let got = echo::get(addr, host, path, &[("x-forwarded-proto", "https")], h2)
        .await
        .unwrap();
    let location = got.header("location").unwrap_or_default().to_owned();
    (got.status, location)
}

/// `request` over a connection of its own (it says `Connection: close`), the response head.
async fn raw(addr: SocketAddr, request: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut got = Vec::new();
    // Up to the end of the head: a refused upgrade may leave the connection open.
    let mut buf = [0u8; 4096];
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = s.read(&mut buf).await.unwrap();
        assert!(n > 0, "closed: {}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&got).to_ascii_lowercase()
}

/// An HTTP/2 request (prior knowledge) for `url`: its `:scheme` and `:authority` are the URL's.
async fn h2_location(addr: SocketAddr, url: &str) -> (u16, String) {
    use http_body_util::Empty;
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut s, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tcp),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let req = hyper::Request::get(url)
        .body(Empty::<bytes::Bytes>::new())
        .unwrap();
    let resp = s.send_request(req).await.unwrap();
    let location = resp
        .headers()
        .get("location")
        .map_or("", |v| v.to_str().unwrap())
        .to_owned();
    (resp.status().as_u16(), location)
}

#[tokio::test(flavor = "multi_thread")]
async fn envoy_and_gw_proxy_redirect_alike() {
    on_both_with(
        "redirect",
        "idleTimeout: 60s",
        &[("/svc", "")],
        |_| {
            let route = |name: &str, spec: &str| {
                format!(
                    "---\napiVersion: gw/v1\nkind: Route\nmetadata: {{name: {name}, tenant: acme}}\n\
                     spec: {spec}\n"
                )
            };
            [
                route("https", "{match: {pathPrefix: /https}, redirect: {scheme: https}}"),
                route(
                    "moved",
                    "{match: {pathPrefix: /moved}, redirect: {path: '/new?v=2', code: 302}}",
                ),
                route(
                    "kept",
                    "{match: {pathPrefix: /kept}, redirect: {path: /new, code: 307}}",
                ),
                route(
                    "old",
                    "{match: {pathPrefix: /old/}, redirect: {prefix: /next/, stripQuery: true, \
                     code: 308}}",
                ),
                route(
                    "exact",
                    "{match: {path: /exact}, redirect: {prefix: /e2, code: 303}}",
                ),
                route(
                    "elsewhere",
                    "{match: {pathPrefix: /elsewhere}, redirect: {host: b.example.com, \
                     port: 8443}, responseHeaders: {set: {x-frame-options: DENY}}}",
                ),
                route(
                    "port",
                    "{match: {pathPrefix: /port}, redirect: {port: 8443}}",
                ),
            ]
            .concat()
        },
        |who, addr| async move {
            for h2 in [false, true] {
                let what = |x: &str| format!("{who} (HTTP/2: {h2}) {x}");
                let cases = [
                    ("a.test", "/https/x?q=1", 301, "https://a.test/https/x?q=1"),
                    // http's default port goes with the scheme; another stays.
                    ("a.test:80", "/https", 301, "https://a.test/https"),
                    ("a.test:8080", "/https", 301, "https://a.test:8080/https"),
                    ("a.test:443", "/https", 301, "https://a.test:443/https"),
                    // A path with its own query replaces the request's; one without keeps it.
                    ("a.test", "/moved/x?q=1", 302, "http://a.test/new?v=2"),
                    ("a.test", "/kept/x?q=1", 307, "http://a.test/new?q=1"),
                    ("a.test", "/old/a/b?q=1", 308, "http://a.test/next/a/b"),
                    ("a.test", "/exact?z", 303, "http://a.test/e2?z"),
                    ("a.test:5", "/elsewhere?q", 301, "http://b.example.com:8443/elsewhere?q"),
                    ("a.test:8080", "/port", 301, "http://a.test:8443/port"),
                ];
                for (host, path, status, location) in cases {
                    let got = get(addr, host, path, h2).await;
                    assert_eq!(got, (status, location.to_owned()), "{}", what(path));
                }
                // The route's response header changes apply to its redirect.
                let got = echo::get(addr, "a.test", "/elsewhere", &[], h2).await.unwrap();
                assert_eq!(got.header("x-frame-options"), Some("DENY"), "{}", what("DENY"));
                assert_eq!(got.header("content-type"), None, "{}", what("type"));
                // Other routes are served.
                let got = echo::get(addr, "a.test", "/svc/x", &[], h2).await.unwrap();
                assert_eq!(got.status, 200, "{}", what("/svc"));
            }
            // HTTP/2's `:scheme` is the request's scheme; the port goes by the connection's.
            let got = h2_location(addr, "https://a.test:80/port").await;
            assert_eq!(got, (301, "https://a.test:8443/port".to_owned()), "{who}");
            let got = h2_location(addr, "https://a.test:80/kept?q").await;
            assert_eq!(got, (307, "https://a.test/new?q".to_owned()), "{who}");
            // An absolute-form target's host wins over `Host`.
            let got = raw(
                addr,
                "GET http://b.test/kept?q HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n",
            )
            .await;
            assert!(got.contains("location: http://b.test/new?q\r\n"), "{who}: {got}");
            // To a gRPC client: 200, grpc-status UNKNOWN, the location kept.
            let grpc = [("content-type", "application/grpc"), ("te", "trailers")];
            let got = echo::request(addr, "a.test", ("POST", "/https"), &grpc, "", true)
                .await
                .unwrap();
            let h = |n: &str| got.header(n);
            assert_eq!(got.status, 200, "{who}: {got:?}");
            assert_eq!(h("grpc-status"), Some("2"), "{who}: {got:?}");
            assert_eq!(h("grpc-message"), None, "{who}: {got:?}");
            assert_eq!(h("location"), Some("https://a.test/https"), "{who}: {got:?}");
            // An upgrade the listener does not allow: refused, not redirected.
            let got = raw(
                addr,
                "GET /https HTTP/1.1\r\nHost: a.test\r\nConnection: upgrade\r\n\
                 Upgrade: websocket\r\n\r\n",
            )
            .await;
            assert!(got.starts_with("http/1.1 403"), "{who}: {got}");
            // Refused before routing by both: an `https` URL on this plaintext listener (403),
            // another scheme (400), no host (400; HTTP/1.0: 426).
            for (request, status) in [
                (
                    "GET https://a.test/https HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n",
                    "http/1.1 403",
                ),
                (
                    "GET ftp://a.test/https HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n",
                    "http/1.1 400",
                ),
                ("GET /https HTTP/1.1\r\nConnection: close\r\n\r\n", "http/1.1 400"),
                ("GET /https HTTP/1.0\r\n\r\n", " 426 "),
            ] {
                let got = raw(addr, request).await;
                assert!(got.contains(status), "{who}: {request:?}: {got}");
            }
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_https_redirect_listener_sends_every_request_to_https() {
    on_both_with(
        "https-redirect",
        "httpsRedirect: true",
        &[("/svc", "")],
        |_| String::new(),
        |who, addr| async move {
            for h2 in [false, true] {
                let what = format!("{who} (HTTP/2: {h2})");
                // The URL as it was, over https: the host kept as sent (port and all),
                // whether a route matches or not, whatever scheme the client claims.
                for (host, path, location) in [
                    ("a.test", "/svc/x?q=1", "https://a.test/svc/x?q=1"),
                    ("a.test:8080", "/nothing", "https://a.test:8080/nothing"),
                    ("a.test:80", "/", "https://a.test:80/"),
                ] {
                    let got = get(addr, host, path, h2).await;
                    assert_eq!(got, (301, location.to_owned()), "{what} {host}{path}");
                }
            }
        },
    )
    .await;
}
