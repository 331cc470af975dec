//! TLS to upstreams (a Cluster's `tls`, Envoy's `UpstreamTlsContext` transport socket) through a
//! stock Envoy 1.40 and through gw-proxy fed the same manifest, against a real TLS upstream whose
//! certificate (for `localhost` and 127.0.0.1) a test CA signed. Both proxies: send the SNI;
//! verify the chain against the CA given, or the system's, and the name when an SNI is given; do
//! not verify with `insecureSkipVerify`; offer `http/1.1` by ALPN, or `h2` to an HTTP/2 cluster.
//! A refused certificate is a `503`.

#![allow(clippy::unwrap_used)]

use gw_control_plane::testing::TestPki;
use gw_e2e::http;
use gw_e2e::serving::on_both_with;
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::net::SocketAddr;
use std::sync::Arc;

/// A TLS upstream with `pki`'s server certificate: answers `200` with the SNI it got (`x-sni`),
/// the HTTP version (`x-version`), the ALPN protocol agreed (`x-alpn`) and the TLS version
/// (`x-tls`).
async fn tls_upstream(pki: &TestPki) -> SocketAddr {
    let cfg = pki.rustls_server();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(s).await else {
                    return;
                };
                let (_, session) = tls.get_ref();
                let sni = session.server_name().unwrap_or("").to_owned();
                let alpn = session
                    .alpn_protocol()
                    .map(|p| String::from_utf8_lossy(p).into_owned())
                    .unwrap_or_default();
                let version = format!("{:?}", session.protocol_version());
                let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let resp = Response::builder()
                        .header("x-sni", sni.as_str())
                        .header("x-alpn", alpn.as_str())
                        .header("x-tls", version.as_str())
                        .header("x-version", format!("{:?}", req.version()))
                        .body(http_body_util::Full::new(bytes::Bytes::from_static(b"tls")))
                        .unwrap();
                    async move { Ok::<_, std::convert::Infallible>(resp) }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    addr
}

/// A cluster `name` of the upstream at `port` with `spec` (after the endpoints), and a route
/// `/name` to it.
fn cluster(name: &str, port: u16, spec: &str) -> String {
    format!(
        "---\napiVersion: gw/v1\nkind: Cluster\nmetadata: {{name: {name}, tenant: acme}}\n\
         spec: {{endpoints: [{{address: 127.0.0.1, port: {port}}}], {spec}}}\n\
         ---\napiVersion: gw/v1\nkind: Route\nmetadata: {{name: {name}, tenant: acme}}\n\
         spec: {{match: {{pathPrefix: /{name}}}, cluster: {name}}}\n"
    )
}

/// A PEM as a YAML flow scalar.
fn quoted(pem: &str) -> String {
    serde_json::to_string(pem).unwrap()
}

async fn check(who: &'static str, addr: SocketAddr) {
    // (path, status, SNI the upstream saw, HTTP version, ALPN)
    let cases: [(&str, u16, &str, &str, &str); 7] = [
        ("/named", 200, "localhost", "HTTP/1.1", "http/1.1"),
        ("/anyname", 200, "", "HTTP/1.1", "http/1.1"),
        ("/h2", 200, "localhost", "HTTP/2.0", "h2"),
        ("/insecure", 200, "other.test", "HTTP/1.1", "http/1.1"),
        ("/wrongname", 503, "", "", ""),
        ("/wrongca", 503, "", "", ""),
        ("/systemca", 503, "", "", ""),
    ];
    for (path, status, sni, version, alpn) in cases {
        let r = http::get(addr, "x", &format!("{path}/x")).await.unwrap();
        assert_eq!(r.status, status, "{who}: {path}: {}", r.body);
        if status == 200 {
            assert_eq!(r.body, "tls", "{who}: {path}");
            assert_eq!(r.header("x-sni"), Some(sni), "{who}: {path}");
            assert_eq!(r.header("x-version"), Some(version), "{who}: {path}");
            assert_eq!(r.header("x-alpn"), Some(alpn), "{who}: {path}");
            // The control plane allows TLS 1.3 (Envoy's client default stops at 1.2).
            assert_eq!(r.header("x-tls"), Some("Some(TLSv1_3)"), "{who}: {path}");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn envoy_and_gw_proxy_speak_tls_to_upstreams_alike() {
    let pki = TestPki::new();
    let other = TestPki::new();
    let up = tls_upstream(&pki).await.port();
    let ca = quoted(&std::fs::read_to_string(pki.path("ca.pem")).unwrap());
    let other_ca = quoted(&std::fs::read_to_string(other.path("ca.pem")).unwrap());
    on_both_with(
        "upstream-tls",
        "idleTimeout: 60s",
        &[("/svc", "")],
        |_| {
            [
                cluster("named", up, &format!("tls: {{sni: localhost, ca: {ca}}}")),
                cluster("anyname", up, &format!("tls: {{ca: {ca}}}")),
                cluster(
                    "h2",
                    up,
                    &format!("protocol: http2, tls: {{sni: localhost, ca: {ca}}}"),
                ),
                cluster(
                    "insecure",
                    up,
                    "tls: {sni: other.test, insecureSkipVerify: true}",
                ),
                cluster(
                    "wrongname",
                    up,
                    &format!("tls: {{sni: other.test, ca: {ca}}}"),
                ),
                cluster(
                    "wrongca",
                    up,
                    &format!("tls: {{sni: localhost, ca: {other_ca}}}"),
                ),
                cluster("systemca", up, "tls: {sni: localhost}"),
            ]
            .concat()
        },
        check,
    )
    .await;
}
