//! TLS listeners (Envoy's `DownstreamTlsContext` on the listener's filter chain): clients speak
//! HTTPS to gw-proxy, HTTP/1.1 or HTTP/2 by ALPN; the client's SNI picks the certificate;
//! `x-forwarded-proto` tells the upstream the client's scheme; the minimum version is kept; a
//! listener gw-proxy cannot serve as asked is NACKed by name and the previous config serves.

#![allow(clippy::unwrap_used)]

mod common;

use bytes::Bytes;
use common::Upstream;
use gw_control_plane::testing::TestPki;
use gw_proto::envoy::pb::envoy::config::core::v3::{data_source, DataSource};
use gw_proto::envoy::pb::envoy::extensions::transport_sockets::tls::v3::{
    tls_parameters::TlsProtocol, CommonTlsContext, DownstreamTlsContext, TlsCertificate,
    TlsParameters,
};
use gw_proxy::config::{fixture, type_url, Resources};
use gw_proxy::server::{Proxy, ProxyConfig};
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::ServerName;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// A certificate of the test CA for `names`, as Envoy's `TlsCertificate` (inline PEM).
fn cert(pki: &TestPki, names: &[&str]) -> TlsCertificate {
    let (chain, key) = pki.server_cert(names);
    let inline = |pem: String| {
        Some(DataSource {
            specifier: Some(data_source::Specifier::InlineString(pem)),
            ..Default::default()
        })
    };
    TlsCertificate {
        certificate_chain: inline(chain),
        private_key: inline(key),
        ..Default::default()
    }
}

/// A listener context serving `certs`, offering `h2` and `http/1.1`.
fn context(certs: Vec<TlsCertificate>) -> DownstreamTlsContext {
    DownstreamTlsContext {
        common_tls_context: Some(CommonTlsContext {
            tls_certificates: certs,
            alpn_protocols: vec!["h2".into(), "http/1.1".into()],
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// `/` to `up`; the listener speaks TLS with `ctx` (none: plaintext); `version` of the listener.
fn config(up: &Upstream, ctx: Option<&DownstreamTlsContext>, version: &str) -> Resources {
    let mut res = fixture::simple(
        vec![fixture::prefix_route("t/all", "/", "t/up")],
        &[("t/up", "round_robin", vec![(up.addr, 1)])],
    );
    let mut l = fixture::listener("ingress", 8080, "ingress");
    if let Some(ctx) = ctx {
        fixture::listener_tls(&mut l, ctx);
    }
    res.insert(type_url::LISTENER, "ingress", version, &l);
    res
}

/// A TLS session to `addr` naming `name` (an IP address: no SNI sent), offering `alpn`.
async fn connect(
    pki: &TestPki,
    addr: SocketAddr,
    name: &str,
    alpn: &[&str],
) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    let connector = tokio_rustls::TlsConnector::from(Arc::new(pki.rustls_client(alpn)));
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let name = ServerName::try_from(name.to_owned()).unwrap();
    connector.connect(name, tcp).await
}

/// What one request over `tls` got: status, protocol version, the upstream's `x-seen-*` echo of
/// the headers it received, and the body.
struct Got {
    status: u16,
    version: hyper::Version,
    headers: hyper::HeaderMap,
}

async fn request(
    tls: tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
    h2: bool,
    headers: &[(&str, &str)],
) -> Got {
    let io = TokioIo::new(tls);
    let mut b = Request::builder().uri("https://a.example.test/hello");
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let req = b.body(Full::new(Bytes::new())).unwrap();
    let resp = if h2 {
        let (mut s, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
            .await
            .unwrap();
        tokio::spawn(conn);
        s.send_request(req).await.unwrap()
    } else {
        let (mut s, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
        tokio::spawn(conn);
        let (mut parts, body) = req.into_parts();
        parts
            .headers
            .insert("host", "a.example.test".parse().unwrap());
        s.send_request(Request::from_parts(parts, body))
            .await
            .unwrap()
    };
    let got = Got {
        status: resp.status().as_u16(),
        version: resp.version(),
        headers: resp.headers().clone(),
    };
    resp.into_body().collect().await.unwrap();
    got
}

fn seen<'a>(g: &'a Got, name: &str) -> &'a str {
    g.headers
        .get(format!("x-seen-{name}"))
        .map_or("", |v| v.to_str().unwrap())
}

async fn proxy(res: Resources) -> Proxy {
    let p = Proxy::start(ProxyConfig::for_tests(None, "tls-down"))
        .await
        .unwrap();
    p.shared().apply(res).unwrap();
    p
}

#[tokio::test]
async fn a_tls_listener_serves_https_picks_certificates_by_sni_and_says_so_upstream() {
    let pki = TestPki::new();
    let up = Upstream::start("up").await;
    // The first certificate is the default: for clients without SNI (here: connecting by IP).
    let ctx = context(vec![
        cert(&pki, &["a.example.test", "127.0.0.1"]),
        cert(&pki, &["*.b.example.test"]),
    ]);
    let p = proxy(config(&up, Some(&ctx), "1")).await;
    let addr = p.listen_addr();

    // HTTP/1.1 by ALPN, the certificate for its name; the upstream is told the scheme.
    let tls = connect(&pki, addr, "a.example.test", &["http/1.1"])
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    let g = request(tls, false, &[]).await;
    assert_eq!((g.status, g.version), (200, hyper::Version::HTTP_11));
    assert_eq!(seen(&g, "x-forwarded-proto"), "https");
    assert_eq!(seen(&g, "x-forwarded-for"), "127.0.0.1");

    // HTTP/2 by ALPN; a wildcard certificate picked by SNI (the client verifies the name, so
    // any other certificate fails the handshake). A scheme the client sent is kept.
    let tls = connect(&pki, addr, "x.b.example.test", &["h2", "http/1.1"])
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let g = request(tls, true, &[("x-forwarded-proto", "http")]).await;
    assert_eq!((g.status, g.version), (200, hyper::Version::HTTP_2));
    assert_eq!(seen(&g, "x-forwarded-proto"), "http");

    // No SNI: the first certificate (valid for 127.0.0.1).
    let tls = connect(&pki, addr, "127.0.0.1", &[]).await.unwrap();
    assert_eq!(request(tls, false, &[]).await.status, 200);
    // A name no certificate is valid for gets the first, which the client refuses.
    let failed = &p.shared().tls_failed;
    assert_eq!(failed.load(Ordering::Relaxed), 0);
    let err = connect(&pki, addr, "c.example.test", &[])
        .await
        .unwrap_err();
    assert!(err.to_string().contains("certificate"), "{err}");

    // Plaintext to a TLS listener fails its handshake; both failures are counted (the first
    // when the client's alert arrives), and the listener serves on.
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut s, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let _ = tokio::io::AsyncReadExt::read_to_end(&mut s, &mut buf).await;
    assert!(!buf.starts_with(b"HTTP/1.1 200"), "plaintext was served");
    common::eventually(5, "two failed handshakes counted", || async {
        (failed.load(Ordering::Relaxed) == 2).then_some(())
    })
    .await;
    let tls = connect(&pki, addr, "a.example.test", &[]).await.unwrap();
    assert_eq!(request(tls, false, &[]).await.status, 200);

    // The listener back to plaintext: new connections speak HTTP, and the upstream hears the
    // scheme from the native path too.
    p.shared().apply(config(&up, None, "2")).unwrap();
    let r = common::get(&common::client(), addr, "/plain").await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.headers.get("x-seen-x-forwarded-proto").unwrap(),
        "http",
        "{:?}",
        r.headers
    );
}

#[tokio::test]
async fn the_minimum_version_is_kept_and_what_cannot_be_served_is_refused() {
    let pki = TestPki::new();
    let up = Upstream::start("up").await;
    let mut ctx = context(vec![cert(&pki, &["a.example.test"])]);
    ctx.common_tls_context.as_mut().unwrap().tls_params = Some(TlsParameters {
        tls_minimum_protocol_version: TlsProtocol::TlSv13 as i32,
        ..Default::default()
    });
    let p = proxy(config(&up, Some(&ctx), "1")).await;
    let addr = p.listen_addr();
    let tls = connect(&pki, addr, "a.example.test", &[]).await.unwrap();
    assert_eq!(
        tls.get_ref().1.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_3)
    );
    assert_eq!(request(tls, false, &[]).await.status, 200);
    // A TLS 1.2 client is refused.
    let tls12 = {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let roots = pki.roots();
        rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS12])
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth()
    };
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let refused = tokio_rustls::TlsConnector::from(Arc::new(tls12))
        .connect(ServerName::try_from("a.example.test").unwrap(), tcp)
        .await;
    assert!(refused.is_err(), "TLS 1.2 was accepted");

    // Each refused by name; the TLS 1.3 listener keeps serving.
    let other_key = {
        let mut c = cert(&pki, &["a.example.test"]);
        c.private_key = cert(&pki, &["b.example.test"]).private_key;
        c
    };
    let cases: Vec<(&str, DownstreamTlsContext)> = vec![
        ("is not the certificate's", context(vec![other_key])),
        ("client certificates", {
            let mut c = context(vec![cert(&pki, &["a.example.test"])]);
            c.require_client_certificate =
                Some(gw_proto::envoy::pb::google::protobuf::BoolValue { value: true });
            c
        }),
        ("no tls_certificates", context(Vec::new())),
        ("cipher suites", {
            let mut c = context(vec![cert(&pki, &["a.example.test"])]);
            c.common_tls_context.as_mut().unwrap().tls_params = Some(TlsParameters {
                cipher_suites: vec!["ECDHE-ECDSA-AES128-GCM-SHA256".into()],
                ..Default::default()
            });
            c
        }),
        ("private_key is not a PEM private key", {
            let mut c = context(vec![cert(&pki, &["a.example.test"])]);
            c.common_tls_context.as_mut().unwrap().tls_certificates[0].private_key =
                Some(DataSource {
                    specifier: Some(data_source::Specifier::InlineString("nope".into())),
                    ..Default::default()
                });
            c
        }),
    ];
    for (i, (why, ctx)) in cases.iter().enumerate() {
        let err = p
            .shared()
            .apply(config(&up, Some(ctx), &format!("bad{i}")))
            .unwrap_err()
            .to_string();
        assert!(err.contains("ingress") && err.contains(why), "{why}: {err}");
    }
    let tls = connect(&pki, addr, "a.example.test", &[]).await.unwrap();
    assert_eq!(
        tls.get_ref().1.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_3)
    );
    assert_eq!(request(tls, false, &[]).await.status, 200);
}
