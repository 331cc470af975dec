//! Test support: real upstream servers, an HTTP client, and waiting on conditions with a deadline.

#![allow(dead_code, missing_docs, clippy::unwrap_used)]

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// An upstream on 127.0.0.1:0. `/echo` returns the request body; `/status/N` answers N;
/// `/slow/MS` answers after MS ms; `/flaky/N` fails its first N requests with 503. Every
/// response carries `x-upstream: NAME` and the request headers as `x-seen-<name>`.
pub struct Upstream {
    pub name: String,
    pub addr: SocketAddr,
    pub hits: Arc<AtomicU32>,
    /// Connections open now, and the most ever open at once.
    pub conns: Arc<AtomicU32>,
    pub peak_conns: Arc<AtomicU32>,
    /// While true, every request is answered 503.
    pub failing: Arc<std::sync::atomic::AtomicBool>,
    task: tokio::task::JoinHandle<()>,
    /// Tells open connections to close when the upstream is dropped ("killed").
    kill: tokio::sync::watch::Sender<bool>,
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
        let _ = self.kill.send(true);
    }
}

impl Upstream {
    pub async fn start(name: &str) -> Upstream {
        Self::start_on(name, "127.0.0.1:0".parse().unwrap()).await
    }

    pub async fn start_on(name: &str, addr: SocketAddr) -> Upstream {
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let hits = Arc::new(AtomicU32::new(0));
        let failing = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (n, h, f) = (name.to_owned(), hits.clone(), failing.clone());
        let (kill, killed) = tokio::sync::watch::channel(false);
        let conns = Arc::new(AtomicU32::new(0));
        let peak_conns = Arc::new(AtomicU32::new(0));
        let (open, peak) = (conns.clone(), peak_conns.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((s, _)) = listener.accept().await else {
                    return;
                };
                let (n, h, f) = (n.clone(), h.clone(), f.clone());
                let mut killed = killed.clone();
                let now = open.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(now, Ordering::SeqCst);
                let open = open.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                        let (n, h, f) = (n.clone(), h.clone(), f.clone());
                        async move {
                            if f.load(Ordering::SeqCst) {
                                h.fetch_add(1, Ordering::SeqCst);
                                let mut r = Response::new(Full::new(Bytes::from_static(b"down")));
                                *r.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
                                return Ok::<_, std::convert::Infallible>(r);
                            }
                            Ok::<_, std::convert::Infallible>(serve(&n, &h, req).await)
                        }
                    });
                    let builder =
                        hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                    let conn = builder.serve_connection(TokioIo::new(s), svc);
                    // Dropping the connection closes its socket, as a killed process would.
                    tokio::select! {
                        _ = conn => {}
                        _ = killed.wait_for(|k| *k) => {}
                    }
                    open.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        Upstream {
            name: name.into(),
            addr,
            hits,
            conns,
            peak_conns,
            failing,
            task,
            kill,
        }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }
}

async fn serve(name: &str, hits: &AtomicU32, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let n = hits.fetch_add(1, Ordering::SeqCst);
    let path = req.uri().path().to_owned();
    let mut seen = Vec::new();
    for (k, v) in req.headers() {
        seen.push((format!("x-seen-{k}"), v.clone()));
    }
    let (status, body) = if path.starts_with("/echo") {
        (
            200,
            req.into_body()
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default(),
        )
    } else if let Some(code) = path.strip_prefix("/status/") {
        (code.parse().unwrap_or(500), Bytes::from(name.to_owned()))
    } else if let Some(ms) = path.strip_prefix("/slow/") {
        // Simulated upstream latency (the behaviour under test), not test synchronisation.
        tokio::time::sleep(Duration::from_millis(ms.parse().unwrap_or(0))).await;
        (200, Bytes::from(name.to_owned()))
    } else if let Some(k) = path.strip_prefix("/flaky/") {
        let k: u32 = k.parse().unwrap_or(0);
        (if n < k { 503 } else { 200 }, Bytes::from(name.to_owned()))
    } else {
        (200, Bytes::from(name.to_owned()))
    };
    let mut r = Response::new(Full::new(body));
    *r.status_mut() = StatusCode::from_u16(status).unwrap();
    r.headers_mut().insert("x-upstream", name.parse().unwrap());
    for (k, v) in seen {
        if let Ok(k) = hyper::header::HeaderName::from_bytes(k.as_bytes()) {
            r.headers_mut().append(k, v);
        }
    }
    r
}

pub type HttpClient = Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>;

pub fn client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

pub struct Reply {
    pub status: u16,
    pub upstream: String,
    pub headers: hyper::HeaderMap,
    pub body: Bytes,
}

pub async fn send(
    c: &HttpClient,
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Bytes,
) -> Reply {
    let mut b = Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"));
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let resp = c.request(b.body(Full::new(body)).unwrap()).await.unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let upstream = headers
        .get("x-upstream")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    Reply {
        status,
        upstream,
        headers,
        body,
    }
}

pub async fn get(c: &HttpClient, addr: SocketAddr, path: &str) -> Reply {
    send(c, addr, "GET", path, &[], Bytes::new()).await
}

/// The admin endpoint's JSON at `path` (`/clusters`, `/config_dump`).
pub async fn admin_json(c: &HttpClient, admin: SocketAddr, path: &str) -> serde_json::Value {
    serde_json::from_slice(&get(c, admin, path).await.body).unwrap()
}

/// The entry of a JSON array whose `name` is `name`.
pub fn named<'a>(list: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    list.as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no {name} in {list}"))
}

#[allow(unused_imports)]
pub use gw_control_plane::testing::{dead_port, free_port};

/// The value of the first Prometheus text line starting with `prefix` (name and labels).
pub fn metric(text: &str, prefix: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

/// Waits (10 s at most) until the proxy whose admin listener is `admin` has a request in flight
/// to some endpoint (`gw_endpoint_in_flight` 1).
#[allow(dead_code)]
pub async fn until_one_in_flight(c: &HttpClient, admin: SocketAddr) {
    eventually(10, "a request in flight", || async {
        let m = String::from_utf8(get(c, admin, "/metrics").await.body.to_vec()).unwrap();
        m.lines()
            .any(|l| l.starts_with("gw_endpoint_in_flight") && l.ends_with(" 1"))
            .then_some(())
    })
    .await;
}

/// Asserts that both workers of the proxy whose admin listener is `admin` accepted connections
/// (`gw_worker_connections_total`).
#[allow(dead_code)]
pub async fn assert_both_workers_accepted(c: &HttpClient, admin: SocketAddr) {
    let m = String::from_utf8(get(c, admin, "/metrics").await.body.to_vec()).unwrap();
    let accepted = |w: &str| {
        let name = format!("gw_worker_connections_total{{worker=\"{w}\"}}");
        metric(&m, &name).unwrap_or(0.0)
    };
    let (w0, w1) = (accepted("0"), accepted("1"));
    assert!(
        w0 > 0.0 && w1 > 0.0,
        "one worker took every connection: {w0} / {w1}: {m}"
    );
}

/// Polls `f` until it returns `Some`, at most `secs` seconds.
pub async fn eventually<T, F, Fut>(secs: u64, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A webhook receiver on 127.0.0.1:0: every POST body (JSON) arrives on the channel.
pub async fn webhook_receiver() -> (
    SocketAddr,
    tokio::sync::mpsc::UnboundedReceiver<serde_json::Value>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let Ok((s, _)) = listener.accept().await else {
                return;
            };
            let tx = tx.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let tx = tx.clone();
                    async move {
                        let body = req
                            .into_body()
                            .collect()
                            .await
                            .map(|b| b.to_bytes())
                            .unwrap_or_default();
                        let _ = tx
                            .send(serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null));
                        Ok::<_, std::convert::Infallible>(Response::new(Full::new(
                            Bytes::from_static(b"ok"),
                        )))
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    (addr, rx)
}

/// A control plane with `yaml` applied and one proxy (node `node`) connected to it, returned once
/// `path` answers 200 through the proxy (so the manifest's routes are in).
pub async fn stack(
    yaml: &str,
    node: &str,
    path: &str,
) -> (
    gw_control_plane::server::ControlPlane,
    gw_proxy::server::Proxy,
) {
    stack_on(yaml, node, path, 0).await
}

/// Applies the manifest `yaml` to `cp`'s store.
pub async fn apply(cp: &gw_control_plane::server::ControlPlane, yaml: &str) {
    let objs = gw_proto::manifest::parse(yaml)
        .unwrap()
        .into_iter()
        .map(|d| d.object)
        .collect();
    cp.store().apply(objs, false).await.unwrap();
}

/// [`stack`] with a proxy of `workers` workers (`ProxyConfig::workers`).
pub async fn stack_on(
    yaml: &str,
    node: &str,
    path: &str,
    workers: usize,
) -> (
    gw_control_plane::server::ControlPlane,
    gw_proxy::server::Proxy,
) {
    let cp = gw_control_plane::server::ControlPlane::start(
        gw_control_plane::server::Config::for_tests("sqlite::memory:"),
    )
    .await
    .unwrap();
    apply(&cp, yaml).await;
    let mut cfg =
        gw_proxy::server::ProxyConfig::for_tests(Some(format!("http://{}", cp.grpc_addr())), node);
    cfg.workers = workers;
    let proxy = gw_proxy::server::Proxy::start(cfg).await.unwrap();
    let (c, p) = (client(), proxy.listen_addr());
    eventually(10, "routes served", || async {
        (get(&c, p, path).await.status == 200).then_some(())
    })
    .await;
    (cp, proxy)
}

/// `request` over a connection of its own (it says `Connection: close`, or is HTTP/1.0):
/// everything that comes back until the proxy closes.
pub async fn raw(addr: SocketAddr, request: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(request).await.unwrap();
    let mut got = Vec::new();
    s.read_to_end(&mut got).await.unwrap();
    String::from_utf8_lossy(&got).into_owned()
}

/// `request` on `s` (keep-alive); the response head and body.
pub async fn exchange(s: &mut tokio::net::TcpStream, request: &str) -> (String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    s.write_all(request.as_bytes()).await.unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = s.read(&mut buf).await.unwrap();
        assert!(n > 0, "closed: {}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&got).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length: "))
                .map_or(0, |v| v.trim().parse().unwrap());
            if body.len() >= len {
                return (head.to_owned(), body.to_owned());
            }
        }
    }
}
