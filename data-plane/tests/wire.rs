//! HTTP/1.1 on the wire through gw-proxy, byte for byte: a scripted upstream on a raw socket and
//! a raw client, so framing the native path must get right (pipelining, chunked pass-through,
//! close-delimited bodies, HEAD, interim responses, an upstream closing an idle connection)
//! and what it hands to hyper (HTTP/1.0, chunked and large request bodies, `Expect`, garbage)
//! are seen as a client and an upstream see them.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use gw_proxy::config::fixture;
use gw_proxy::server::{Proxy, ProxyConfig};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A scripted upstream: answers by path; counts connections; `/echo…` answers with the request
/// head it got and the length of the body.
struct Scripted {
    addr: SocketAddr,
    conns: Arc<AtomicUsize>,
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Reads what `s` has into `buf`: the count (0 at the end or on an error).
async fn read_more(s: &mut TcpStream, buf: &mut Vec<u8>) -> usize {
    let mut chunk = [0u8; 65536];
    let n = s.read(&mut chunk).await.unwrap_or(0);
    buf.extend_from_slice(&chunk[..n]);
    n
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// Fixed answers of the scripted upstream: path prefix, the bytes, and whether it closes after.
const CANNED: &[(&str, &[u8], bool)] = &[
    ("/close", b"HTTP/1.1 200 OK\r\n\r\nuntil close", true),
    // Answers, then closes without saying so (an idle timeout).
    ("/idle-close", b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", true),
    ("/bad-length", b"HTTP/1.1 200 OK\r\nContent-Length: +2\r\n\r\nok", true),
    (
        "/coded",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
        true,
    ),
    (
        "/conn-length",
        b"HTTP/1.1 200 OK\r\nConnection: Content-Length\r\nContent-Length: 2\r\n\r\nok",
        false,
    ),
    (
        "/conn-named",
        b"HTTP/1.1 200 OK\r\nConnection: keep-alive, X-Hop\r\nX-Hop: 1\r\nX-Kept: 2\r\nContent-Length: 2\r\n\r\nok",
        false,
    ),
    (
        "/interim",
        b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
        false,
    ),
];

/// The 1 MiB body `/big-body` answers with: a pattern that shows a lost or repeated byte.
fn big_body() -> Vec<u8> {
    (0..1_048_576u32).map(|i| (i % 251) as u8).collect()
}

async fn scripted() -> Scripted {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let conns = Arc::new(AtomicUsize::new(0));
    let counter = conns.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = Vec::new();
                loop {
                    // One request: head, then a Content-Length or chunked body.
                    let end = loop {
                        if let Some(i) = find(&buf, b"\r\n\r\n") {
                            break i + 4;
                        }
                        if read_more(&mut s, &mut buf).await == 0 {
                            return;
                        }
                    };
                    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
                    buf.drain(..end);
                    let body_len = if header(&head, "transfer-encoding").is_some() {
                        loop {
                            if let Some(i) = find(&buf, b"0\r\n\r\n") {
                                break i + 5;
                            }
                            if read_more(&mut s, &mut buf).await == 0 {
                                return;
                            }
                        }
                    } else {
                        let n: usize =
                            header(&head, "content-length").map_or(0, |v| v.parse().unwrap());
                        while buf.len() < n {
                            if read_more(&mut s, &mut buf).await == 0 {
                                return;
                            }
                        }
                        n
                    };
                    let body: Vec<u8> = buf.drain(..body_len).collect();
                    let path = head.split(' ').nth(1).unwrap_or("").to_owned();
                    if let (Some(upgrade), false) =
                        (header(&head, "upgrade"), path.starts_with("/ws/refuse"))
                    {
                        if path.starts_with("/ws/slow") {
                            // Longer than the route timeout the tests set.
                            tokio::time::sleep(std::time::Duration::from_millis(400)).await;
                        }
                        // An upgrade: `101`, saying what it got, then an echo of what follows
                        // (bytes sent with the request first), its end of stream answered with
                        // its own.
                        let answer = format!(
                            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: {upgrade}\r\n\
                             Connection: Upgrade\r\nX-Seen-Connection: {}\r\nX-Hop-Seen: {}\r\n\r\n",
                            header(&head, "connection").unwrap_or(""),
                            header(&head, "x-hop").is_some(),
                        );
                        let mut r = s.write_all(answer.as_bytes()).await;
                        while r.is_ok() {
                            r = s.write_all(&buf).await;
                            buf.clear();
                            if read_more(&mut s, &mut buf).await == 0 {
                                let _ = s.shutdown().await;
                                return;
                            }
                        }
                        return;
                    }
                    let r = if head.starts_with("HEAD ") {
                        s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n")
                            .await
                    } else if let Some(&(_, answer, close)) = CANNED
                        .iter()
                        .find(|(prefix, _, _)| path.starts_with(prefix))
                    {
                        let r = s.write_all(answer).await;
                        if close {
                            return;
                        }
                        r
                    } else if path.starts_with("/chunked") {
                        let parts: [&[u8]; 3] = [
                            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel",
                            b"lo\r\n6\r\n world\r\n0\r\n",
                            b"X-Trailer: t\r\n\r\n",
                        ];
                        let mut r = Ok(());
                        for p in parts {
                            r = r.and(s.write_all(p).await).and(s.flush().await);
                        }
                        r
                    } else if path.starts_with("/big-body") {
                        // 1 MiB by length, in pieces, so reads see it arrive over time.
                        let mut r = s
                            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1048576\r\n\r\n")
                            .await;
                        for piece in big_body().chunks(100_000) {
                            r = r.and(s.write_all(piece).await);
                        }
                        r
                    } else if path.starts_with("/slow") {
                        // Longer than the idle timeouts the tests set: a request in flight.
                        tokio::time::sleep(std::time::Duration::from_millis(700)).await;
                        s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                            .await
                    } else if path.starts_with("/stuck") {
                        // Far longer than the stream idle timeout the tests set.
                        tokio::time::sleep(std::time::Duration::from_secs(5)).await;
                        s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                            .await
                    } else if path.starts_with("/trickle") {
                        // Ten chunks 100 ms apart: a second in all, never long idle.
                        let mut r = s
                            .write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
                            .await;
                        for _ in 0..10 {
                            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                            r = r.and(s.write_all(b"1\r\nx\r\n").await);
                        }
                        r.and(s.write_all(b"0\r\nX-Trailer: t\r\n\r\n").await)
                    } else if path.starts_with("/unframed-stall") {
                        // A body delimited by the close: some, then nothing.
                        let r = s.write_all(b"HTTP/1.1 200 OK\r\n\r\nhello").await;
                        while r.is_ok() && read_more(&mut s, &mut buf).await > 0 {}
                        return;
                    } else if path.starts_with("/stall") {
                        // Five of the ten bytes it promises, then nothing until the proxy goes.
                        let r = s
                            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello")
                            .await;
                        while r.is_ok() && read_more(&mut s, &mut buf).await > 0 {}
                        return;
                    } else if path.starts_with("/big-trailer") {
                        let mut r = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\nx-big: ".to_vec();
                        r.extend(std::iter::repeat_n(b'a', 20 * 1024));
                        r.extend_from_slice(b"\r\n\r\n");
                        s.write_all(&r).await
                    } else {
                        let text = format!("{head}body={}", body.len());
                        s.write_all(
                            format!(
                                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{text}",
                                text.len()
                            )
                            .as_bytes(),
                        )
                        .await
                    };
                    if r.is_err() {
                        return;
                    }
                }
            });
        }
    });
    Scripted { addr, conns }
}

async fn proxy(up: &Scripted) -> Proxy {
    proxy_with(up, ProxyConfig::for_tests(None, "wire")).await
}

async fn proxy_with(up: &Scripted, cfg: ProxyConfig) -> Proxy {
    let proxy = Proxy::start(cfg).await.unwrap();
    let route = fixture::prefix_route("t/all", "/", "t/up");
    let res = fixture::simple(vec![route], &[("t/up", "round_robin", vec![(up.addr, 1)])]);
    proxy.shared().apply(res).unwrap();
    proxy
}

/// A response read off a raw socket.
struct Resp {
    head: String,
    body: Vec<u8>,
}

impl Resp {
    fn status(&self) -> u16 {
        self.head.split(' ').nth(1).unwrap().parse().unwrap()
    }
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Reads one response; `chunked_end` is what ends a chunked body in this test, `head_only`
/// for responses to HEAD.
async fn read_resp(s: &mut TcpStream, buf: &mut Vec<u8>, head_only: bool) -> Resp {
    let end = loop {
        if let Some(i) = find(buf, b"\r\n\r\n") {
            break i + 4;
        }
        assert!(read_more(s, buf).await > 0, "closed before a response head");
    };
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    buf.drain(..end);
    let body = if head_only {
        Vec::new()
    } else if let Some(n) = header(&head, "content-length") {
        let n: usize = n.parse().unwrap();
        while buf.len() < n {
            assert!(read_more(s, buf).await > 0, "closed mid-body");
        }
        buf.drain(..n).collect()
    } else if header(&head, "transfer-encoding").is_some() {
        let n = loop {
            if let Some(i) = find(buf, b"0\r\nX-Trailer: t\r\n\r\n") {
                break i + 19;
            }
            assert!(read_more(s, buf).await > 0, "closed mid-body");
        };
        buf.drain(..n).collect()
    } else {
        while read_more(s, buf).await > 0 {}
        std::mem::take(buf)
    };
    Resp { head, body }
}

/// [`proxy_with`] whose `--idle-timeout` fallback is `idle`.
async fn proxy_idle(up: &Scripted, idle: std::time::Duration) -> Proxy {
    let mut cfg = ProxyConfig::for_tests(None, "wire");
    cfg.idle_timeout = idle;
    proxy_with(up, cfg).await
}

async fn connect(p: &Proxy) -> TcpStream {
    TcpStream::connect(p.listen_addr()).await.unwrap()
}

/// A scripted upstream, a proxy in front of it, and a client connection to the proxy.
async fn setup() -> (Scripted, Proxy, TcpStream) {
    let up = scripted().await;
    let p = proxy(&up).await;
    let s = connect(&p).await;
    (up, p, s)
}

async fn send(s: &mut TcpStream, bytes: &[u8]) {
    s.write_all(bytes).await.unwrap();
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order_over_one_upstream_connection() {
    let (up, _p, mut s) = setup().await;
    send(
        &mut s,
        b"GET /echo/1 HTTP/1.1\r\nHost: a\r\n\r\nGET /echo/2 HTTP/1.1\r\nHost: a\r\n\r\nPOST /echo/3 HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\r\nabcd",
    )
    .await;
    let mut buf = Vec::new();
    for i in 1..=3 {
        let r = read_resp(&mut s, &mut buf, false).await;
        assert_eq!(r.status(), 200);
        assert!(
            r.text().contains(&format!("/echo/{i} HTTP/1.1")),
            "{}",
            r.text()
        );
    }
    assert!(buf.is_empty());
    assert_eq!(up.conns.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn headers_are_forwarded_as_envoy_forwards_them() {
    let (_up, _p, mut s) = setup().await;
    send(
        &mut s,
        b"GET /echo?q=1 HTTP/1.1\r\nHost: Example.COM\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\nTE: trailers\r\nProxy-Authorization: secret\r\nX-Forwarded-For: 10.0.0.1\r\nX-Custom: kept\r\nContent-Length: 0\r\n\r\n",
    )
    .await;
    let r = read_resp(&mut s, &mut Vec::new(), false).await;
    let echoed = r.text();
    assert!(echoed.starts_with("GET /echo?q=1 HTTP/1.1\r\n"), "{echoed}");
    assert_eq!(header(&echoed, "host"), Some("Example.COM"));
    assert_eq!(header(&echoed, "x-custom"), Some("kept"));
    assert_eq!(
        header(&echoed, "x-forwarded-for"),
        Some("10.0.0.1, 127.0.0.1")
    );
    assert_eq!(header(&echoed, "x-request-id").map(str::len), Some(36));
    // The client's scheme, as Envoy adds it when the client named none.
    assert_eq!(header(&echoed, "x-forwarded-proto"), Some("http"));
    for gone in ["connection", "keep-alive", "te", "proxy-authorization"] {
        assert_eq!(header(&echoed, gone), None, "{gone} forwarded: {echoed}");
    }
    // A request id the client sent is kept.
    send(
        &mut s,
        b"GET /echo HTTP/1.1\r\nHost: a\r\nX-Request-Id: abc\r\n\r\n",
    )
    .await;
    let r = read_resp(&mut s, &mut Vec::new(), false).await;
    assert_eq!(header(&r.text(), "x-request-id"), Some("abc"));
    // A scheme the client claims is replaced by the connection's, once.
    send(
        &mut s,
        b"GET /echo HTTP/1.1\r\nHost: a\r\nX-Forwarded-Proto: https\r\n\r\n",
    )
    .await;
    let r = read_resp(&mut s, &mut Vec::new(), false).await;
    assert_eq!(header(&r.text(), "x-forwarded-proto"), Some("http"));
    let lower = r.text().to_ascii_lowercase();
    assert_eq!(lower.matches("x-forwarded-proto").count(), 1, "{lower}");
    // A client's `x-forwarded-client-cert` is dropped (Envoy's default, SANITIZE): no client
    // can claim a certificate it did not present.
    send(
        &mut s,
        b"GET /echo HTTP/1.1\r\nHost: a\r\nX-Forwarded-Client-Cert: By=spiffe://admin\r\n\r\n",
    )
    .await;
    let r = read_resp(&mut s, &mut Vec::new(), false).await;
    assert_eq!(
        header(&r.text(), "x-forwarded-client-cert"),
        None,
        "{}",
        r.text()
    );
    // A client's `x-envoy-*` headers are dropped, whatever their case (an edge Envoy's, so none
    // steers an Envoy behind), and the client's address is said in `x-envoy-external-address`.
    send(
        &mut s,
        b"GET /echo HTTP/1.1\r\nHost: a\r\nX-Envoy-Retry-On: 5xx\r\nx-envoy-upstream-rq-timeout-ms: 1\r\nX-Envoy-External-Address: 10.9.9.9\r\nX-Envoy: kept\r\nx-envoy-peer-metadata: p\r\n\r\n",
    )
    .await;
    let r = read_resp(&mut s, &mut Vec::new(), false).await;
    let echoed = r.text();
    assert_eq!(header(&echoed, "x-envoy-retry-on"), None, "{echoed}");
    assert_eq!(
        header(&echoed, "x-envoy-upstream-rq-timeout-ms"),
        None,
        "{echoed}"
    );
    assert_eq!(
        header(&echoed, "x-envoy-external-address"),
        Some("127.0.0.1"),
        "{echoed}"
    );
    assert_eq!(header(&echoed, "x-envoy"), Some("kept"), "{echoed}");
    assert_eq!(
        header(&echoed, "x-envoy-peer-metadata"),
        Some("p"),
        "{echoed}"
    );
    // Response headers the upstream's Connection header names are hop-by-hop too.
    send(&mut s, b"GET /conn-named HTTP/1.1\r\nHost: a\r\n\r\n").await;
    let r = read_resp(&mut s, &mut Vec::new(), false).await;
    assert_eq!(
        (header(&r.head, "x-hop"), header(&r.head, "connection")),
        (None, None),
        "{}",
        r.head
    );
    assert_eq!(header(&r.head, "x-kept"), Some("2"));
}

#[tokio::test]
async fn chunked_responses_pass_through_and_the_upstream_connection_is_reused() {
    let (up, _p, mut s) = setup().await;
    let mut buf = Vec::new();
    for _ in 0..3 {
        send(&mut s, b"GET /chunked HTTP/1.1\r\nHost: a\r\n\r\n").await;
        let r = read_resp(&mut s, &mut buf, false).await;
        assert_eq!(header(&r.head, "transfer-encoding"), Some("chunked"));
        assert_eq!(
            r.body,
            b"5\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n".to_vec()
        );
    }
    send(&mut s, b"GET /echo HTTP/1.1\r\nHost: a\r\n\r\n").await;
    assert_eq!(read_resp(&mut s, &mut buf, false).await.status(), 200);
    assert_eq!(up.conns.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_close_delimited_response_ends_the_downstream_connection() {
    let (_up, _p, mut s) = setup().await;
    send(&mut s, b"GET /close HTTP/1.1\r\nHost: a\r\n\r\n").await;
    let r = read_resp(&mut s, &mut Vec::new(), false).await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r.head, "connection"), Some("close"));
    assert_eq!(r.text(), "until close");
}

#[tokio::test]
async fn head_and_interim_responses_keep_the_framing() {
    let (_up, _p, mut s) = setup().await;
    let mut buf = Vec::new();
    send(&mut s, b"HEAD /x HTTP/1.1\r\nHost: a\r\n\r\nGET /interim HTTP/1.1\r\nHost: a\r\n\r\nGET /echo HTTP/1.1\r\nHost: a\r\n\r\n").await;
    let head = read_resp(&mut s, &mut buf, true).await;
    assert_eq!(header(&head.head, "content-length"), Some("10"));
    let interim = read_resp(&mut s, &mut buf, false).await;
    assert_eq!((interim.status(), interim.text().as_str()), (200, "ok"));
    let echo = read_resp(&mut s, &mut buf, false).await;
    assert!(echo.text().starts_with("GET /echo "), "{}", echo.text());
}

#[tokio::test]
async fn a_response_whose_length_cannot_be_trusted_is_a_bad_gateway() {
    let (_up, _p, mut s) = setup().await;
    let mut buf = Vec::new();
    send(&mut s, b"GET /bad-length HTTP/1.1\r\nHost: a\r\n\r\n").await;
    assert_eq!(read_resp(&mut s, &mut buf, false).await.status(), 502);
    // A transfer coding that cannot be passed on without its header is no better.
    send(&mut s, b"GET /coded HTTP/1.1\r\nHost: a\r\n\r\n").await;
    assert_eq!(read_resp(&mut s, &mut buf, false).await.status(), 502);
    // A length the upstream's Connection header names still frames the body.
    send(&mut s, b"GET /conn-length HTTP/1.1\r\nHost: a\r\n\r\n").await;
    // (Without its length the response would run to a close that never comes.)
    let r = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        read_resp(&mut s, &mut buf, false),
    )
    .await
    .expect("a response framed by its length");
    assert_eq!((r.status(), r.text().as_str()), (200, "ok"), "{}", r.head);
    // The client connection goes on.
    send(&mut s, b"GET /echo HTTP/1.1\r\nHost: a\r\n\r\n").await;
    assert_eq!(read_resp(&mut s, &mut buf, false).await.status(), 200);
}

#[tokio::test]
async fn an_upstream_closing_an_idle_connection_costs_no_request() {
    let (up, _p, mut s) = setup().await;
    let mut buf = Vec::new();
    for i in 0..5 {
        send(&mut s, b"GET /idle-close HTTP/1.1\r\nHost: a\r\n\r\n").await;
        let r = read_resp(&mut s, &mut buf, false).await;
        assert_eq!((r.status(), r.text().as_str()), (200, "ok"), "request {i}");
    }
    assert_eq!(up.conns.load(Ordering::SeqCst), 5);
}

#[tokio::test]
async fn what_the_native_path_leaves_to_hyper_still_works() {
    let up = scripted().await;
    let p = proxy(&up).await;
    let mut buf = Vec::new();

    // HTTP/1.0: answered, then closed.
    let mut s = connect(&p).await;
    send(&mut s, b"GET /echo/10 HTTP/1.0\r\nHost: a\r\n\r\n").await;
    let r = read_resp(&mut s, &mut buf, false).await;
    assert_eq!(r.status(), 200);
    assert!(r.text().contains("/echo/10 HTTP/1.1"));

    // A chunked request body reaches the upstream whole.
    let mut s = connect(&p).await;
    send(&mut s, b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n").await;
    let r = read_resp(&mut s, &mut buf, false).await;
    assert_eq!(r.status(), 200);
    assert!(
        header(&r.text(), "transfer-encoding").is_some(),
        "{}",
        r.text()
    );

    // A body larger than the native path buffers streams through hyper, then the connection
    // goes on.
    let big = vec![b'x'; 200 * 1024];
    let mut req = format!(
        "POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: {}\r\n\r\n",
        big.len()
    )
    .into_bytes();
    req.extend_from_slice(&big);
    req.extend_from_slice(b"GET /echo/after HTTP/1.1\r\nHost: a\r\n\r\n");
    s.write_all(&req).await.unwrap();
    let r = read_resp(&mut s, &mut buf, false).await;
    assert!(
        r.text().ends_with(&format!("body={}", big.len())),
        "{}",
        r.text()
    );
    let r = read_resp(&mut s, &mut buf, false).await;
    assert!(r.text().contains("/echo/after "));

    // Expect: 100-continue gets its interim answer and the body goes through.
    let mut s = connect(&p).await;
    send(
        &mut s,
        b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n",
    )
    .await;
    let cont = read_resp(&mut s, &mut buf, true).await;
    assert_eq!(cont.status(), 100);
    send(&mut s, b"abc").await;
    let r = read_resp(&mut s, &mut buf, false).await;
    assert!(r.text().ends_with("body=3"), "{}", r.text());

    // Garbage gets 400.
    let mut s = connect(&p).await;
    buf.clear();
    send(&mut s, b"NOT HTTP AT ALL\r\n\r\n").await;
    let r = read_resp(&mut s, &mut buf, false).await;
    assert_eq!(r.status(), 400);
}

#[tokio::test]
async fn connection_named_request_headers_are_read_by_the_native_paths_rule() {
    let up = scripted().await;
    let p = proxy(&up).await;
    // A request whose `Connection` names headers goes through hyper (HTTP/1.1, HTTP/1.0, and
    // with `Expect`); its headers are dropped by the rule the native path reads responses by:
    // what `Connection` names goes, but a named `Content-Length` still frames the body, and
    // `close` / `keep-alive` name no header.
    for (version, expect) in [
        ("1.1", ""),
        ("1.0", ""),
        ("1.1", "Expect: 100-continue\r\n"),
    ] {
        let mut s = connect(&p).await;
        let mut buf = Vec::new();
        let head = format!(
            "POST /echo HTTP/{version}\r\nHost: a\r\nConnection: X-Secret, Content-Length, close\r\n\
             X-Secret: 1\r\nClose: kept\r\nX-Kept: 2\r\nContent-Length: 3\r\n{expect}\r\n"
        );
        send(&mut s, head.as_bytes()).await;
        if !expect.is_empty() {
            assert_eq!(read_resp(&mut s, &mut buf, true).await.status(), 100);
        }
        send(&mut s, b"abc").await;
        let r = read_resp(&mut s, &mut buf, false).await;
        let echoed = r.text();
        let what = format!("HTTP/{version} {expect}: {echoed}");
        assert_eq!(r.status(), 200, "{what}");
        assert!(echoed.ends_with("body=3"), "{what}");
        assert_eq!(header(&echoed, "content-length"), Some("3"), "{what}");
        assert_eq!(header(&echoed, "x-secret"), None, "{what}");
        assert_eq!(header(&echoed, "x-kept"), Some("2"), "{what}");
        assert_eq!(header(&echoed, "close"), Some("kept"), "{what}");
    }
}

/// One HTTP/2 request, answered; then the proxy must end the connection (GOAWAY, then the
/// close) within 10 s (a connection `what`, in the failure message).
async fn h2_request_then_ended(p: &Proxy, what: &str) {
    let (mut c, conn) = h2_client(p).await;
    assert_eq!(h2(&mut c, "GET", "/echo").await.0, 200);
    tokio::time::timeout(std::time::Duration::from_secs(10), conn)
        .await
        .unwrap_or_else(|_| panic!("the proxy kept an {what} HTTP/2 connection open"))
        .unwrap()
        .unwrap();
}

/// What the proxy sends until it closes the connection; fails if it keeps it open for 10 s.
async fn closed(mut s: TcpStream) -> String {
    let mut rest = Vec::new();
    tokio::time::timeout(std::time::Duration::from_secs(10), s.read_to_end(&mut rest))
        .await
        .expect("the proxy kept the connection open")
        .unwrap();
    String::from_utf8_lossy(&rest).into_owned()
}

#[tokio::test]
async fn a_proxy_dropped_without_shutdown_closes_its_idle_connections() {
    let up = scripted().await;
    // Idle connections would otherwise stay for an hour.
    let p = proxy_idle(&up, std::time::Duration::from_secs(3600)).await;
    let mut s = connect(&p).await;
    send(&mut s, b"GET /echo HTTP/1.1\r\nHost: a\r\n\r\n").await;
    // The answer first, so the connection is idle when the proxy goes.
    let mut got = Vec::new();
    while !got.ends_with(b"body=0") {
        let mut chunk = [0u8; 4096];
        let n = s.read(&mut chunk).await.unwrap();
        assert!(
            n > 0,
            "closed before the answer: {}",
            String::from_utf8_lossy(&got)
        );
        got.extend_from_slice(&chunk[..n]);
    }
    drop(p);
    assert_eq!(closed(s).await, "", "closed with nothing more sent");
}

#[tokio::test]
async fn connections_that_send_no_request_head_in_time_are_closed() {
    let up = scripted().await;
    let p = proxy_idle(&up, std::time::Duration::from_millis(300)).await;
    // (No HCM idle timeout here: the flag's applies.) Nothing sent at all.
    assert!(closed(connect(&p).await).await.is_empty());
    // Idle after an answered request: the answer, then the close.
    let mut s = connect(&p).await;
    send(&mut s, b"GET /echo HTTP/1.1\r\nHost: a\r\n\r\n").await;
    let rest = closed(s).await;
    assert!(rest.starts_with("HTTP/1.1 200 OK"), "{rest}");
}

/// An HTTP/2 (prior knowledge) client connection to the proxy, and its connection's task
/// (it ends when the connection does).
async fn h2_client(
    p: &Proxy,
) -> (
    hyper::client::conn::http2::SendRequest<http_body_util::Full<bytes::Bytes>>,
    tokio::task::JoinHandle<hyper::Result<()>>,
) {
    let io = hyper_util::rt::TokioIo::new(connect(p).await);
    let (c, conn) = hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), io)
        .await
        .unwrap();
    (c, tokio::spawn(conn))
}

/// One HTTP/2 (prior knowledge) request through the proxy: status, headers, body, trailers.
async fn h2(
    client: &mut hyper::client::conn::http2::SendRequest<http_body_util::Full<bytes::Bytes>>,
    method: &str,
    path: &str,
) -> (u16, hyper::HeaderMap, String, Option<hyper::HeaderMap>) {
    h2_with(client, method, path, "").await
}

/// [`h2`] with a request body (sent with its length).
async fn h2_with(
    client: &mut hyper::client::conn::http2::SendRequest<http_body_util::Full<bytes::Bytes>>,
    method: &str,
    path: &str,
    body: &'static str,
) -> (u16, hyper::HeaderMap, String, Option<hyper::HeaderMap>) {
    use http_body_util::BodyExt;
    let mut req = hyper::Request::builder()
        .method(method)
        .uri(format!("http://wire.test{path}"));
    if !body.is_empty() {
        req = req.header("content-length", body.len());
    }
    let req = req
        .body(http_body_util::Full::new(bytes::Bytes::from_static(
            body.as_bytes(),
        )))
        .unwrap();
    let resp = client.send_request(req).await.unwrap();
    let (head, body) = resp.into_parts();
    let got = body.collect().await.unwrap();
    let trailers = got.trailers().cloned();
    let text = String::from_utf8_lossy(&got.to_bytes()).into_owned();
    (head.status.as_u16(), head.headers, text, trailers)
}

#[tokio::test]
async fn http2_requests_with_their_whole_body_take_raw_upstream_connections() {
    let up = scripted().await;
    let p = proxy(&up).await;
    let (mut c, _) = h2_client(&p).await;

    // Chunks are decoded into DATA frames, the trailer section into HTTP/2 trailers, and the
    // upstream connection is reused afterwards.
    let (status, headers, body, trailers) = h2(&mut c, "GET", "/chunked").await;
    assert_eq!((status, body.as_str()), (200, "hello world"));
    assert!(headers.get("transfer-encoding").is_none());
    assert_eq!(trailers.expect("trailers")["x-trailer"], "t");
    let (status, _, echo, _) = h2(&mut c, "GET", "/echo/h2?q=1").await;
    assert_eq!(status, 200);
    assert!(echo.starts_with("GET /echo/h2?q=1 HTTP/1.1\r\n"), "{echo}");
    assert_eq!(header(&echo, "host"), Some("wire.test"), "{echo}");
    assert_eq!(
        header(&echo, "x-forwarded-for"),
        Some("127.0.0.1"),
        "{echo}"
    );
    assert!(header(&echo, "x-request-id").is_some(), "{echo}");
    assert_eq!(
        up.conns.load(Ordering::SeqCst),
        1,
        "one upstream connection"
    );

    // A POST with no body says so upstream.
    let (_, _, echo, _) = h2(&mut c, "POST", "/echo/empty").await;
    assert_eq!(header(&echo, "content-length"), Some("0"), "{echo}");
    assert!(echo.ends_with("body=0"), "{echo}");

    // A small body of declared length is read whole and sent with the head.
    let (status, _, echo, _) = h2_with(&mut c, "POST", "/echo/body", "hello").await;
    assert_eq!(status, 200);
    assert_eq!(header(&echo, "content-length"), Some("5"), "{echo}");
    assert!(echo.ends_with("body=5"), "{echo}");

    // HEAD keeps the length it would have had, with no body.
    let (status, headers, body, _) = h2(&mut c, "HEAD", "/").await;
    assert_eq!((status, body.as_str()), (200, ""));
    assert_eq!(headers["content-length"], "10");

    // Headers the upstream's Connection header names are hop-by-hop.
    let (status, headers, _, _) = h2(&mut c, "GET", "/conn-named").await;
    assert_eq!(status, 200);
    assert!(headers.get("x-hop").is_none() && headers.get("connection").is_none());
    assert_eq!(headers["x-kept"], "2");

    // Interim responses are dropped; a close-delimited body is read to the close.
    let (status, _, body, _) = h2(&mut c, "GET", "/interim").await;
    assert_eq!((status, body.as_str()), (200, "ok"));
    let (status, _, body, _) = h2(&mut c, "GET", "/close").await;
    assert_eq!((status, body.as_str()), (200, "until close"));

    // A trailer section past 16 KiB (hyper's client's limit) breaks the stream, not the
    // connection.
    let req = hyper::Request::get("http://wire.test/big-trailer")
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    let broke = match c.send_request(req).await {
        Ok(resp) => http_body_util::BodyExt::collect(resp.into_body())
            .await
            .is_err(),
        Err(_) => true,
    };
    assert!(broke, "trailers past the limit");

    // A length that cannot be trusted is a bad gateway, and the stream's connection goes on.
    let (status, _, _, _) = h2(&mut c, "GET", "/bad-length").await;
    assert_eq!(status, 502);
    let (status, _, _, _) = h2(&mut c, "GET", "/coded").await;
    assert_eq!(status, 502);
    let (status, _, body, _) = h2(&mut c, "GET", "/echo/after").await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn a_small_request_body_that_breaks_off_is_a_bad_request() {
    let (_up, _p, mut s) = setup().await;
    // HTTP/1.0 goes to hyper; its small body is read whole before going upstream.
    send(
        &mut s,
        b"POST /echo HTTP/1.0\r\nHost: a\r\nContent-Length: 10\r\n\r\nhello",
    )
    .await;
    s.shutdown().await.unwrap();
    let r = read_resp(&mut s, &mut Vec::new(), false).await;
    assert_eq!(r.status(), 400, "{}", r.head);
}

#[tokio::test]
async fn large_response_bodies_arrive_whole_on_both_paths_and_leave_the_connection_reusable() {
    let (up, p, mut s) = setup().await;
    let mut buf = Vec::new();
    for _ in 0..2 {
        send(&mut s, b"GET /big-body HTTP/1.1\r\nHost: a\r\n\r\n").await;
        let r = read_resp(&mut s, &mut buf, false).await;
        assert_eq!(r.status(), 200);
        assert!(r.body == big_body(), "HTTP/1.1 body differs");
    }
    let (mut c, _) = h2_client(&p).await;
    for _ in 0..2 {
        let req = hyper::Request::get("http://wire.test/big-body")
            .body(http_body_util::Full::new(bytes::Bytes::new()))
            .unwrap();
        let resp = c.send_request(req).await.unwrap();
        let got = http_body_util::BodyExt::collect(resp.into_body())
            .await
            .unwrap()
            .to_bytes();
        assert!(got == big_body(), "HTTP/2 body differs");
    }
    // Four large bodies, one after the other: one upstream connection carried them all.
    assert_eq!(up.conns.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn the_listeners_hcm_sets_the_connection_timeouts() {
    use gw_proxy::config::type_url;
    let up = scripted().await;
    // The flag's fallback is far off: what closes connections here is the listener's HCM.
    let p = proxy_idle(&up, std::time::Duration::from_secs(3600)).await;
    let with_timeouts = |idle: std::time::Duration, headers: std::time::Duration| {
        let route = fixture::prefix_route("t/all", "/", "t/up");
        let mut res = fixture::simple(vec![route], &[("t/up", "round_robin", vec![(up.addr, 1)])]);
        let l = fixture::listener_with("ingress", 8080, "ingress", |hcm| {
            hcm.common_http_protocol_options = Some(Default::default());
            if let Some(o) = hcm.common_http_protocol_options.as_mut() {
                o.idle_timeout = Some(fixture::duration(idle));
            }
            hcm.request_headers_timeout = Some(fixture::duration(headers));
        });
        res.insert(type_url::LISTENER, "ingress", "2", &l);
        res
    };
    let (ms, long) = (
        std::time::Duration::from_millis,
        std::time::Duration::from_secs(60),
    );
    // Headers that stop coming, with the idle timer far off: 408, then the close.
    p.shared().apply(with_timeouts(long, ms(300))).unwrap();
    let mut s = connect(&p).await;
    send(&mut s, b"GET /echo HTTP/1.1\r\nHo").await;
    let rest = closed(s).await;
    assert!(rest.starts_with("HTTP/1.1 408 Request Timeout"), "{rest}");
    assert!(rest.contains("connection: close"), "{rest}");
    // The same after an answered request on a keep-alive connection (a pipelined head cut short).
    let mut s = connect(&p).await;
    send(
        &mut s,
        b"GET /echo HTTP/1.1\r\nHost: a\r\n\r\nGET /echo HTTP/1.1\r\nHo",
    )
    .await;
    let rest = closed(s).await;
    assert!(rest.starts_with("HTTP/1.1 200 OK"), "{rest}");
    assert!(rest.contains("HTTP/1.1 408 Request Timeout"), "{rest}");

    // A head is in flight from its first byte: the idle timer stops (as Envoy's stream is
    // active). Here the head is completed after the idle time has passed, is answered, and the
    // idle timer then closes the connection (without a headers bound the head had 5 minutes).
    p.shared()
        .apply(with_timeouts(ms(300), std::time::Duration::ZERO))
        .unwrap();
    let mut s = connect(&p).await;
    send(&mut s, b"GET /echo HTTP/1.1\r\nHo").await;
    // Not a synchronisation: the idle time passes while the head is incomplete.
    tokio::time::sleep(ms(700)).await;
    send(&mut s, b"st: a\r\n\r\n").await;
    let rest = closed(s).await;
    assert!(rest.starts_with("HTTP/1.1 200 OK"), "{rest}");

    // Idle after an answered request, with the headers bound far off: the answer, then the close.
    p.shared().apply(with_timeouts(ms(300), long)).unwrap();
    let mut s = connect(&p).await;
    send(&mut s, b"GET /echo HTTP/1.1\r\nHost: a\r\n\r\n").await;
    let rest = closed(s).await;
    assert!(rest.starts_with("HTTP/1.1 200 OK"), "{rest}");
    // A request that outlasts the idle timeout is not cut (the idle timer does not run while it
    // is in flight), and the idle close still comes after it: the connection's timer, moved on to
    // the route's 15 s deadline while the request waited, is brought back.
    let mut s = connect(&p).await;
    send(&mut s, b"GET /slow HTTP/1.1\r\nHost: a\r\n\r\n").await;
    let rest = closed(s).await;
    assert!(
        rest.starts_with("HTTP/1.1 200 OK") && rest.ends_with("ok"),
        "{rest}"
    );
    // HTTP/2 (served by hyper): idle after one request, the proxy ends the connection.
    h2_request_then_ended(&p, "idle").await;

    // A duration protobuf does not allow is refused (NACKed), and the previous config serves.
    let mut bad = with_timeouts(ms(300), long);
    let l = fixture::listener_with("ingress", 8080, "ingress", |hcm| {
        hcm.request_headers_timeout = Some(gw_proto::envoy::pb::google::protobuf::Duration {
            seconds: -1,
            nanos: 0,
        });
    });
    bad.insert(type_url::LISTENER, "ingress", "3", &l);
    let err = p.shared().apply(bad).unwrap_err().to_string();
    assert!(err.contains("request_headers_timeout"), "{err}");
    let mut s = connect(&p).await;
    send(&mut s, b"GET /echo HTTP/1.1\r\nHost: a\r\n\r\n").await;
    let rest = closed(s).await;
    assert!(rest.starts_with("HTTP/1.1 200 OK"), "{rest}");
}

/// `GET path` on the native path (HTTP/1.1) and on hyper's (HTTP/1.0), each on a connection of
/// its own that the proxy must end after a `200 OK`: what each sent, by path.
async fn on_both_paths_until_closed(p: &Proxy, path: &str) -> [(&'static str, String); 2] {
    let mut out = [("native", String::new()), ("hyper", String::new())];
    for (which, rest) in &mut out {
        let version = if *which == "native" { "1.1" } else { "1.0" };
        let mut s = connect(p).await;
        let req = format!("GET {path} HTTP/{version}\r\nHost: a\r\n\r\n");
        send(&mut s, req.as_bytes()).await;
        *rest = closed(s).await;
        assert!(rest.contains(" 200 OK\r\n"), "{which}: {rest}");
    }
    out
}

/// `/stall` on both HTTP/1 paths: the head and the five bytes that came, then the close.
async fn assert_stall_cut(p: &Proxy) {
    for (path, rest) in on_both_paths_until_closed(p, "/stall").await {
        let head = rest.to_ascii_lowercase();
        assert!(
            head.contains("\r\ncontent-length: 10\r\n"),
            "{path}: {rest}"
        );
        assert!(rest.ends_with("\r\n\r\nhello"), "{path}: {rest}");
    }
}

/// `GET /stall` over HTTP/2: its head (200), the body still to come.
async fn h2_stall(
    c: &mut hyper::client::conn::http2::SendRequest<http_body_util::Full<bytes::Bytes>>,
) -> hyper::Response<hyper::body::Incoming> {
    let req = hyper::Request::get("http://wire.test/stall")
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    let resp = c.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    resp
}

/// `resp`'s body ends with the stream reset (not cleanly), within 10 s (else: `what`).
async fn assert_reset(resp: hyper::Response<hyper::body::Incoming>, what: &str) {
    use http_body_util::BodyExt;
    let cut = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        resp.into_body().collect(),
    )
    .await
    .expect(what);
    assert!(cut.is_err(), "the stalled body ended cleanly");
}

/// `/stall` over HTTP/2: the head, then the stream is reset.
async fn assert_h2_stall_reset(
    c: &mut hyper::client::conn::http2::SendRequest<http_body_util::Full<bytes::Bytes>>,
) {
    let resp = h2_stall(c).await;
    assert_reset(resp, "the proxy kept a stalled HTTP/2 stream open").await;
}

#[tokio::test]
async fn the_routes_timeout_runs_until_the_response_is_relayed_whole() {
    let up = scripted().await;
    let p = proxy(&up).await;
    let mut route = fixture::prefix_route("t/all", "/", "t/up");
    if let Some(a) = fixture::action(&mut route) {
        a.timeout = Some(fixture::duration(std::time::Duration::from_millis(600)));
    }
    let res = fixture::simple(vec![route], &[("t/up", "round_robin", vec![(up.addr, 1)])]);
    p.shared().apply(res).unwrap();
    // A body that keeps moving (ten chunks, a second in all) is cut at the deadline too: the
    // timeout bounds the whole response, not each gap.
    for (path, rest) in on_both_paths_until_closed(&p, "/trickle").await {
        let got = rest.split_once("\r\n\r\n").unwrap().1.matches('x').count();
        assert!(
            got < 10,
            "{path}: {got} chunks came past the deadline: {rest}"
        );
    }
    // A body delimited by the close would look whole if cut by a close: the client gets a reset.
    let mut s = connect(&p).await;
    send(&mut s, b"GET /unframed-stall HTTP/1.1\r\nHost: a\r\n\r\n").await;
    let mut got = Vec::new();
    let end = tokio::time::timeout(std::time::Duration::from_secs(10), s.read_to_end(&mut got))
        .await
        .expect("the proxy kept the connection open");
    assert_eq!(
        end.map_err(|e| e.kind()).err(),
        Some(std::io::ErrorKind::ConnectionReset),
        "{}",
        String::from_utf8_lossy(&got)
    );
    // A body that stops halfway: what came is relayed, then the connection is closed (as Envoy
    // resets the stream); over HTTP/2 the stream is reset and the connection serves on.
    assert_stall_cut(&p).await;
    let (mut c, _conn) = h2_client(&p).await;
    assert_h2_stall_reset(&mut c).await;
    assert_eq!(h2(&mut c, "GET", "/echo").await.0, 200);
    // Responses that come whole in time are untouched, and the connection goes on.
    let mut s = connect(&p).await;
    let mut buf = Vec::new();
    for _ in 0..2 {
        send(&mut s, b"GET /chunked HTTP/1.1\r\nHost: a\r\n\r\n").await;
        let r = read_resp(&mut s, &mut buf, false).await;
        assert_eq!(r.status(), 200);
        assert!(
            r.text().ends_with("0\r\nX-Trailer: t\r\n\r\n"),
            "{}",
            r.text()
        );
    }
    // The six responses cut (the trickle, the unframed body and the stall on the native path;
    // the trickle and the stall over HTTP/1.0 and the stall over HTTP/2 on hyper's) count as
    // upstream errors, not as 2xx: both paths record a response when its body is done with.
    let metrics = http_get(p.admin_addr(), "/metrics").await;
    let cut = metrics.lines().find(|l| {
        l.starts_with("gw_rq_total{kind=\"cluster\"") && l.contains("class=\"upstream_error\"")
    });
    assert!(cut.is_some_and(|l| l.ends_with(" 6")), "{metrics}");
}

#[tokio::test]
async fn the_listeners_stream_idle_timeout_ends_streams_that_stop_moving() {
    use gw_proxy::config::type_url;
    let up = scripted().await;
    let p = proxy(&up).await;
    // The route sets no timeout: what ends streams here is the HCM's stream idle timeout. It
    // retries timeouts, with a per-try timeout longer than the stream idle timeout.
    let mut route = fixture::prefix_route("t/all", "/", "t/up");
    if let Some(a) = fixture::action(&mut route) {
        a.timeout = Some(fixture::duration(std::time::Duration::ZERO));
        a.retry_policy = Some(gw_proto::envoy::pb::envoy::config::route::v3::RetryPolicy {
            retry_on: "5xx,gateway-error,reset".into(),
            num_retries: Some(gw_proto::envoy::pb::google::protobuf::UInt32Value { value: 2 }),
            per_try_timeout: Some(fixture::duration(std::time::Duration::from_secs(3))),
            ..Default::default()
        });
    }
    let mut res = fixture::simple(vec![route], &[("t/up", "round_robin", vec![(up.addr, 1)])]);
    let l = fixture::listener_with("ingress", 8080, "ingress", |hcm| {
        hcm.stream_idle_timeout = Some(fixture::duration(std::time::Duration::from_millis(600)));
    });
    res.insert(type_url::LISTENER, "ingress", "2", &l);
    p.shared().apply(res).unwrap();
    // No response head in time: 504 "stream timeout" (Envoy's, for a request it has whole), and
    // the connection serves on; on the native path and on hyper's (HTTP/1.0, HTTP/2).
    // Not retried: the stuck request took one upstream connection.
    let mut s = connect(&p).await;
    let mut buf = Vec::new();
    let before = up.conns.load(Ordering::SeqCst);
    send(&mut s, b"GET /stuck HTTP/1.1\r\nHost: a\r\n\r\n").await;
    let r = read_resp(&mut s, &mut buf, false).await;
    assert_eq!((r.status(), r.text().as_str()), (504, "stream timeout\n"));
    assert_eq!(up.conns.load(Ordering::SeqCst) - before, 1, "retried");
    // A body that keeps moving outlasts the idle timeout (ten chunks, a second in all).
    send(&mut s, b"GET /trickle HTTP/1.1\r\nHost: a\r\n\r\n").await;
    let r = read_resp(&mut s, &mut buf, false).await;
    assert_eq!(r.status(), 200);
    assert!(r.text().starts_with("1\r\nx\r\n1\r\nx"), "{}", r.text());
    let mut s = connect(&p).await;
    send(&mut s, b"GET /stuck HTTP/1.0\r\nHost: a\r\n\r\n").await;
    let rest = closed(s).await;
    assert!(rest.contains(" 504 Gateway Timeout\r\n"), "{rest}");
    let (mut c, _conn) = h2_client(&p).await;
    let (status, _, text, _) = h2(&mut c, "GET", "/stuck").await;
    assert_eq!((status, text.as_str()), (504, "stream timeout\n"));
    // A body that stops: cut, on each path.
    assert_stall_cut(&p).await;
    assert_h2_stall_reset(&mut c).await;
    // HTTP/2 trickle: moving, so whole.
    let (status, _, text, _) = h2(&mut c, "GET", "/trickle").await;
    assert_eq!((status, text.len()), (200, 10));
    // A client that stops reading is given up once a write has waited that long: twenty 1 MiB
    // responses asked for, none read for a while (the stall under test, not a synchronisation).
    let mut s = connect(&p).await;
    let ask = b"GET /big-body HTTP/1.1\r\nHost: a\r\n\r\n".repeat(20);
    send(&mut s, &ask).await;
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let mut got = Vec::new();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(10), s.read_to_end(&mut got))
        .await
        .expect("the proxy kept a stalled client's connection open");
    assert!(got.len() < 20 << 20, "all {} bytes sent", got.len());
    // A request whose body streams up through hyper's client (chunked) is not held to it while
    // it waits: its progress is the stream's (`/slow` answers after 700 ms).
    let mut s = connect(&p).await;
    send(
        &mut s,
        b"POST /slow HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n",
    )
    .await;
    let r = read_resp(&mut s, &mut Vec::new(), false).await;
    assert_eq!((r.status(), r.text().as_str()), (200, "ok"));
}

#[tokio::test]
async fn a_routes_idle_timeout_replaces_the_listeners() {
    use gw_proxy::config::type_url;
    let up = scripted().await;
    let p = proxy(&up).await;
    let (ms, zero) = (std::time::Duration::from_millis, std::time::Duration::ZERO);
    // `/slow` answers after 700 ms, `/stuck` after 5 s; the route has no timeout of its own.
    for (listener, route, path, want) in [
        (ms(600), None, "/stuck", 504),
        (ms(600), Some(zero), "/slow", 200),
        (ms(600), Some(ms(3000)), "/slow", 200),
        (zero, Some(ms(300)), "/stuck", 504),
    ] {
        let mut r = fixture::prefix_route("t/all", "/", "t/up");
        if let Some(a) = fixture::action(&mut r) {
            a.timeout = Some(fixture::duration(zero));
            a.idle_timeout = route.map(fixture::duration);
        }
        let mut res = fixture::simple(vec![r], &[("t/up", "round_robin", vec![(up.addr, 1)])]);
        let l = fixture::listener_with("ingress", 8080, "ingress", |hcm| {
            hcm.stream_idle_timeout = Some(fixture::duration(listener));
        });
        res.insert(type_url::LISTENER, "ingress", "2", &l);
        p.shared().apply(res).unwrap();
        let mut s = connect(&p).await;
        send(
            &mut s,
            format!("GET {path} HTTP/1.1\r\nHost: a\r\n\r\n").as_bytes(),
        )
        .await;
        let r = read_resp(&mut s, &mut Vec::new(), false).await;
        assert_eq!(r.status(), want, "listener {listener:?}, route {route:?}");
        // The same on hyper's path (HTTP/2).
        let (mut c, _conn) = h2_client(&p).await;
        let status = h2(&mut c, "GET", path).await.0;
        assert_eq!(
            status, want,
            "HTTP/2: listener {listener:?}, route {route:?}"
        );
    }
}

#[tokio::test]
async fn shutdown_closes_what_outlasts_the_drain() {
    let up = scripted().await;
    let mut cfg = ProxyConfig::for_tests(None, "wire");
    cfg.drain_timeout = std::time::Duration::from_millis(300);
    let p = proxy_with(&up, cfg).await;
    // No route timeout: a response that stalls would stay open for the stream idle timeout's
    // 5 minutes, past any drain.
    let mut route = fixture::prefix_route("t/all", "/", "t/up");
    if let Some(a) = fixture::action(&mut route) {
        a.timeout = Some(fixture::duration(std::time::Duration::ZERO));
    }
    let res = fixture::simple(vec![route], &[("t/up", "round_robin", vec![(up.addr, 1)])]);
    p.shared().apply(res).unwrap();
    let mut s = connect(&p).await;
    let (mut c, _conn) = h2_client(&p).await;
    send(&mut s, b"GET /stall HTTP/1.1\r\nHost: a\r\n\r\n").await;
    let resp = h2_stall(&mut c).await;
    // Both heads are out (the HTTP/2 one read): shut down. The drain ends at its timeout, and
    // `shutdown` returns with both connections closed, on this (the first) worker too.
    let mut head = [0u8; 16];
    s.read_exact(&mut head).await.unwrap();
    p.shutdown().await;
    assert!(closed(s).await.ends_with("hello"));
    assert_reset(resp, "the HTTP/2 stream outlived the shutdown").await;
}

#[tokio::test]
async fn a_connection_past_the_listeners_max_age_ends_at_a_request_boundary() {
    use gw_proxy::config::type_url;
    let up = scripted().await;
    let p = proxy_idle(&up, std::time::Duration::from_secs(3600)).await;
    let ms = std::time::Duration::from_millis;
    // Idle and headers bounds far off: only the maximum age ends connections here.
    let route = fixture::prefix_route("t/all", "/", "t/up");
    let mut res = fixture::simple(vec![route], &[("t/up", "round_robin", vec![(up.addr, 1)])]);
    let l = fixture::listener_with("ingress", 8080, "ingress", |hcm| {
        let o = hcm
            .common_http_protocol_options
            .get_or_insert_with(Default::default);
        o.idle_timeout = Some(fixture::duration(std::time::Duration::from_secs(60)));
        o.max_connection_duration = Some(fixture::duration(ms(400)));
    });
    res.insert(type_url::LISTENER, "ingress", "2", &l);
    p.shared().apply(res).unwrap();

    // Idle when it comes of age: the answer as usual, then the close.
    let mut s = connect(&p).await;
    send(&mut s, b"GET /echo HTTP/1.1\r\nHost: a\r\n\r\n").await;
    let rest = closed(s).await;
    assert!(rest.starts_with("HTTP/1.1 200 OK"), "{rest}");
    assert!(!rest.contains("connection: close"), "{rest}");

    // Busy: requests one after another. The first started past the age is answered with
    // `connection: close` and the connection ends after it; or, when the age comes while the
    // connection waits between two requests, it ends there, before the next response begins
    // (as for an idle timeout, such a request was never started and a client may resend it).
    // Either way no response is cut, and the end comes after the age.
    let get = b"GET /echo HTTP/1.1\r\nHost: a\r\n\r\n";
    let (answered, lasted) = requests_until_closed(&p, get).await;
    assert!(
        answered > 1 && lasted >= ms(400),
        "{answered} answers, {lasted:?}"
    );

    // Without the race: a request pipelined behind one that outlasts the age (700 ms) starts
    // after the age, and its answer says `connection: close`; the first one's does not.
    let mut s = connect(&p).await;
    send(
        &mut s,
        b"GET /slow HTTP/1.1\r\nHost: a\r\n\r\nGET /echo HTTP/1.1\r\nHost: a\r\n\r\n",
    )
    .await;
    let mut buf = Vec::new();
    let first = read_resp(&mut s, &mut buf, false).await;
    assert_eq!(header(&first.head, "connection"), None, "{}", first.head);
    let second = read_resp(&mut s, &mut buf, false).await;
    assert_eq!(second.status(), 200);
    assert_eq!(
        header(&second.head, "connection"),
        Some("close"),
        "{}",
        second.head
    );
    assert!(buf.is_empty() && read_more(&mut s, &mut buf).await == 0);

    // The same on an HTTP/1.1 connection handed to hyper (chunked uploads): idle, then busy.
    let chunked = b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n";
    let mut s = connect(&p).await;
    send(&mut s, chunked).await;
    let rest = closed(s).await;
    assert!(rest.starts_with("HTTP/1.1 200 OK"), "{rest}");
    let (answered, lasted) = requests_until_closed(&p, chunked).await;
    assert!(
        answered > 1 && lasted >= ms(400),
        "{answered} answers, {lasted:?}"
    );

    // A request in flight on a connection handed to hyper when the age comes (a chunked upload
    // to `/slow`, 700 ms): answered whole, saying `connection: close`, then the connection ends.
    let mut s = connect(&p).await;
    send(&mut s, b"POST /slow HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n").await;
    let rest = closed(s).await;
    assert!(rest.starts_with("HTTP/1.1 200 OK"), "{rest}");
    assert!(rest.ends_with("\r\n\r\nok"), "{rest}");
    assert!(rest.contains("connection: close"), "{rest}");

    // HTTP/2 (served by hyper): GOAWAY at the age (the idle timeout is a minute off).
    h2_request_then_ended(&p, "aged").await;
}

/// Sends `req` on one connection, again after each whole answer (200), until the proxy ends the
/// connection: after an answer saying `connection: close`, or between two requests. How many
/// were answered, and how long the connection lasted (measured from before it was opened, so
/// never shorter than the proxy's own count).
async fn requests_until_closed(p: &Proxy, req: &[u8]) -> (usize, std::time::Duration) {
    let t0 = std::time::Instant::now();
    let mut s = connect(p).await;
    let mut buf = Vec::new();
    let mut answered = 0;
    loop {
        assert!(
            t0.elapsed() < std::time::Duration::from_secs(10),
            "never closed"
        );
        let _ = s.write_all(req).await;
        if read_more(&mut s, &mut buf).await == 0 {
            break;
        }
        let r = read_resp(&mut s, &mut buf, false).await;
        assert_eq!(r.status(), 200, "{}", r.head);
        answered += 1;
        if header(&r.head, "connection") == Some("close") {
            assert!(buf.is_empty() && read_more(&mut s, &mut buf).await == 0);
            break;
        }
    }
    (answered, t0.elapsed())
}

#[tokio::test]
async fn workers_share_the_port_serve_on_their_own_and_drain_together() {
    let up = scripted().await;
    let mut cfg = ProxyConfig::for_tests(None, "wire");
    cfg.workers = 2;
    let p = proxy_with(&up, cfg).await;
    // 32 client connections (the kernel spreads them over the two listening sockets by their
    // addresses: all on one worker has odds of 2^-31), each with three requests in turn.
    let mut clients = Vec::new();
    for _ in 0..32 {
        clients.push(connect(&p).await);
    }
    for round in 0..3 {
        for s in &mut clients {
            let req = format!("GET /echo/{round} HTTP/1.1\r\nHost: a\r\n\r\n");
            send(s, req.as_bytes()).await;
            let r = read_resp(s, &mut Vec::new(), false).await;
            assert_eq!(r.status(), 200, "{}", r.head);
            assert!(r.text().starts_with(&format!("GET /echo/{round} ")));
        }
    }
    let metrics = http_get(p.admin_addr(), "/metrics").await;
    let accepted = |w: &str| -> u64 {
        let line = format!("gw_worker_connections_total{{worker=\"{w}\"}} ");
        let v = metrics.lines().find_map(|l| l.strip_prefix(line.as_str()));
        v.unwrap_or_else(|| panic!("no {line}in {metrics}"))
            .parse()
            .unwrap()
    };
    let (w0, w1) = (accepted("0"), accepted("1"));
    assert_eq!(w0 + w1, 32, "{metrics}");
    assert!(
        w0 > 0 && w1 > 0,
        "one worker took every connection: {w0} / {w1}"
    );
    // One request at a time: each worker opened one upstream connection at most and reused it.
    let opened = up.conns.load(Ordering::SeqCst);
    assert!(
        opened <= 2,
        "{opened} upstream connections for one request at a time"
    );

    // A second proxy on the port fails to start, though its sockets would share it
    // (`SO_REUSEPORT`) with these.
    let mut again = ProxyConfig::for_tests(None, "wire");
    (again.workers, again.listen) = (2, p.listen_addr());
    let err = Proxy::start(again)
        .await
        .expect_err("a second proxy on a port in use");
    assert!(err.to_string().contains("binding"), "{err}");

    // A slow request in flight when the drain starts is answered; then the port is closed.
    let mut s = clients.pop().unwrap();
    send(&mut s, b"GET /slow HTTP/1.1\r\nHost: a\r\n\r\n").await;
    let t0 = std::time::Instant::now();
    loop {
        let m = http_get(p.admin_addr(), "/metrics").await;
        if m.lines()
            .any(|l| l.starts_with("gw_endpoint_in_flight") && l.ends_with(" 1"))
        {
            break;
        }
        assert!(t0.elapsed().as_secs() < 10, "never in flight: {m}");
        tokio::task::yield_now().await;
    }
    let addr = p.listen_addr();
    let shutdown = tokio::spawn(p.shutdown());
    let r = read_resp(&mut s, &mut Vec::new(), false).await;
    assert_eq!((r.status(), r.text().as_str()), (200, "ok"));
    shutdown.await.unwrap();
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "new connections are refused after the drain"
    );
}

/// A GET to an admin endpoint, the body as text.
async fn http_get(addr: SocketAddr, path: &str) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    // HTTP/1.0: the body comes whole, to the close (no chunks to take apart).
    let req = format!("GET {path} HTTP/1.0\r\nHost: admin\r\n\r\n");
    send(&mut s, req.as_bytes()).await;
    let mut buf = Vec::new();
    while read_more(&mut s, &mut buf).await > 0 {}
    let text = String::from_utf8_lossy(&buf).into_owned();
    text.split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or(text)
}

/// An upgrade to WebSocket asked for `path` on a new connection (with a hop-by-hop `X-Hop` and
/// `early` bytes sent right after the head): the response head, the connection, and what came
/// after the head.
async fn upgrade(p: &Proxy, path: &str, early: &[u8]) -> (String, TcpStream, Vec<u8>) {
    let mut s = connect(p).await;
    let mut req = format!(
        "GET {path} HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\
         Connection: keep-alive, Upgrade, X-Hop\r\nX-Hop: 1\r\n\r\n"
    )
    .into_bytes();
    req.extend_from_slice(early);
    send(&mut s, &req).await;
    let mut buf = Vec::new();
    let end = loop {
        if let Some(i) = find(&buf, b"\r\n\r\n") {
            break i + 4;
        }
        assert!(
            read_more(&mut s, &mut buf).await > 0,
            "{path}: closed before a head"
        );
    };
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    buf.drain(..end);
    (head, s, buf)
}

/// Reads until `buf` ends with `want` (what the tunnel's echo sends back), then empties it.
async fn echoed(s: &mut TcpStream, buf: &mut Vec<u8>, want: &[u8]) {
    while !buf.ends_with(want) {
        assert!(
            read_more(s, buf).await > 0,
            "the tunnel ended before {want:?} came back: {buf:?}"
        );
    }
    buf.clear();
}

/// Routes `/ws` (upgrades as `ws_upgrades` says) and `/` (none of its own) to `up`, behind a
/// listener whose HTTP connection manager is changed by `hcm`.
fn upgrade_routes(
    up: &Scripted,
    ws_upgrades: Vec<(&str, Option<bool>)>,
    ws_edit: impl FnOnce(&mut gw_proto::envoy::pb::envoy::config::route::v3::RouteAction),
    hcm: impl FnOnce(&mut gw_proto::envoy::pb::envoy::extensions::filters::network::http_connection_manager::v3::HttpConnectionManager),
) -> gw_proxy::config::Resources {
    use gw_proto::envoy::pb::envoy::config::route::v3::route_action::UpgradeConfig;
    let mut ws = fixture::prefix_route("t/ws", "/ws", "t/up");
    if let Some(a) = fixture::action(&mut ws) {
        a.upgrade_configs = ws_upgrades
            .into_iter()
            .map(|(kind, on)| UpgradeConfig {
                upgrade_type: kind.into(),
                enabled: on.map(|value| gw_proto::envoy::pb::google::protobuf::BoolValue { value }),
                ..Default::default()
            })
            .collect();
        ws_edit(a);
    }
    let all = fixture::prefix_route("t/all", "/", "t/up");
    let mut res = fixture::simple(
        vec![ws, all],
        &[("t/up", "round_robin", vec![(up.addr, 1)])],
    );
    let l = fixture::listener_with("ingress", 8080, "ingress", hcm);
    res.insert(gw_proxy::config::type_url::LISTENER, "ingress", "2", &l);
    res
}

#[tokio::test]
async fn upgrades_tunnel_where_the_route_or_the_listener_allows_them() {
    let up = scripted().await;
    let p = proxy(&up).await;
    // The route lets WebSocket through (the type matched in any case); the listener says nothing.
    let res = upgrade_routes(&up, vec![("WebSocket", None)], |_| {}, |_| {});
    p.shared().apply(res).unwrap();

    // 101 both ways with `Upgrade` and `Connection: upgrade` alone (other hop-by-hop headers
    // dropped); bytes sent with the request reach the upstream after it, then each way as sent.
    let (head, mut s, mut buf) = upgrade(&p, "/ws", b"early").await;
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    assert_eq!(header(&head, "upgrade"), Some("websocket"), "{head}");
    assert_eq!(header(&head, "connection"), Some("upgrade"), "{head}");
    assert_eq!(
        header(&head, "x-seen-connection"),
        Some("upgrade"),
        "{head}"
    );
    assert_eq!(header(&head, "x-hop-seen"), Some("false"), "{head}");
    echoed(&mut s, &mut buf, b"early").await;
    for msg in [&b"ping"[..], &[0u8, 255, 13, 10, 13, 10][..]] {
        send(&mut s, msg).await;
        echoed(&mut s, &mut buf, msg).await;
    }
    // Recorded when it ends, not at the 101: nothing yet. Meanwhile it counts as its
    // endpoint's request in flight (what least_conn weighs), as Envoy counts it active.
    assert_eq!(ws_switched(p.shared()), 0);
    assert_eq!(in_flight(p.shared()), 1);
    // The client's end of stream reaches the upstream, whose own ends the tunnel.
    s.shutdown().await.unwrap();
    assert_eq!(closed(s).await, "");
    // Then one 1xx for the route (bounded polling: the record follows the close).
    let t0 = std::time::Instant::now();
    while ws_switched(p.shared()) != 1 {
        assert!(t0.elapsed().as_secs() < 10, "the tunnel was never recorded");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(in_flight(p.shared()), 0);

    // `Upgrade: h2c` is no upgrade gw-proxy makes: served as a plain request (as Envoy), its
    // upgrade headers dropped.
    let mut s = connect(&p).await;
    send(
        &mut s,
        b"GET /other HTTP/1.1\r\nHost: a\r\nUpgrade: h2c\r\n\
          Connection: Upgrade, HTTP2-Settings\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n",
    )
    .await;
    let r = read_resp(&mut s, &mut Vec::new(), false).await;
    assert_eq!(r.status(), 200, "{}", r.head);
    assert!(
        !r.text().to_ascii_lowercase().contains("upgrade"),
        "{}",
        r.text()
    );
    assert!(
        !r.text().to_ascii_lowercase().contains("http2-settings"),
        "{}",
        r.text()
    );

    // A route that does not allow it: 403 and the close, as Envoy; nothing goes upstream.
    let before = up.conns.load(Ordering::SeqCst);
    let (head, s, _) = upgrade(&p, "/other", b"").await;
    assert!(head.starts_with("HTTP/1.1 403 "), "{head}");
    assert_eq!(header(&head, "connection"), Some("close"), "{head}");
    assert_eq!(closed(s).await, "");
    assert_eq!(up.conns.load(Ordering::SeqCst), before);
    // An upstream that does not switch: its answer is relayed, then the close (what the client
    // sends next would not be HTTP).
    let (head, s, came) = upgrade(&p, "/ws/refuse", b"").await;
    assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
    assert_eq!(header(&head, "connection"), Some("close"), "{head}");
    let rest = String::from_utf8_lossy(&came).into_owned() + &closed(s).await;
    assert!(rest.contains("upgrade: websocket"), "{head}{rest}");

    // The listener enables it: a route that says nothing lets it through, one that disables it
    // refuses it (Envoy's table).
    let res = upgrade_routes(
        &up,
        vec![("websocket", Some(false))],
        |_| {},
        |hcm| {
            hcm.upgrade_configs = vec![Default::default()];
            hcm.upgrade_configs[0].upgrade_type = "websocket".into();
        },
    );
    p.shared().apply(res).unwrap();
    let (head, _s, _) = upgrade(&p, "/other", b"").await;
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    let (head, _s, _) = upgrade(&p, "/ws", b"").await;
    assert!(head.starts_with("HTTP/1.1 403 "), "{head}");

    // CONNECT is not something gw-proxy tunnels: refused (NACKed), the previous config serves.
    let bad = upgrade_routes(&up, vec![("CONNECT", None)], |_| {}, |_| {});
    let err = p.shared().apply(bad).unwrap_err().to_string();
    assert!(err.contains("upgrade type \"connect\""), "{err}");
    let (head, _s, _) = upgrade(&p, "/other", b"").await;
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
}

/// Requests in flight on the upstream endpoint of cluster `t/up`.
fn in_flight(shared: &gw_proxy::server::Shared) -> u32 {
    let cfg = shared.config.load_full();
    let c = cfg.clusters.get("t/up").unwrap();
    c.endpoints[0].in_flight.load(Ordering::SeqCst)
}

/// The route `ws`'s count of 1xx answers (switches recorded).
fn ws_switched(shared: &gw_proxy::server::Shared) -> u64 {
    shared
        .registries
        .stats
        .get("route", "t", "ws")
        .snapshot()
        .classes[0]
}

#[tokio::test]
async fn a_tunnel_lasts_until_it_goes_quiet_for_the_stream_idle_timeout() {
    let up = scripted().await;
    let mut cfg = ProxyConfig::for_tests(None, "wire");
    cfg.drain_timeout = std::time::Duration::from_millis(300);
    let p = proxy_with(&up, cfg).await;
    let ms = std::time::Duration::from_millis;
    // The route's timeout (100 ms) bounds the wait for the 101, not the tunnel; the stream idle
    // timeout (1 s) ends a quiet tunnel. One upstream connection at a time: each tunnel gives
    // its unit back when it ends.
    let limited = |res: &mut gw_proxy::config::Resources| {
        let mut c = fixture::cluster("t/up", "round_robin");
        c.circuit_breakers = Some(
            gw_proto::envoy::pb::envoy::config::cluster::v3::CircuitBreakers {
                thresholds: vec![Default::default()],
                ..Default::default()
            },
        );
        if let Some(t) = c.circuit_breakers.as_mut().map(|b| &mut b.thresholds[0]) {
            t.max_connections =
                Some(gw_proto::envoy::pb::google::protobuf::UInt32Value { value: 1 });
        }
        res.insert(gw_proxy::config::type_url::CLUSTER, "t/up", "2", &c);
    };
    let mut res = upgrade_routes(
        &up,
        vec![("websocket", None)],
        |a| a.timeout = Some(fixture::duration(ms(100))),
        |hcm| hcm.stream_idle_timeout = Some(fixture::duration(ms(1000))),
    );
    limited(&mut res);
    p.shared().apply(res).unwrap();
    let (head, s, came) = upgrade(&p, "/ws/slow", b"").await;
    assert!(head.starts_with("HTTP/1.1 504 "), "{head}");
    let rest = String::from_utf8_lossy(&came).into_owned() + &closed(s).await;
    assert_eq!(rest, "upstream request timeout\n");
    let (head, mut s, mut buf) = upgrade(&p, "/ws", b"").await;
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    for msg in [&b"one"[..], b"two", b"three"] {
        // Not a synchronisation: time passes beyond the route's timeout, within the idle one.
        tokio::time::sleep(ms(250)).await;
        send(&mut s, msg).await;
        echoed(&mut s, &mut buf, msg).await;
    }
    let quiet = std::time::Instant::now();
    assert_eq!(closed(s).await, "");
    assert!(quiet.elapsed() >= ms(1000), "{:?}", quiet.elapsed());

    // The route turns the stream idle timeout off: the tunnel outlasts it, until the shutdown's
    // drain timeout closes it.
    let mut res = upgrade_routes(
        &up,
        vec![("websocket", None)],
        |a| a.idle_timeout = Some(fixture::duration(std::time::Duration::ZERO)),
        |hcm| hcm.stream_idle_timeout = Some(fixture::duration(ms(300))),
    );
    limited(&mut res);
    p.shared().apply(res).unwrap();
    let (head, mut s, mut buf) = upgrade(&p, "/ws", b"").await;
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    // Not a synchronisation: the stream idle time passes, three times over, with the tunnel quiet.
    tokio::time::sleep(ms(1000)).await;
    send(&mut s, b"still").await;
    echoed(&mut s, &mut buf, b"still").await;
    // Still open at the shutdown: closed when the drain times out, and recorded then.
    let shared = p.shared().clone();
    let before = ws_switched(&shared);
    p.shutdown().await;
    assert_eq!(closed(s).await, "");
    assert_eq!(ws_switched(&shared), before + 1);
}
