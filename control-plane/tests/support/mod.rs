//! Shared test helpers: a real HTTP webhook receiver.

#![allow(dead_code, clippy::unwrap_used)]

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

/// One request the receiver got.
#[derive(Debug, Clone)]
pub struct Hook {
    pub signature: Option<String>,
    pub body: serde_json::Value,
    pub raw: Bytes,
}

/// A webhook receiver on 127.0.0.1:0 answering with scripted statuses (then 200).
pub struct Receiver {
    pub addr: SocketAddr,
    pub hooks: mpsc::UnboundedReceiver<Hook>,
    statuses: Arc<Mutex<VecDeque<u16>>>,
}

impl Receiver {
    pub async fn start() -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, hooks) = mpsc::unbounded_channel();
        let statuses: Arc<Mutex<VecDeque<u16>>> = Arc::default();
        let st = statuses.clone();
        tokio::spawn(async move {
            loop {
                let Ok((s, _)) = listener.accept().await else {
                    return;
                };
                let tx = tx.clone();
                let st = st.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                        let tx = tx.clone();
                        let st = st.clone();
                        async move {
                            let signature = req
                                .headers()
                                .get("x-gw-signature")
                                .map(|v| v.to_str().unwrap().to_owned());
                            let raw = req.into_body().collect().await.unwrap().to_bytes();
                            let body =
                                serde_json::from_slice(&raw).unwrap_or(serde_json::Value::Null);
                            let status = st.lock().unwrap().pop_front().unwrap_or(200);
                            let _ = tx.send(Hook {
                                signature,
                                body,
                                raw,
                            });
                            let mut r = Response::new(Full::new(Bytes::from_static(b"ok")));
                            *r.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
                            Ok::<_, std::convert::Infallible>(r)
                        }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(s), svc)
                        .await;
                });
            }
        });
        Receiver {
            addr,
            hooks,
            statuses,
        }
    }

    /// The next requests answer with these statuses.
    pub fn answer_with(&self, statuses: &[u16]) {
        self.statuses.lock().unwrap().extend(statuses);
    }

    pub fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }
}

/// Object metadata with just a name and a tenant.
pub fn meta(name: &str, tenant: &str) -> Option<gw_proto::gateway::v1::ObjectMeta> {
    Some(gw_proto::gateway::v1::ObjectMeta {
        name: name.into(),
        tenant: tenant.into(),
        ..Default::default()
    })
}

/// A gRPC channel to a control plane's plaintext port.
pub async fn channel(cp: &gw_control_plane::server::ControlPlane) -> tonic::transport::Channel {
    tonic::transport::Channel::from_shared(format!("http://{}", cp.grpc_addr()))
        .unwrap()
        .connect()
        .await
        .unwrap()
}
