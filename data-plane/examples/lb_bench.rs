//! Nanoseconds per pick for each strategy over 3, 16 and 256 endpoints (all healthy):
//! `cargo run --release -p gw-proxy --example lb_bench`.

#![allow(clippy::unwrap_used)]

use gw_proto::model::LbPolicy;
use gw_proxy::endpoint::Endpoint;
use gw_proxy::lb::{self, hash_key, PickContext};
use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

fn main() {
    let policies = [
        LbPolicy::RoundRobin,
        LbPolicy::Weighted,
        LbPolicy::LeastConn,
        LbPolicy::IpHash,
        LbPolicy::ResponseTime,
        LbPolicy::Availability,
    ];
    println!(
        "{:<14} {:>8} {:>8} {:>8}",
        "strategy", "n=3", "n=16", "n=256"
    );
    for p in policies {
        let mut row = format!("{:<14}", p.as_str());
        for n in [3usize, 16, 256] {
            let eps: Vec<Arc<Endpoint>> = (0..n)
                .map(|i| {
                    Arc::new(Endpoint::new(
                        format!("10.0.{}.{}:80", i / 256, i % 256),
                        1 + (i % 3) as u32,
                    ))
                })
                .collect();
            let b = lb::build(p, &eps);
            let picks = 2_000_000u64;
            let t = Instant::now();
            for i in 0..picks {
                let ctx = PickContext {
                    hash: (p == LbPolicy::IpHash).then(|| hash_key(&i.to_le_bytes())),
                };
                black_box(b.pick(&eps, ctx));
            }
            row += &format!(" {:>6.1}ns", t.elapsed().as_nanos() as f64 / picks as f64);
        }
        println!("{row}");
    }
}
