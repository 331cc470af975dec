//! TLS clusters (Envoy's `UpstreamTlsContext` transport socket) against a real TLS upstream with
//! a test CA's certificate: keep-alive connections pooled over TLS, requests from the native
//! path's clients and HTTP/2 ones alike, bodies both ways; health probes over TLS; a change of
//! TLS settings makes new connections; what gw-proxy cannot follow is NACKed by name and the
//! previous config serves.

#![allow(clippy::unwrap_used)]

mod common;

use bytes::Bytes;
use common::exchange;
use gw_control_plane::testing::TestPki;
use gw_proto::envoy::pb::envoy::config::core::v3::{data_source, DataSource};
use gw_proto::envoy::pb::envoy::extensions::transport_sockets::tls::v3::{
    common_tls_context::ValidationContextType, tls_parameters::TlsProtocol,
    CertificateValidationContext, TlsCertificate, TlsParameters, UpstreamTlsContext,
};
use gw_proxy::config::{fixture, type_url, Resources};
use gw_proxy::server::{Proxy, ProxyConfig};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A TLS upstream (HTTP/1.1 and HTTP/2 by ALPN): echoes the body, names the SNI it got in
/// `x-sni` and the TLS version in `x-tls`; counts handshakes, requests and `/health` probes;
/// answers an upgrade with `101` and an echo.
struct Up {
    addr: SocketAddr,
    handshakes: Arc<AtomicU32>,
    probes: Arc<AtomicU32>,
    snis: Arc<Mutex<Vec<String>>>,
}

async fn upstream(pki: &TestPki) -> Up {
    let cfg = pki.rustls_server();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let up = Up {
        addr,
        handshakes: Arc::default(),
        probes: Arc::default(),
        snis: Arc::default(),
    };
    let (handshakes, probes, snis) = (up.handshakes.clone(), up.probes.clone(), up.snis.clone());
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            let acceptor = acceptor.clone();
            let (handshakes, probes, snis) = (handshakes.clone(), probes.clone(), snis.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(s).await else {
                    return;
                };
                handshakes.fetch_add(1, Ordering::SeqCst);
                let sni = tls.get_ref().1.server_name().unwrap_or("").to_owned();
                let version = format!("{:?}", tls.get_ref().1.protocol_version());
                snis.lock().unwrap().push(sni.clone());
                let svc = hyper::service::service_fn(move |mut req: Request<Incoming>| {
                    let (sni, tls_version) = (sni.clone(), version.clone());
                    if req.uri().path() == "/health" {
                        probes.fetch_add(1, Ordering::SeqCst);
                    }
                    // An upgrade: `101`, then an echo.
                    let upgrade = req
                        .headers()
                        .contains_key("upgrade")
                        .then(|| hyper::upgrade::on(&mut req));
                    async move {
                        if let Some(on) = upgrade {
                            tokio::spawn(async move {
                                let mut io = TokioIo::new(on.await.unwrap());
                                let mut buf = [0u8; 64];
                                while let Ok(n @ 1..) = io.read(&mut buf).await {
                                    io.write_all(&buf[..n]).await.unwrap();
                                }
                            });
                            let resp = Response::builder()
                                .status(101)
                                .header("connection", "upgrade")
                                .header("upgrade", "websocket")
                                .body(Full::new(Bytes::new()))
                                .unwrap();
                            return Ok::<_, std::convert::Infallible>(resp);
                        }
                        let version = format!("{:?}", req.version());
                        let body = req.into_body().collect().await.unwrap().to_bytes();
                        let resp = Response::builder()
                            .header("x-sni", sni)
                            .header("x-tls", tls_version)
                            .header("x-version", version)
                            .body(Full::new(body))
                            .unwrap();
                        Ok::<_, std::convert::Infallible>(resp)
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection_with_upgrades(TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    up
}

/// A context verifying against `pki`'s CA, sending `sni`.
fn context(pki: &TestPki, sni: &str) -> UpstreamTlsContext {
    let ca = data_source::Specifier::Filename(pki.path("ca.pem").display().to_string());
    with_ca(
        UpstreamTlsContext {
            sni: sni.into(),
            ..Default::default()
        },
        ca,
    )
}

/// `ctx`, verifying against the CA certificates `ca` holds.
fn with_ca(mut ctx: UpstreamTlsContext, ca: data_source::Specifier) -> UpstreamTlsContext {
    let common = ctx.common_tls_context.get_or_insert_with(Default::default);
    common.validation_context_type = Some(ValidationContextType::ValidationContext(
        CertificateValidationContext {
            trusted_ca: Some(DataSource {
                specifier: Some(ca),
                ..Default::default()
            }),
            ..Default::default()
        },
    ));
    ctx
}

/// Route `/` to `t/tls`, a cluster of `up` over TLS with `ctx` (WebSocket upgrades allowed);
/// `version` of the cluster.
fn config(up: &Up, ctx: &UpstreamTlsContext, version: &str) -> Resources {
    use gw_proto::envoy::pb::envoy::config::route::v3::route_action::UpgradeConfig;
    let mut route = fixture::prefix_route("t/all", "/", "t/tls");
    if let Some(a) = fixture::action(&mut route) {
        a.upgrade_configs = vec![UpgradeConfig {
            upgrade_type: "websocket".into(),
            enabled: Some(gw_proto::envoy::pb::google::protobuf::BoolValue { value: true }),
            ..Default::default()
        }];
    }
    let mut res = fixture::simple(vec![route], &[("t/tls", "round_robin", vec![(up.addr, 1)])]);
    let mut c = fixture::cluster("t/tls", "round_robin");
    fixture::tls(&mut c, ctx);
    res.insert(type_url::CLUSTER, "t/tls", version, &c);
    res
}

async fn proxy(res: Resources) -> Proxy {
    let p = Proxy::start(ProxyConfig::for_tests(None, "tls-up"))
        .await
        .unwrap();
    p.shared().apply(res).unwrap();
    p
}

#[tokio::test]
async fn tls_clusters_pool_connections_and_carry_every_kind_of_request() {
    let pki = TestPki::new();
    let up = upstream(&pki).await;
    let p = proxy(config(&up, &context(&pki, "localhost"), "1")).await;
    // An HTTP/1.1 client on one connection: bodyless and bodied requests alike (the native path
    // hands the connection to hyper's client for a TLS cluster), all over one TLS connection
    // upstream, kept alive.
    let mut s = tokio::net::TcpStream::connect(p.listen_addr())
        .await
        .unwrap();
    for i in 0..10 {
        let (head, body) = exchange(&mut s, "GET /a HTTP/1.1\r\nHost: h\r\n\r\n").await;
        assert!(head.starts_with("HTTP/1.1 200"), "{i}: {head}");
        assert!(head.contains("x-sni: localhost"), "{head}");
        assert!(head.contains("x-version: HTTP/1.1"), "{head}");
        // No `tls_params`: Envoy's client default, TLS 1.2 at most.
        assert!(head.contains("x-tls: Some(TLSv1_2)"), "{head}");
        assert_eq!(body, "");
        let (head, body) = exchange(
            &mut s,
            "POST /b HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello",
        )
        .await;
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert_eq!(body, "hello");
    }
    assert_eq!(
        up.handshakes.load(Ordering::SeqCst),
        1,
        "one pooled connection"
    );
    // An HTTP/2 client: the same pooled connection carries its requests.
    let io = TokioIo::new(
        tokio::net::TcpStream::connect(p.listen_addr())
            .await
            .unwrap(),
    );
    let (mut c, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
        .await
        .unwrap();
    tokio::spawn(conn);
    let resp = c
        .send_request(
            Request::post("http://h/c")
                .body(Full::new(Bytes::from_static(b"over h2")))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, "over h2");
    assert_eq!(up.handshakes.load(Ordering::SeqCst), 1);

    // New TLS settings (another SNI, no verification, TLS 1.3 allowed) make new connections:
    // none made under the old ones is reused.
    let mut insecure = context(&pki, "other.test");
    if let Some(c) = insecure.common_tls_context.as_mut() {
        c.validation_context_type = None;
        c.tls_params = Some(TlsParameters {
            tls_maximum_protocol_version: TlsProtocol::TlSv13 as i32,
            ..Default::default()
        });
    }
    p.shared().apply(config(&up, &insecure, "2")).unwrap();
    let (head, _) = exchange(&mut s, "GET /d HTTP/1.1\r\nHost: h\r\n\r\n").await;
    assert!(head.contains("x-sni: other.test"), "{head}");
    assert!(head.contains("x-tls: Some(TLSv1_3)"), "{head}");
    assert_eq!(
        up.snis.lock().unwrap().as_slice(),
        ["localhost", "other.test"]
    );
}

#[tokio::test]
async fn a_websocket_to_a_tls_cluster_tunnels_over_tls() {
    let pki = TestPki::new();
    let up = upstream(&pki).await;
    let p = proxy(config(&up, &context(&pki, "localhost"), "1")).await;
    let mut s = tokio::net::TcpStream::connect(p.listen_addr())
        .await
        .unwrap();
    s.write_all(
        b"GET /ws HTTP/1.1\r\nHost: h\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n",
    )
    .await
    .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = s.read(&mut buf).await.unwrap();
        assert!(n > 0, "{}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    let head = String::from_utf8_lossy(&got).into_owned();
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    s.write_all(b"ping over tls").await.unwrap();
    let mut echo = [0u8; 13];
    s.read_exact(&mut echo).await.unwrap();
    assert_eq!(&echo, b"ping over tls");
    assert_eq!(up.handshakes.load(Ordering::SeqCst), 1);
}

/// [`config`] with an HTTP health check of `path`, or a TCP one.
fn probed(up: &Up, ctx: &UpstreamTlsContext, path: Option<&str>, version: &str) -> Resources {
    let mut res = config(up, ctx, version);
    let mut c = fixture::cluster("t/tls", "round_robin");
    fixture::tls(&mut c, ctx);
    fixture::health_check(&mut c, path);
    res.insert(type_url::CLUSTER, "t/tls", version, &c);
    res
}

/// Waits (up to 10 s) until `done`.
async fn until(what: &str, done: impl Fn() -> bool) {
    let t0 = std::time::Instant::now();
    while !done() {
        assert!(t0.elapsed().as_secs() < 10, "{what}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_tls_clusters_endpoints_are_probed_over_tls() {
    let pki = TestPki::new();
    let up = upstream(&pki).await;
    let ctx = context(&pki, "localhost");
    let p = proxy(probed(&up, &ctx, Some("/health"), "1")).await;
    // HTTP probes reach the TLS-only upstream (a plaintext probe never completes a request
    // there), with the SNI.
    until("no health probe reached the upstream", || {
        up.probes.load(Ordering::SeqCst) >= 3
    })
    .await;
    assert_eq!(
        up.snis.lock().unwrap().first().map(String::as_str),
        Some("localhost")
    );
    let healthy = || {
        let cfg = p.shared().config.load_full();
        let cluster = cfg.clusters.get("t/tls").unwrap();
        cluster.endpoints.iter().all(|e| e.is_healthy())
    };
    assert!(healthy());

    // TCP probes handshake too (as Envoy's over the transport socket): each is a TLS session.
    p.shared().apply(probed(&up, &ctx, None, "2")).unwrap();
    let before = up.handshakes.load(Ordering::SeqCst);
    until("TCP probes made no TLS handshake", || {
        up.handshakes.load(Ordering::SeqCst) >= before + 3
    })
    .await;
    assert!(healthy());
    // A certificate refused fails them: another CA, and the endpoint turns unhealthy.
    let other = TestPki::new();
    p.shared()
        .apply(probed(&up, &context(&other, "localhost"), None, "3"))
        .unwrap();
    until("a refused certificate left the endpoint healthy", || {
        !healthy()
    })
    .await;
}

#[tokio::test]
async fn tls_settings_gw_proxy_cannot_follow_are_refused() {
    let pki = TestPki::new();
    let up = upstream(&pki).await;
    let p = proxy(config(&up, &context(&pki, "localhost"), "1")).await;
    let mut client_cert = context(&pki, "localhost");
    if let Some(c) = client_cert.common_tls_context.as_mut() {
        c.tls_certificates = vec![TlsCertificate::default()];
    }
    let no_ca = with_ca(
        context(&pki, "localhost"),
        data_source::Specifier::InlineString("not a PEM".into()),
    );
    let missing = with_ca(
        context(&pki, "localhost"),
        data_source::Specifier::Filename("/nonexistent.pem".into()),
    );
    let mut ciphers = context(&pki, "localhost");
    if let Some(c) = ciphers.common_tls_context.as_mut() {
        c.tls_params = Some(TlsParameters {
            cipher_suites: vec!["ECDHE-RSA-AES128-GCM-SHA256".into()],
            ..Default::default()
        });
    }
    let dotted = context(&pki, "localhost.");
    for (ctx, want) in [
        (ciphers, "cipher suites"),
        (dotted, "ends with a dot"),
        (client_cert, "a client certificate is not supported"),
        (no_ca, "trusted_ca holds no PEM certificate"),
        (missing, "trusted_ca /nonexistent.pem"),
    ] {
        let err = p
            .shared()
            .apply(config(&up, &ctx, "2"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("t/tls") && err.contains(want), "{err}");
    }
    // The previous config still serves, over TLS.
    let mut s = tokio::net::TcpStream::connect(p.listen_addr())
        .await
        .unwrap();
    let (head, _) = exchange(&mut s, "GET /a HTTP/1.1\r\nHost: h\r\n\r\n").await;
    assert!(
        head.starts_with("HTTP/1.1 200") && head.contains("x-sni: localhost"),
        "{head}"
    );
}
