//! HTTPS listeners (a Listener's `tls`, Envoy's `DownstreamTlsContext` transport socket) through a
//! stock Envoy 1.40 and through gw-proxy fed the same manifest. Both proxies: serve the
//! certificate the client's SNI names (a wildcard one too), the first when the client sends no
//! SNI; negotiate HTTP/2 or HTTP/1.1 by ALPN; accept TLS 1.2 and 1.3, or 1.3 alone; tell the
//! upstream the client's scheme in `x-forwarded-proto` (replacing what the client claimed) and
//! append its address to `x-forwarded-for`, as an edge Envoy (`use_remote_address`); and, when the
//! listener goes back to plaintext, serve HTTP with `x-forwarded-proto: http`.

#![allow(clippy::unwrap_used)]

use bytes::Bytes;
use gw_control_plane::testing::TestPki;
use gw_e2e::envoy::{Envoy, Mode};
use gw_e2e::{control, free_port, http, wait};
use gw_proxy::server::{Proxy, ProxyConfig};
use http_body_util::{BodyExt, Empty};
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::ServerName;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// What a request over TLS got.
#[derive(Debug)]
struct Got {
    status: u16,
    alpn: String,
    tls: String,
    version: String,
    proto: String,
    xff: String,
}

/// `GET /svc/x` to `addr` over TLS naming `name` (an IP address: no SNI), offering `alpn`
/// (HTTP/2 when the proxy picks `h2`), up to `max` TLS version 1.2 (`tls12`) or 1.3.
async fn get(
    pki: &TestPki,
    addr: SocketAddr,
    name: &str,
    alpn: &[&str],
    tls12: bool,
    headers: &[(&str, &str)],
) -> anyhow::Result<Got> {
    let mut cfg = pki.rustls_client(alpn);
    if tls12 {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        cfg = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS12])?
            .with_root_certificates(pki.roots())
            .with_no_client_auth();
        cfg.alpn_protocols = alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
    }
    let fut = async {
        let tcp = tokio::net::TcpStream::connect(addr).await?;
        let tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
            .connect(ServerName::try_from(name.to_owned())?, tcp)
            .await?;
        let (_, session) = tls.get_ref();
        let alpn = session
            .alpn_protocol()
            .map(|p| String::from_utf8_lossy(p).into_owned())
            .unwrap_or_default();
        let tls_version = format!("{:?}", session.protocol_version().unwrap());
        let mut req = Request::builder().uri("https://site.example.test/svc/x");
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let io = TokioIo::new(tls);
        let resp = if alpn == "h2" {
            let (mut s, conn) =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), io).await?;
            tokio::spawn(conn);
            s.send_request(req.body(Empty::<Bytes>::new())?).await?
        } else {
            let (mut s, conn) = hyper::client::conn::http1::handshake(io).await?;
            tokio::spawn(conn);
            let req = req
                .uri("/svc/x")
                .header("host", "site.example.test")
                .body(Empty::<Bytes>::new())?;
            s.send_request(req).await?
        };
        let got = Got {
            status: resp.status().as_u16(),
            alpn,
            tls: tls_version,
            version: format!("{:?}", resp.version()),
            proto: header(&resp, "x-seen-x-forwarded-proto"),
            xff: header(&resp, "x-seen-x-forwarded-for"),
        };
        resp.into_body().collect().await?;
        anyhow::Ok(got)
    };
    tokio::time::timeout(Duration::from_secs(10), fut)
        .await
        .map_err(|_| anyhow::anyhow!("TLS request to {addr} timed out"))?
}

/// Whether `xff` is `before` with the client's address appended: `127.0.0.1` by gw-proxy; by
/// Envoy, for a loopback client, its host's own address (Envoy appends that in place of a
/// loopback one), and joined by `,` rather than `, `.
fn xff_is(who: &str, xff: &str, before: &[&str]) {
    let got: Vec<&str> = xff.split(',').map(str::trim).collect();
    assert_eq!(got.len(), before.len() + 1, "{who}: {xff}");
    assert_eq!(&got[..before.len()], before, "{who}: {xff}");
    let last = got[before.len()];
    if who == "gw-proxy" {
        assert_eq!(last, "127.0.0.1", "{who}: {xff}");
    } else {
        assert!(last.parse::<std::net::IpAddr>().is_ok(), "{who}: {xff}");
    }
}

fn header<B>(r: &Response<B>, name: &str) -> String {
    r.headers()
        .get(name)
        .map_or(String::new(), |v| v.to_str().unwrap_or("").to_owned())
}

/// The manifest: a listener on `port`, with `tls` (its YAML) or in plaintext, and `/svc` to the
/// upstream at `up`.
fn manifest(port: u16, tls: &str, up: SocketAddr) -> String {
    format!(
        "apiVersion: gw/v1\nkind: Tenant\nmetadata: {{name: acme}}\n---\n\
         apiVersion: gw/v1\nkind: Listener\nmetadata: {{name: edge}}\n\
         spec: {{nodeCluster: edge, address: 127.0.0.1, port: {port}{tls}}}\n---\n\
         apiVersion: gw/v1\nkind: Cluster\nmetadata: {{name: svc, tenant: acme}}\n\
         spec: {{endpoints: [{{address: 127.0.0.1, port: {}}}]}}\n---\n\
         apiVersion: gw/v1\nkind: Route\nmetadata: {{name: svc, tenant: acme}}\n\
         spec: {{match: {{pathPrefix: /svc}}, cluster: svc}}\n",
        up.port()
    )
}

async fn check_tls(who: &str, pki: &TestPki, addr: SocketAddr) {
    // HTTP/2 by ALPN, the certificate named by SNI; the upstream hears `https` and the
    // client's address appended to what the client sent.
    let g = get(
        pki,
        addr,
        "a.example.test",
        &["h2", "http/1.1"],
        false,
        &[("x-forwarded-for", "10.9.9.9")],
    )
    .await
    .unwrap_or_else(|e| panic!("{who}: {e}"));
    xff_is(who, &g.xff, &["10.9.9.9"]);
    assert_eq!(
        (
            g.status,
            g.alpn.as_str(),
            g.version.as_str(),
            g.tls.as_str(),
            g.proto.as_str()
        ),
        (200, "h2", "HTTP/2.0", "TLSv1_3", "https"),
        "{who}"
    );
    // HTTP/1.1 by ALPN over TLS 1.2; the wildcard certificate (the client checks the name);
    // a scheme the client claims is replaced by the connection's.
    let g = get(
        pki,
        addr,
        "x.b.example.test",
        &["http/1.1"],
        true,
        &[("x-forwarded-proto", "http")],
    )
    .await
    .unwrap_or_else(|e| panic!("{who}: {e}"));
    assert_eq!(
        (
            g.status,
            g.alpn.as_str(),
            g.version.as_str(),
            g.tls.as_str(),
            g.proto.as_str()
        ),
        (200, "http/1.1", "HTTP/1.1", "TLSv1_2", "https"),
        "{who}"
    );
    // No SNI and no ALPN: the first certificate (valid for 127.0.0.1), HTTP/1.1.
    let g = get(pki, addr, "127.0.0.1", &[], false, &[])
        .await
        .unwrap_or_else(|e| panic!("{who}: {e}"));
    assert_eq!(
        (
            g.status,
            g.alpn.as_str(),
            g.version.as_str(),
            g.proto.as_str()
        ),
        (200, "", "HTTP/1.1", "https"),
        "{who}"
    );
    // A name no certificate is valid for: the first certificate, which the client refuses.
    let e = get(pki, addr, "c.example.test", &[], false, &[])
        .await
        .unwrap_err();
    assert!(
        format!("{e:#}").contains("not valid for name"),
        "{who}: {e:#}"
    );
}

/// Waits until `addr` answers `/svc/x` over TLS.
async fn until_tls(who: &str, pki: &TestPki, addr: SocketAddr) {
    wait::until(
        &format!("{who} serving TLS"),
        Duration::from_secs(20),
        || async {
            get(pki, addr, "a.example.test", &[], false, &[])
                .await
                .ok()
                .map(drop)
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
}

/// Waits until `addr` answers `/svc/x` in plaintext; what the upstream heard.
async fn until_plain(who: &str, addr: SocketAddr) -> http::Reply {
    wait::until(
        &format!("{who} serving plaintext"),
        Duration::from_secs(20),
        || async {
            http::get(addr, "site.example.test", "/svc/x")
                .await
                .ok()
                .filter(|r| r.status == 200)
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn envoy_and_gw_proxy_terminate_tls_alike() {
    let Some(bin) = gw_e2e::envoy::binary() else {
        return;
    };
    let pki = TestPki::new();
    let (a_cert, a_key) = pki.server_cert(&["a.example.test", "127.0.0.1"]);
    let (b_cert, b_key) = pki.server_cert(&["*.b.example.test"]);
    let q = |pem: &str| serde_json::to_string(pem).unwrap();
    let tls = format!(
        ", tls: {{certificates: [{{certChain: {}, privateKey: {}}}, {{certChain: {}, privateKey: {}}}]}}",
        q(&a_cert),
        q(&a_key),
        q(&b_cert),
        q(&b_key)
    );
    let up = gw_e2e::echo::upstream().await.unwrap();
    let cp = control::start().await.unwrap();
    let port = free_port();
    control::apply(&cp, &manifest(port, &tls, up))
        .await
        .unwrap();

    let envoy = Envoy::start(&bin, cp.grpc_addr(), "dtls-envoy", "edge", Mode::Delta)
        .await
        .unwrap();
    envoy
        .wait_ready()
        .await
        .unwrap_or_else(|e| panic!("Envoy ready: {e}\n{}", envoy.log()));
    let envoy_addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut cfg = ProxyConfig::for_tests(Some(format!("http://{}", cp.grpc_addr())), "dtls-gw");
    cfg.node_cluster = "edge".into();
    let gw = Proxy::start(cfg).await.unwrap();
    let gw_addr = gw.listen_addr();

    let both = [("Envoy", envoy_addr), ("gw-proxy", gw_addr)];
    for (who, addr) in both {
        until_tls(who, &pki, addr).await;
        check_tls(who, &pki, addr).await;
    }

    // TLS 1.3 only: a TLS 1.2 client is refused by both, once the change is in.
    let tls13 = tls.replacen("tls: {", "tls: {minVersion: '1.3', ", 1);
    control::apply(&cp, &manifest(port, &tls13, up))
        .await
        .unwrap();
    for (who, addr) in both {
        wait::until(
            &format!("{who} refusing TLS 1.2"),
            Duration::from_secs(20),
            || async {
                get(&pki, addr, "a.example.test", &[], true, &[])
                    .await
                    .is_err()
                    .then_some(())
            },
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        let g = get(&pki, addr, "a.example.test", &[], false, &[])
            .await
            .unwrap();
        assert_eq!((g.status, g.tls.as_str()), (200, "TLSv1_3"), "{who}");
    }

    // The listener back to plaintext: both serve HTTP, and say so upstream, whatever the
    // client claimed.
    control::apply(&cp, &manifest(port, "", up)).await.unwrap();
    for (who, addr) in both {
        let r = until_plain(who, addr).await;
        assert_eq!(
            r.header("x-seen-x-forwarded-proto"),
            Some("http"),
            "{who}: {r:?}"
        );
        let r = http::send(
            addr,
            "GET",
            "h",
            "/svc/x",
            &[("x-forwarded-proto", "https")],
        )
        .await
        .unwrap();
        assert_eq!(
            r.header("x-seen-x-forwarded-proto"),
            Some("http"),
            "{who}: {r:?}"
        );
        xff_is(who, r.header("x-seen-x-forwarded-for").unwrap_or(""), &[]);
    }

    gw.shutdown().await;
    drop(envoy);
    cp.shutdown().await;
}
