//! Listener timeouts parity: a Listener's `idleTimeout` and `requestHeadersTimeout` reach a stock
//! Envoy 1.40 (HCM `common_http_protocol_options.idle_timeout`, `request_headers_timeout`) and
//! gw-proxy alike, and both act on them the same way: an idle HTTP/1.1 connection is closed
//! after its answer, headers that stop coming get 408 and the close, and an idle HTTP/2
//! connection is ended by the proxy. Likewise a Listener's `maxConnectionDuration` (HCM
//! `common_http_protocol_options.max_connection_duration`): a connection past it ends at a
//! request boundary, idle or busy, HTTP/1.1 or HTTP/2. A Route's `timeout` (RouteAction
//! `timeout`) runs until the response has been relayed whole: a body that stalls is cut there.
//! And a Listener's `streamIdleTimeout` (HCM `stream_idle_timeout`) answers a response head that
//! does not come `504 stream timeout`, and cuts a body that stops moving; a Route's `idleTimeout`
//! (RouteAction `idle_timeout`) replaces it for the route.

#![allow(clippy::unwrap_used)]

use gw_e2e::serving::on_both;
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

/// `GET path` answered with 200 on a new connection, which the proxy then ends (`what` it is
/// waiting for, in the failure message).
async fn get_then_closed(who: &str, addr: SocketAddr, path: &str, what: &str) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let rest = until_closed(s, who, what).await;
    assert!(rest.starts_with("HTTP/1.1 200"), "{who}: {rest}");
}

/// One HTTP/2 (prior knowledge) request, answered; then the proxy must end the connection
/// (GOAWAY, then the close) while the client holds it open.
async fn h2_request_then_end(who: &str, addr: SocketAddr, what: &str) {
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
        .unwrap_or_else(|_| panic!("{who} kept an {what} HTTP/2 connection open"))
        .unwrap()
        .unwrap_or_else(|e| panic!("{who}: {e}"));
}

async fn check(who: &str, addr: SocketAddr) {
    // Idle after an answered request: the answer, then the close.
    get_then_closed(who, addr, "/svc/idle", "idle after a request").await;

    // Headers that stop coming: 408, then the close.
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /svc/slow HTTP/1.1\r\nHo").await.unwrap();
    let rest = until_closed(s, who, "partial request headers").await;
    assert!(rest.starts_with("HTTP/1.1 408"), "{who}: {rest}");

    // HTTP/2 with prior knowledge: after one request the proxy ends the idle connection
    // (GOAWAY, then the close).
    h2_request_then_end(who, addr, "idle").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn envoy_and_gw_proxy_close_idle_and_slow_connections_alike() {
    on_both(
        "timeouts",
        "idleTimeout: 500ms, requestHeadersTimeout: 300ms",
        &[("/svc", "")],
        check,
    )
    .await;
}

/// One response of declared length off `s`: its head (lower case) and body; `None` when the
/// connection ends before a head.
async fn read_response(who: &str, s: &mut TcpStream) -> Option<(String, Vec<u8>)> {
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match s.read(&mut b).await {
            Ok(1) => head.push(b[0]),
            _ => break,
        }
    }
    if head.is_empty() {
        return None;
    }
    let text = String::from_utf8_lossy(&head).to_ascii_lowercase();
    let len: usize = text
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map(|v| v.trim().parse().unwrap())
        .unwrap_or_else(|| panic!("{who}: no content-length in {text}"));
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).await.unwrap();
    Some((text, body))
}

/// A connection past its maximum age ends: idle (after its one answer), busy (between two
/// requests, or after a response that says `connection: close`), and HTTP/2 (GOAWAY).
async fn check_aged(who: &str, addr: SocketAddr) {
    get_then_closed(who, addr, "/svc/aged", "idle past the maximum age").await;

    // Busy: one request after another, each read whole (Content-Length) before the next.
    // Taken before the connection exists, so its age is never ahead of this clock.
    let t0 = std::time::Instant::now();
    let mut s = TcpStream::connect(addr).await.unwrap();
    let mut answered = 0;
    loop {
        assert!(
            t0.elapsed() < Duration::from_secs(15),
            "{who} kept a busy connection past its maximum age ({answered} answers)"
        );
        let _ = s
            .write_all(b"GET /svc/busy HTTP/1.1\r\nHost: x\r\n\r\n")
            .await;
        let Some((text, _)) = read_response(who, &mut s).await else {
            break; // ended between two requests
        };
        assert!(text.starts_with("http/1.1 200"), "{who}: {text}");
        answered += 1;
        if text.contains("connection: close") {
            let rest = until_closed(s, who, "after connection: close").await;
            assert!(rest.is_empty(), "{who}: {rest}");
            break;
        }
    }
    assert!(answered > 1, "{who}: ended after {answered} answers");
    assert!(
        t0.elapsed() >= Duration::from_millis(500),
        "{who}: {:?}",
        t0.elapsed()
    );

    h2_request_then_end(who, addr, "aged").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn envoy_and_gw_proxy_end_connections_past_their_maximum_age_alike() {
    // The idle timeout is far off: what ends connections here is their age.
    on_both(
        "aged",
        "idleTimeout: 60s, maxConnectionDuration: 500ms",
        &[("/svc", "")],
        check_aged,
    )
    .await;
}

/// A response whose body stalls halfway: the head and what came are relayed, then the stream is
/// ended (HTTP/1.1: the connection closes; HTTP/2: the stream is reset and the connection serves
/// on, here a request of `then`).
async fn check_stall(who: &str, addr: SocketAddr, then: &str) {
    use http_body_util::BodyExt;
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /svc/stall HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let rest = until_closed(s, who, "a stalled response").await;
    let head = rest.to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{who}: {rest}");
    assert!(head.contains("\r\ncontent-length: 10\r\n"), "{who}: {rest}");
    assert!(rest.ends_with("\r\n\r\nhello"), "{who}: {rest}");

    let io = hyper_util::rt::TokioIo::new(TcpStream::connect(addr).await.unwrap());
    let (mut c, conn) =
        hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), io)
            .await
            .unwrap();
    tokio::spawn(conn);
    let get = |path: &str| {
        hyper::Request::builder()
            .uri(format!("http://{addr}{path}"))
            .header("host", "x")
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .unwrap()
    };
    let resp = c.send_request(get("/svc/stall")).await.unwrap();
    assert_eq!(resp.status(), 200, "{who}");
    let cut = tokio::time::timeout(Duration::from_secs(15), resp.into_body().collect())
        .await
        .unwrap_or_else(|_| panic!("{who} kept a stalled HTTP/2 stream open"));
    assert!(cut.is_err(), "{who}: the stalled body ended cleanly");
    let resp = c.send_request(get(then)).await.unwrap();
    assert_eq!(resp.status(), 200, "{who}");
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"svc", "{who}");
}

/// The route's timeout (500 ms) cuts a stalled body; a response that comes whole within it (50
/// ms late) is untouched.
async fn check_cut(who: &str, addr: SocketAddr) {
    check_stall(who, addr, "/svc/slow/50").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn envoy_and_gw_proxy_cut_a_stalled_response_at_the_routes_timeout_alike() {
    on_both(
        "cut",
        "idleTimeout: 60s",
        &[("/svc", ", timeout: 500ms")],
        check_cut,
    )
    .await;
}

/// The stream idle timeout (500 ms; the route has none): a response head that does not come in
/// time is answered `504 stream timeout` and the connection serves on; a stalled body is cut.
async fn check_stream_idle(who: &str, addr: SocketAddr) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    for path in ["/svc/slow/3000", "/svc/after"] {
        let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n");
        s.write_all(req.as_bytes()).await.unwrap();
        let (head, body) = read_response(who, &mut s)
            .await
            .unwrap_or_else(|| panic!("{who}: closed before answering {path}"));
        let want = if path == "/svc/after" {
            "http/1.1 200"
        } else {
            "http/1.1 504"
        };
        assert!(head.starts_with(want), "{who} {path}: {head}");
        if want.ends_with("504") {
            assert!(body.starts_with(b"stream timeout"), "{who}: {body:?}");
        }
    }
    check_stall(who, addr, "/svc/slow/50").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn envoy_and_gw_proxy_end_idle_streams_alike() {
    on_both(
        "stream-idle",
        "idleTimeout: 60s, streamIdleTimeout: 500ms",
        &[("/svc", ", timeout: 0s")],
        check_stream_idle,
    )
    .await;
}

/// A route's `idleTimeout: 0s` turns the listener's stream idle timeout (500 ms) off for it: a
/// response head a second late is awaited (the route has no timeout either).
async fn check_route_idle_off(who: &str, addr: SocketAddr) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /svc/slow/1000 HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let (head, body) = read_response(who, &mut s)
        .await
        .unwrap_or_else(|| panic!("{who}: closed before answering"));
    assert!(head.starts_with("http/1.1 200"), "{who}: {head}");
    assert_eq!(body, b"svc", "{who}");
}

#[tokio::test(flavor = "multi_thread")]
async fn envoy_and_gw_proxy_let_a_route_turn_the_stream_idle_timeout_off_alike() {
    on_both(
        "route-idle",
        "idleTimeout: 60s, streamIdleTimeout: 500ms",
        &[("/svc", ", timeout: 0s, idleTimeout: 0s")],
        check_route_idle_off,
    )
    .await;
}
