//! `gw-demo-upstream`: a tiny HTTP service for trying gw locally. Answers every request with
//! its name and port (and `/health` with 200), so you can watch gw balance and fail over.
//!
//! `gw-demo-upstream --listen 127.0.0.1:18081 --name users-1`

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::net::SocketAddr;

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let mut listen: SocketAddr = "127.0.0.1:18081".parse()?;
    let mut name = String::from("demo");
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--listen" => listen = args.next().unwrap_or_default().parse()?,
            "--name" => name = args.next().unwrap_or_default(),
            other => anyhow::bail!("unknown argument {other:?} (use --listen ADDR --name NAME)"),
        }
    }
    let listener = tokio::net::TcpListener::bind(listen).await?;
    println!("gw-demo-upstream {name} on {}", listener.local_addr()?);
    loop {
        let (s, _) = listener.accept().await?;
        let name = name.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let body = format!("{name} ({listen}) {} {}\n", req.method(), req.uri().path());
                async move {
                    Ok::<_, std::convert::Infallible>(
                        Response::builder()
                            .header("x-upstream", listen.to_string())
                            .body(Full::new(Bytes::from(body)))
                            .unwrap_or_default(),
                    )
                }
            });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(s), svc)
                .await;
        });
    }
}
