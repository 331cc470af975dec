//! `KubeSource`, the real kube client and watcher, against a fake Kubernetes API server on a real
//! socket: it lists and watches EndpointSlices the way the API server serves them (a list with a
//! resourceVersion, then a chunked stream of watch events), so the namespace, the label selector
//! and the event order are those a cluster would see.

#![allow(clippy::unwrap_used)]

use bytes::Bytes;
use futures::StreamExt;
use gw_control_plane::discovery::{KubeSource, SliceSource};
use http_body_util::{combinators::BoxBody, BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::watcher::Event;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;

type Body = BoxBody<Bytes, Infallible>;

/// What the fake API server has seen and what it will stream.
struct ApiServer {
    /// Path and query of every request.
    requests: Mutex<Vec<String>>,
    /// Watch events the test sends, streamed to the (one) watch request once it comes.
    events: Mutex<Option<mpsc::UnboundedReceiver<serde_json::Value>>>,
}

fn slice(rv: &str, addresses: &[&str]) -> serde_json::Value {
    let endpoints: Vec<_> = addresses
        .iter()
        .map(|a| serde_json::json!({"addresses": [a], "conditions": {"ready": true}}))
        .collect();
    serde_json::json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": "users-1", "namespace": "shop", "resourceVersion": rv,
                     "labels": {"kubernetes.io/service-name": "users"}},
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
        "endpoints": endpoints
    })
}

async fn serve(api: Arc<ApiServer>, req: Request<hyper::body::Incoming>) -> Response<Body> {
    let uri = req.uri().clone();
    api.requests.lock().unwrap().push(uri.to_string());
    let query = uri.query().unwrap_or("");
    if uri.path() != "/apis/discovery.k8s.io/v1/namespaces/shop/endpointslices" {
        return Response::builder()
            .status(404)
            .body(Full::new(Bytes::from_static(b"{}")).boxed())
            .unwrap();
    }
    if query
        .split('&')
        .any(|kv| kv == "watch=true" || kv == "watch=1")
    {
        let rx = api.events.lock().unwrap().take().expect("one watch");
        let frames = tokio_stream::wrappers::UnboundedReceiverStream::new(rx).map(|ev| {
            let mut line = serde_json::to_vec(&ev).unwrap();
            line.push(b'\n');
            Ok::<_, Infallible>(Frame::data(Bytes::from(line)))
        });
        return Response::builder()
            .header("content-type", "application/json")
            .body(BodyExt::boxed(StreamBody::new(frames)))
            .unwrap();
    }
    let list = serde_json::json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSliceList",
        "metadata": {"resourceVersion": "100"},
        "items": [slice("100", &["10.0.0.1"])]
    });
    Response::builder()
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(list.to_string())).boxed())
        .unwrap()
}

async fn start(api: Arc<ApiServer>) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((io, _)) = listener.accept().await {
            let api = api.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req| {
                    let api = api.clone();
                    async move { Ok::<_, Infallible>(serve(api, req).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(io), svc)
                    .await;
            });
        }
    });
    addr
}

fn addresses(s: &EndpointSlice) -> Vec<String> {
    s.endpoints
        .iter()
        .flat_map(|e| e.addresses.clone())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn kube_source_lists_then_follows_one_services_slices() {
    let (watch, rx) = mpsc::unbounded_channel();
    let api = Arc::new(ApiServer {
        requests: Mutex::default(),
        events: Mutex::new(Some(rx)),
    });
    let addr = start(api.clone()).await;
    let config = kube::Config::new(format!("http://{addr}").parse().unwrap());
    let client = kube::Client::try_from(config).unwrap();
    let mut events = KubeSource::new(client).watch("shop", "users");
    let mut next = async || {
        tokio::time::timeout(Duration::from_secs(10), events.next())
            .await
            .expect("an event within 10 s")
            .expect("the stream goes on")
            .expect("no error")
    };

    assert!(matches!(next().await, Event::Init));
    match next().await {
        Event::InitApply(s) => assert_eq!(addresses(&s), vec!["10.0.0.1"]),
        other => panic!("expected InitApply, got {other:?}"),
    }
    assert!(matches!(next().await, Event::InitDone));

    watch
        .send(serde_json::json!({"type": "MODIFIED", "object": slice("101", &["10.0.0.1", "10.0.0.2"])}))
        .unwrap();
    match next().await {
        Event::Apply(s) => assert_eq!(addresses(&s), vec!["10.0.0.1", "10.0.0.2"]),
        other => panic!("expected Apply, got {other:?}"),
    }
    // The list asked for this Service's slices in its namespace, and the watch went on from the
    // list's resourceVersion.
    let requests = api.requests.lock().unwrap().clone();
    assert_eq!(requests.len(), 2, "{requests:?}");
    assert!(
        requests
            .iter()
            .all(|r| r.contains("labelSelector=kubernetes.io%2Fservice-name%3Dusers")),
        "{requests:?}"
    );
    assert!(requests[1].contains("resourceVersion=100"), "{requests:?}");
    watch
        .send(serde_json::json!({"type": "DELETED", "object": slice("102", &["10.0.0.1", "10.0.0.2"])}))
        .unwrap();
    match next().await {
        Event::Delete(s) => assert_eq!(s.metadata.name.as_deref(), Some("users-1")),
        other => panic!("expected Delete, got {other:?}"),
    }
}
