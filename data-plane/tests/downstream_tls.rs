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
use gw_proto::envoy::pb::envoy::config::listener::v3::Listener;
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
    cert_der(pki, names).0
}

/// [`cert`], and the certificate's DER (what a client is served).
fn cert_der(pki: &TestPki, names: &[&str]) -> (TlsCertificate, Vec<u8>) {
    use rustls::pki_types::pem::PemObject;
    let (chain, key) = pki.server_cert(names);
    let der = rustls::pki_types::CertificateDer::from_pem_slice(chain.as_bytes())
        .unwrap()
        .to_vec();
    (tls_certificate(chain, key), der)
}

fn tls_certificate(chain: String, key: String) -> TlsCertificate {
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

/// Accepts any certificate and keeps the one served, to tell which it was.
#[derive(Debug)]
struct Recorder(
    std::sync::Mutex<Vec<u8>>,
    Arc<rustls::crypto::CryptoProvider>,
);

impl rustls::client::danger::ServerCertVerifier for Recorder {
    fn verify_server_cert(
        &self,
        end_entity: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        *self.0.lock().unwrap() = end_entity.to_vec();
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.1.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.1.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.1.signature_verification_algorithms.supported_schemes()
    }
}

/// The certificate served to a client naming `name` (an IP address: no SNI), offering `alpn`;
/// and the ALPN protocol agreed.
async fn served(addr: SocketAddr, name: &str, alpn: &[&str]) -> (Vec<u8>, Option<Vec<u8>>) {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let recorder = Arc::new(Recorder(Default::default(), provider.clone()));
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(recorder.clone())
        .with_no_client_auth();
    cfg.alpn_protocols = alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(ServerName::try_from(name.to_owned()).unwrap(), tcp)
        .await
        .unwrap();
    let alpn = tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
    let got = recorder.0.lock().unwrap().clone();
    (got, alpn)
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
    // The first certificate is the default: for clients without SNI (here: connecting by IP),
    // and for names none is for. A name given exactly beats a wildcard, whatever the order.
    let (a, a_der) = cert_der(&pki, &["a.example.test", "127.0.0.1"]);
    let (wild, wild_der) = cert_der(&pki, &["*.b.example.test"]);
    let (exact, exact_der) = cert_der(&pki, &["x.b.example.test"]);
    let ctx = context(vec![a, wild, exact]);
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

    // HTTP/2 by ALPN; the wildcard certificate picked by SNI (the client verifies the name, so
    // any other certificate fails the handshake). A scheme the client claims is replaced.
    let tls = connect(&pki, addr, "y.b.example.test", &["h2", "http/1.1"])
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let g = request(tls, true, &[("x-forwarded-proto", "http")]).await;
    assert_eq!((g.status, g.version), (200, hyper::Version::HTTP_2));
    assert_eq!(seen(&g, "x-forwarded-proto"), "https");

    // Which certificate each client is served.
    assert_eq!(served(addr, "x.b.example.test", &[]).await.0, exact_der);
    assert_eq!(served(addr, "Y.B.example.test", &[]).await.0, wild_der);
    assert_eq!(served(addr, "c.example.test", &[]).await.0, a_der);
    assert_eq!(served(addr, "127.0.0.1", &[]).await.0, a_der);
    // A client offering only protocols the listener does not speak goes on without ALPN (as
    // with Envoy; rustls alone would refuse it), and is served HTTP/1.1.
    let (_, alpn) = served(addr, "a.example.test", &["acme-tls/1"]).await;
    assert_eq!(alpn, None);
    let tls = connect(&pki, addr, "a.example.test", &["acme-tls/1"])
        .await
        .unwrap();
    assert_eq!(request(tls, false, &[]).await.status, 200);

    // No SNI: the first certificate (valid for 127.0.0.1), which a verifying client accepts.
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

    // An update that keeps the listener's TLS keeps its rustls config (no key parsed again);
    // new certificates are served to the next client.
    let before = p.shared().config.load().listener_tls.clone().unwrap();
    let mut same = config(&up, Some(&ctx), "1");
    same.insert(
        type_url::ROUTE,
        "ingress",
        "2",
        &fixture::route_config(
            "ingress",
            vec![(vec!["*"], vec![fixture::prefix_route("t/all", "/", "t/up")])],
        ),
    );
    p.shared().apply(same).unwrap();
    let after = p.shared().config.load().listener_tls.clone().unwrap();
    assert!(
        Arc::ptr_eq(&before, &after),
        "the same settings were read again"
    );
    // A keep-alive connection made under the old certificates ends when they change (as Envoy
    // drains a changed filter chain's connections); the next client gets the new ones.
    let tls = connect(&pki, addr, "a.example.test", &["http/1.1"])
        .await
        .unwrap();
    let (kept, ended) = open_connection(TokioIo::new(tls), false).await;
    let (renewed, renewed_der) = cert_der(&pki, &["a.example.test", "127.0.0.1"]);
    p.shared()
        .apply(config(&up, Some(&context(vec![renewed])), "3"))
        .unwrap();
    tokio::time::timeout(std::time::Duration::from_secs(60), ended)
        .await
        .expect("a connection under the old certificates was kept")
        .unwrap();
    drop(kept);
    assert_eq!(served(addr, "a.example.test", &[]).await.0, renewed_der);

    // The listener back to plaintext: new connections speak HTTP, and the upstream hears the
    // scheme from the native path too, whatever the client claimed.
    p.shared().apply(config(&up, None, "4")).unwrap();
    let c = common::client();
    let r = common::get(&c, addr, "/plain").await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.headers["x-seen-x-forwarded-proto"], "http",
        "{:?}",
        r.headers
    );
    let r = common::send(
        &c,
        addr,
        "GET",
        "/plain",
        &[("x-forwarded-proto", "https")],
        Bytes::new(),
    )
    .await;
    assert_eq!(
        r.headers["x-seen-x-forwarded-proto"], "http",
        "{:?}",
        r.headers
    );
    // When the listener turns TLS on again: an HTTP/2 connection in plaintext ends; on HTTP/1.1
    // ones, the next request is answered and the connection then ends: a bodyless one on the
    // native path with `connection: close`; a chunked one, which the native path hands to
    // hyper with the bytes it has read, is not lost to the drain hyper's connection starts.
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (kept, ended) = open_connection(TokioIo::new(tcp), true).await;
    let mut plain_get = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut plain_post = tokio::net::TcpStream::connect(addr).await.unwrap();
    for s in [&mut plain_get, &mut plain_post] {
        let head = common::exchange(s, "GET /kept HTTP/1.1\r\nHost: a\r\n\r\n")
            .await
            .0;
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    }
    p.shared().apply(config(&up, Some(&ctx), "5")).unwrap();
    for (s, request, says_close) in [
        (&mut plain_get, "GET /kept HTTP/1.1\r\nHost: a\r\n\r\n", true),
        (
            &mut plain_post,
            "POST /kept HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
            false,
        ),
    ] {
        let head = common::exchange(s, request).await.0.to_ascii_lowercase();
        assert!(head.starts_with("http/1.1 200"), "{head}");
        assert_eq!(head.contains("connection: close"), says_close, "{head}");
        let mut rest = Vec::new();
        let end = tokio::time::timeout(
            std::time::Duration::from_secs(60),
            tokio::io::AsyncReadExt::read_to_end(s, &mut rest),
        )
        .await
        .expect("a plaintext HTTP/1.1 connection was kept on a TLS listener");
        assert!(matches!(end, Ok(0) | Err(_)), "{end:?}");
    }
    tokio::time::timeout(std::time::Duration::from_secs(60), ended)
        .await
        .expect("a plaintext connection was kept on a TLS listener")
        .unwrap();
    drop(kept);
}

/// A client connection over `io` (HTTP/2 when `h2`) that has had one `200`; its sender (kept,
/// so the client does not close it) and the connection's task, which ends when the proxy
/// closes the connection.
async fn open_connection<I>(
    io: I,
    h2: bool,
) -> (Box<dyn std::any::Any + Send>, tokio::task::JoinHandle<()>)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let req = || {
        Request::builder()
            .uri("/kept")
            .header("host", "a.example.test")
            .body(Full::new(Bytes::new()))
            .unwrap()
    };
    let (sender, ended, status) = if h2 {
        let (mut s, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
            .await
            .unwrap();
        let ended = tokio::spawn(async move {
            let _ = conn.await;
        });
        let status = s.send_request(req()).await.unwrap().status();
        (Box::new(s) as Box<dyn std::any::Any + Send>, ended, status)
    } else {
        let (mut s, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
        let ended = tokio::spawn(async move {
            let _ = conn.await;
        });
        let status = s.send_request(req()).await.unwrap().status();
        (Box::new(s) as Box<dyn std::any::Any + Send>, ended, status)
    };
    assert_eq!(status, 200);
    (sender, ended)
}

/// A virtual host's `require_tls` redirects plaintext requests only: over TLS its routes serve.
#[tokio::test]
async fn require_tls_is_met_by_a_tls_listener() {
    let pki = TestPki::new();
    let up = Upstream::start("up").await;
    let with_require_tls = |ctx: Option<&DownstreamTlsContext>, version: &str| {
        let mut res = config(&up, ctx, version);
        let mut rc = fixture::route_config(
            "ingress",
            vec![(vec!["*"], vec![fixture::prefix_route("t/all", "/", "t/up")])],
        );
        rc.virtual_hosts[0].require_tls =
            gw_proto::envoy::pb::envoy::config::route::v3::virtual_host::TlsRequirementType::All
                as i32;
        res.insert(type_url::ROUTE, "ingress", version, &rc);
        res
    };
    let ctx = context(vec![cert(&pki, &["a.example.test"])]);
    let p = proxy(with_require_tls(Some(&ctx), "1")).await;
    let addr = p.listen_addr();
    for h2 in [false, true] {
        let tls = connect(
            &pki,
            addr,
            "a.example.test",
            &["h2", "http/1.1"][usize::from(!h2)..],
        )
        .await
        .unwrap();
        let g = request(tls, h2, &[]).await;
        assert_eq!(g.status, 200, "h2: {h2}");
        assert_eq!(seen(&g, "x-forwarded-proto"), "https");
    }
    // The same routes on a plaintext listener: every request to https.
    p.shared().apply(with_require_tls(None, "2")).unwrap();
    let text = common::raw(
        addr,
        b"GET /hello HTTP/1.1\r\nHost: a.example.test\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(text.starts_with("HTTP/1.1 301"), "{text}");
    assert!(
        text.to_ascii_lowercase()
            .contains("location: https://a.example.test/hello\r\n"),
        "{text}"
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
        (
            "is not the first certificate's key",
            context(vec![other_key]),
        ),
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
        ("session ticket keys", {
            use gw_proto::envoy::pb::envoy::extensions::transport_sockets::tls::v3::{
                downstream_tls_context::SessionTicketKeysType, TlsSessionTicketKeys,
            };
            let mut c = context(vec![cert(&pki, &["a.example.test"])]);
            c.session_ticket_keys_type = Some(SessionTicketKeysType::SessionTicketKeys(
                TlsSessionTicketKeys::default(),
            ));
            c
        }),
        ("a minimum version below TLS 1.2", {
            let mut c = context(vec![cert(&pki, &["a.example.test"])]);
            c.common_tls_context.as_mut().unwrap().tls_params = Some(TlsParameters {
                tls_minimum_protocol_version: TlsProtocol::TlSv11 as i32,
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
    // A listener with connections gw-proxy would not all serve alike is refused too.
    let good = context(vec![cert(&pki, &["a.example.test"])]);
    for (why, edit) in [
        (
            "more than one filter chain",
            (|l: &mut Listener| l.filter_chains.push(l.filter_chains[0].clone()))
                as fn(&mut Listener),
        ),
        ("filter_chain_match", |l: &mut Listener| {
            l.filter_chains[0].filter_chain_match = Some(Default::default());
        }),
        ("listener_filters", |l: &mut Listener| {
            l.listener_filters.push(Default::default());
        }),
    ] {
        let mut res = config(&up, Some(&good), "bad-chain");
        let mut l = fixture::listener("ingress", 8080, "ingress");
        fixture::listener_tls(&mut l, &good);
        edit(&mut l);
        res.insert(type_url::LISTENER, "ingress", "bad-chain", &l);
        let err = p.shared().apply(res).unwrap_err().to_string();
        assert!(err.contains("ingress") && err.contains(why), "{why}: {err}");
    }
    let tls = connect(&pki, addr, "a.example.test", &[]).await.unwrap();
    assert_eq!(
        tls.get_ref().1.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_3)
    );
    assert_eq!(request(tls, false, &[]).await.status, 200);
}

#[tokio::test]
async fn sni_can_be_required_and_session_resumption_turned_off() {
    let pki = TestPki::new();
    let up = Upstream::start("up").await;
    let mut ctx = context(vec![cert(&pki, &["a.example.test", "127.0.0.1"])]);
    ctx.require_sni = Some(gw_proto::envoy::pb::google::protobuf::BoolValue { value: true });
    // Envoy's flag for stateless resumption is one case of the ticket keys' oneof: accepted.
    ctx.session_ticket_keys_type = Some(
        gw_proto::envoy::pb::envoy::extensions::transport_sockets::tls::v3::downstream_tls_context::SessionTicketKeysType::DisableStatelessSessionResumption(true),
    );
    ctx.disable_stateful_session_resumption = true;
    let p = proxy(config(&up, Some(&ctx), "1")).await;
    let addr = p.listen_addr();
    let tls = connect(&pki, addr, "a.example.test", &[]).await.unwrap();
    assert_eq!(request(tls, false, &[]).await.status, 200);
    // No SNI, or one no certificate names: refused.
    assert!(connect(&pki, addr, "127.0.0.1", &[]).await.is_err());
    assert!(connect(&pki, addr, "c.example.test", &[]).await.is_err());
    // Nothing to resume with: a client that connects again makes a full handshake.
    let cfg = Arc::new(pki.rustls_client(&[]));
    for _ in 0..2 {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let tls = tokio_rustls::TlsConnector::from(cfg.clone())
            .connect(ServerName::try_from("a.example.test").unwrap(), tcp)
            .await
            .unwrap();
        assert_eq!(
            tls.get_ref().1.handshake_kind(),
            Some(rustls::HandshakeKind::Full)
        );
        assert_eq!(request(tls, false, &[]).await.status, 200);
    }
    // With Envoy's defaults, the second connection resumes.
    p.shared()
        .apply(config(
            &up,
            Some(&context(vec![cert(&pki, &["a.example.test"])])),
            "2",
        ))
        .unwrap();
    let mut kinds = Vec::new();
    for _ in 0..2 {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let tls = tokio_rustls::TlsConnector::from(cfg.clone())
            .connect(ServerName::try_from("a.example.test").unwrap(), tcp)
            .await
            .unwrap();
        kinds.push(tls.get_ref().1.handshake_kind());
        // The response read, so that the session's tickets have come.
        assert_eq!(request(tls, false, &[]).await.status, 200);
    }
    assert_eq!(
        kinds,
        [
            Some(rustls::HandshakeKind::Full),
            Some(rustls::HandshakeKind::Resumed)
        ]
    );
}

#[tokio::test]
async fn a_stalled_handshake_is_bounded_and_does_not_hold_the_drain() {
    let pki = TestPki::new();
    let up = Upstream::start("up").await;
    let mut res = config(&up, None, "1");
    let mut l = fixture::listener("ingress", 8080, "ingress");
    fixture::listener_tls(&mut l, &context(vec![cert(&pki, &["a.example.test"])]));
    l.filter_chains[0].transport_socket_connect_timeout =
        Some(fixture::duration(std::time::Duration::from_millis(300)));
    res.insert(type_url::LISTENER, "ingress", "1", &l);
    // A drain that would outlast the test: the shutdown below must not wait for it.
    let mut cfg = ProxyConfig::for_tests(None, "tls-down");
    cfg.drain_timeout = std::time::Duration::from_secs(600);
    let p = Proxy::start(cfg).await.unwrap();
    p.shared().apply(res).unwrap();
    let addr = p.listen_addr();
    // A client that says nothing is closed at the chain's transport_socket_connect_timeout
    // (without it, a request head's bound: 5 minutes), and counted.
    let mut silent = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut buf = [0u8; 16];
    let closed = tokio::time::timeout(
        std::time::Duration::from_secs(60),
        tokio::io::AsyncReadExt::read(&mut silent, &mut buf),
    )
    .await
    .expect("the handshake was not bounded");
    assert!(matches!(closed, Ok(0) | Err(_)), "{closed:?}");
    assert_eq!(p.shared().tls_failed.load(Ordering::Relaxed), 1);

    // Draining gives up handshakes in progress at once: the shutdown does not wait for the
    // drain timeout on a client that never finishes its handshake.
    let mut res = config(&up, None, "2");
    let mut l = fixture::listener("ingress", 8080, "ingress");
    fixture::listener_tls(&mut l, &context(vec![cert(&pki, &["a.example.test"])]));
    res.insert(type_url::LISTENER, "ingress", "2", &l);
    p.shared().apply(res).unwrap();
    let mut stalled = tokio::net::TcpStream::connect(addr).await.unwrap();
    // The proxy has the connection (its handshake waits) once a request over TLS made after it
    // has been served: connections are accepted in order.
    let tls = connect(&pki, addr, "a.example.test", &[]).await.unwrap();
    assert_eq!(request(tls, false, &[]).await.status, 200);
    tokio::time::timeout(std::time::Duration::from_secs(60), p.shutdown())
        .await
        .expect("the drain waited for a stalled handshake");
    let end = tokio::io::AsyncReadExt::read(&mut stalled, &mut buf).await;
    assert!(matches!(end, Ok(0) | Err(_)), "{end:?}");
}
