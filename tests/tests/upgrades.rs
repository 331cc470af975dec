//! HTTP/1.1 upgrades parity: a Route's `upgrades` (RouteAction `upgrade_configs`) reach a stock
//! Envoy 1.40 and gw-proxy alike, and both act on them the same way. An allowed WebSocket
//! upgrade gets the upstream's `101` (the route's timeout bounds the wait for it: 504), and bytes
//! then go both ways until the client's end of stream ends it; the route's timeout does not cut
//! the tunnel, the stream idle timeout does. A route
//! without it answers `403` and closes; an upstream that does not switch has its answer relayed,
//! and the connection closes after it. `Upgrade: h2c` is served as a plain request by both.

#![allow(clippy::unwrap_used)]

use gw_e2e::serving::on_both;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// An upgrade to WebSocket asked for `path` on a new connection: the response head (lower case)
/// and the connection.
async fn upgrade(who: &str, addr: SocketAddr, path: &str) -> (String, TcpStream) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match s.read(&mut b).await {
            Ok(1) => head.push(b[0]),
            _ => panic!("{who} {path}: closed before a head: {head:?}"),
        }
    }
    (String::from_utf8_lossy(&head).to_ascii_lowercase(), s)
}

/// Sends `msg` into the tunnel and reads it back from the upstream's echo.
async fn echo(who: &str, s: &mut TcpStream, msg: &[u8]) {
    s.write_all(msg).await.unwrap();
    let mut back = vec![0u8; msg.len()];
    tokio::time::timeout(Duration::from_secs(10), s.read_exact(&mut back))
        .await
        .unwrap_or_else(|_| panic!("{who}: no echo of {msg:?}"))
        .unwrap_or_else(|e| panic!("{who}: the tunnel ended before the echo of {msg:?}: {e}"));
    assert_eq!(back, msg, "{who}");
}

/// Waits for the proxy to end the connection (an end of stream or a reset); fails if it keeps
/// it open 10 s.
async fn ended(who: &str, mut s: TcpStream, what: &str) {
    let mut rest = Vec::new();
    let end = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut rest))
        .await
        .unwrap_or_else(|_| panic!("{who} kept the connection open ({what})"));
    if let Err(e) = end {
        assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{who}: {e}");
    }
}

/// The listener's stream idle timeout is 2 s; `/ws` allows WebSocket and has a 300 ms timeout,
/// `/deny` allows nothing.
async fn check(who: &'static str, addr: SocketAddr) {
    // The route's timeout bounds the wait for the switch (an upstream 800 ms late gets 504 and
    // the close), not the tunnel after it.
    let (head, s) = upgrade(who, addr, "/ws/slow/800").await;
    assert!(head.starts_with("http/1.1 504"), "{who}: {head}");
    assert!(head.contains("\r\nconnection: close\r\n"), "{who}: {head}");
    ended(who, s, "after a late switch").await;

    let (head, mut s) = upgrade(who, addr, "/ws/chat").await;
    assert!(head.starts_with("http/1.1 101"), "{who}: {head}");
    assert!(head.contains("\r\nupgrade: websocket\r\n"), "{who}: {head}");
    assert!(
        head.contains("\r\nconnection: upgrade\r\n"),
        "{who}: {head}"
    );
    assert!(
        head.contains("\r\nx-seen-upgrade: websocket\r\n"),
        "{who}: {head}"
    );
    let seen = head
        .lines()
        .find_map(|l| l.strip_prefix("x-seen-connection: "))
        .unwrap_or_else(|| panic!("{who}: {head}"));
    assert!(seen.contains("upgrade"), "{who}: {head}");
    echo(who, &mut s, b"ping").await;
    // Past the route's timeout, within the stream idle timeout: the tunnel is still there.
    // Not a synchronisation: time passing is what is tested.
    tokio::time::sleep(Duration::from_millis(700)).await;
    echo(who, &mut s, b"late").await;
    // The client's end of stream reaches the upstream, whose own ends the tunnel.
    s.shutdown().await.unwrap();
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut rest))
        .await
        .unwrap_or_else(|_| panic!("{who} kept the tunnel open after both ends"))
        .unwrap();
    assert!(rest.is_empty(), "{who}: {rest:?}");

    // Quiet for the stream idle timeout: ended, not before.
    let (head, mut s) = upgrade(who, addr, "/ws/quiet").await;
    assert!(head.starts_with("http/1.1 101"), "{who}: {head}");
    echo(who, &mut s, b"ping").await;
    let quiet = Instant::now();
    ended(who, s, "a quiet tunnel").await;
    assert!(
        quiet.elapsed() >= Duration::from_secs(2),
        "{who}: {:?}",
        quiet.elapsed()
    );

    // A route that does not allow it: 403, then the close.
    let (head, s) = upgrade(who, addr, "/deny/ws").await;
    assert!(head.starts_with("http/1.1 403"), "{who}: {head}");
    assert!(head.contains("\r\nconnection: close\r\n"), "{who}: {head}");
    ended(who, s, "after a refused upgrade").await;

    // `Upgrade: h2c` is no upgrade either proxy makes: the request is served as it is.
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(
        b"GET /deny/h2c HTTP/1.1\r\nHost: x\r\nUpgrade: h2c\r\n\
          Connection: Upgrade, HTTP2-Settings\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n",
    )
    .await
    .unwrap();
    let mut head = vec![0u8; 12];
    s.read_exact(&mut head).await.unwrap();
    assert_eq!(&head, b"HTTP/1.1 200", "{who}");

    // An upstream that does not switch: its answer, then the close.
    let (head, s) = upgrade(who, addr, "/ws/plain").await;
    assert!(head.starts_with("http/1.1 200"), "{who}: {head}");
    assert!(
        head.contains("\r\nx-seen-path: /ws/plain\r\n"),
        "{who}: {head}"
    );
    assert!(head.contains("\r\nconnection: close\r\n"), "{who}: {head}");
    ended(who, s, "after an upgrade the upstream declined").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn envoy_and_gw_proxy_tunnel_websocket_upgrades_alike() {
    on_both(
        "upgrades",
        "idleTimeout: 60s, streamIdleTimeout: 2s",
        &[
            ("/ws", ", timeout: 300ms, upgrades: [websocket]"),
            ("/deny", ""),
        ],
        check,
    )
    .await;
}
