//! Listener timeouts parity: a Listener's `idleTimeout` and `requestHeadersTimeout` reach a stock
//! Envoy 1.40 (HCM `common_http_protocol_options.idle_timeout`, `request_headers_timeout`) and
//! gw-proxy alike, and both act on them the same way: an idle HTTP/1.1 connection is closed
//! after its answer, headers that stop coming get 408 and the close, and an idle HTTP/2
//! connection is ended by the proxy.

#![allow(clippy::unwrap_used)]

use gw_e2e::upstream::Upstream;
use gw_e2e::{control, envoy, free_port, serving};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// What the proxy sends until it closes the connection; fails if it keeps it open.
async fn until_closed(mut s: TcpStream, who: &str, what: &str) -> String {
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(15), s.read_to_end(&mut rest))
        .await
        .unwrap_or_else(|_| panic!("{who} kept the connection open ({what})"))
        .unwrap_or_else(|e| panic!("{who}: {e}"));
    String::from_utf8_lossy(&rest).into_owned()
}

async fn check(who: &str, addr: SocketAddr) {
    // Idle after an answered request: the answer, then the close.
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /svc/idle HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let rest = until_closed(s, who, "idle after a request").await;
    assert!(rest.starts_with("HTTP/1.1 200"), "{who}: {rest}");

    // Headers that stop coming: 408, then the close.
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /svc/slow HTTP/1.1\r\nHo").await.unwrap();
    let rest = until_closed(s, who, "partial request headers").await;
    assert!(rest.starts_with("HTTP/1.1 408"), "{who}: {rest}");

    // HTTP/2 with prior knowledge: after one request the proxy ends the idle connection
    // (GOAWAY, then the close).
    let io = hyper_util::rt::TokioIo::new(TcpStream::connect(addr).await.unwrap());
    let (mut c, conn) =
        hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), io)
            .await
            .unwrap();
    let conn = tokio::spawn(conn);
    let req = hyper::Request::builder()
        .uri(format!("http://{addr}/svc/h2"))
        .header("host", "x")
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    let resp = c.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200, "{who}");
    drop(resp);
    tokio::time::timeout(Duration::from_secs(15), conn)
        .await
        .unwrap_or_else(|_| panic!("{who} kept an idle HTTP/2 connection open"))
        .unwrap()
        .unwrap_or_else(|e| panic!("{who}: {e}"));
}

#[tokio::test(flavor = "multi_thread")]
async fn envoy_and_gw_proxy_close_idle_and_slow_connections_alike() {
    let Some(bin) = envoy::binary() else { return };
    let cp = control::start().await.unwrap();
    let up = Upstream::start("svc").await.unwrap();
    let port = free_port();
    let yaml = format!(
        "apiVersion: gw/v1\nkind: Tenant\nmetadata: {{name: acme}}\n---\n\
         apiVersion: gw/v1\nkind: Listener\nmetadata: {{name: edge}}\n\
         spec: {{nodeCluster: edge, address: 127.0.0.1, port: {port}, idleTimeout: 500ms, requestHeadersTimeout: 300ms}}\n---\n\
         apiVersion: gw/v1\nkind: Cluster\nmetadata: {{name: svc, tenant: acme}}\n\
         spec: {{endpoints: [{{address: 127.0.0.1, port: {}}}]}}\n---\n\
         apiVersion: gw/v1\nkind: Route\nmetadata: {{name: svc, tenant: acme}}\n\
         spec: {{match: {{pathPrefix: /svc}}, cluster: svc}}\n",
        up.port()
    );
    control::apply(&cp, &yaml).await.unwrap();

    let (envoy, envoy_addr) = serving::envoy(&bin, &cp, "timeouts-envoy", port, "/svc/w").await;
    let gw = serving::gw_proxy(&cp, "timeouts-gw", "/svc/w").await;
    check("Envoy", envoy_addr).await;
    check("gw-proxy", gw.listen_addr()).await;

    gw.shutdown().await;
    drop(envoy);
    cp.shutdown().await;
}
