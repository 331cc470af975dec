//! Two fully decoding probe clients, one Delta and one SotW, that count the bytes each change
//! costs them.

use gw_e2e::xds_client::{self, types, DeltaClient, SotwClient};
use prost::Message;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Bytes and responses received.
#[derive(Debug, Default)]
pub struct Counters {
    pub bytes: AtomicU64,
    pub responses: AtomicU64,
}

impl Counters {
    pub fn get(&self) -> (u64, u64) {
        (
            self.bytes.load(Ordering::Acquire),
            self.responses.load(Ordering::Acquire),
        )
    }
}

const ALL: [(&str, &[&str]); 4] = [
    (types::CLUSTER, &[]),
    (types::ENDPOINTS, &["*"]),
    (types::LISTENER, &[]),
    (types::ROUTE, &["ingress"]),
];

/// Starts the Delta probe.
pub async fn delta(addr: SocketAddr) -> anyhow::Result<Arc<Counters>> {
    let node = xds_client::node("probe-delta", "ingress");
    let mut c = DeltaClient::connect(
        addr,
        xds_client::delta_subscribe(Some(node), ALL[0].0, ALL[0].1),
    )
    .await?;
    for (t, names) in &ALL[1..] {
        c.send(xds_client::delta_subscribe(None, t, names)).await?;
    }
    let counters = Arc::new(Counters::default());
    let out = counters.clone();
    tokio::spawn(async move {
        while let Ok(r) = c.recv(Duration::from_secs(3600)).await {
            counters
                .bytes
                .fetch_add(r.encoded_len() as u64, Ordering::AcqRel);
            counters.responses.fetch_add(1, Ordering::AcqRel);
            if c.ack(&r).await.is_err() {
                return;
            }
        }
    });
    Ok(out)
}

/// Starts the SotW probe.
pub async fn sotw(addr: SocketAddr) -> anyhow::Result<Arc<Counters>> {
    let node = xds_client::node("probe-sotw", "ingress");
    let mut c = SotwClient::connect(
        addr,
        xds_client::sotw_subscribe(Some(node), ALL[0].0, ALL[0].1),
    )
    .await?;
    for (t, names) in &ALL[1..] {
        c.send(xds_client::sotw_subscribe(None, t, names)).await?;
    }
    let counters = Arc::new(Counters::default());
    let out = counters.clone();
    tokio::spawn(async move {
        while let Ok(r) = c.recv(Duration::from_secs(3600)).await {
            counters
                .bytes
                .fetch_add(r.encoded_len() as u64, Ordering::AcqRel);
            counters.responses.fetch_add(1, Ordering::AcqRel);
            let names = ALL
                .iter()
                .find(|(t, _)| *t == r.type_url)
                .map(|(_, n)| *n)
                .unwrap_or_default();
            if c.answer(&r, names, &r.version_info, None).await.is_err() {
                return;
            }
        }
    });
    Ok(out)
}
