//! `gw-bench-load`: open-loop HTTP/1.1 load at a fixed request rate (what `wrk2 -R` does), to
//! measure a proxy's latency *below* its ceiling, where closed-loop tools like `wrk` only show
//! latency at saturation.
//!
//! Each of C keep-alive connections sends a request every `C / rate` seconds, the connections
//! staggered by `1 / rate`, so requests are due evenly at `rate` per second. Latency
//! is counted from the moment the request was due whenever the connection was still busy with
//! its previous request then (the target's fault: no coordinated omission), and from the moment it
//! was sent otherwise (so the timer's 1 ms granularity is not blamed on the target).
//!
//! ```sh
//! gw-bench-load --url http://127.0.0.1:18600/ --rate 10000 --duration 10s --connections 64
//! ```
//! prints one line: `target=… rate=… sent=… ok=… errors=… achieved=… p50_us=… p90_us=… p99_us=… p999_us=… max_us=…`.

use anyhow::Context as _;
use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::time::Instant;

#[derive(Parser, Debug)]
#[command(about = "Open-loop HTTP/1.1 load at a fixed rate")]
struct Args {
    /// `http://HOST:PORT/PATH` (an IP address; no TLS).
    #[arg(long)]
    url: String,
    /// Requests per second, spread evenly over the connections.
    #[arg(long, default_value_t = 10_000)]
    rate: u64,
    /// How long to measure.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Load before measuring (same rate, not counted).
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    warmup: Duration,
    /// Keep-alive connections.
    #[arg(long, default_value_t = 64)]
    connections: u64,
    /// Name printed with the result.
    #[arg(long, default_value = "target")]
    name: String,
}

/// What one connection measured: latencies (µs) of good answers, and failures.
#[derive(Default)]
struct Tally {
    latencies_us: Vec<u32>,
    sent: u64,
    errors: u64,
}

fn split_url(url: &str) -> anyhow::Result<(SocketAddr, String, String)> {
    let rest = url
        .strip_prefix("http://")
        .context("--url must start with http://")?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], rest[i..].to_owned()),
        None => (rest, "/".to_owned()),
    };
    let addr = authority
        .parse()
        .with_context(|| format!("--url: {authority} is not IP:PORT"))?;
    Ok((addr, authority.to_owned(), path))
}

async fn connect(addr: SocketAddr) -> anyhow::Result<http1::SendRequest<Empty<Bytes>>> {
    let stream = TcpStream::connect(addr)
        .await
        .with_context(|| format!("connect to {addr}"))?;
    stream.set_nodelay(true)?;
    let (send, conn) = http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(send)
}

/// One `GET`: whether it got a 2xx answer read to the end.
async fn exchange(
    c: &mut http1::SendRequest<Empty<Bytes>>,
    authority: &str,
    path: &str,
) -> anyhow::Result<bool> {
    let req = hyper::Request::get(path)
        .header(hyper::header::HOST, authority)
        .body(Empty::new())?;
    let resp = c.send_request(req).await?;
    let good = resp.status().is_success();
    resp.into_body().collect().await?;
    Ok(good)
}

/// One connection: its `k`-th request is due at `start + k × interval`, until `end`.
async fn drive(
    addr: SocketAddr,
    authority: String,
    path: String,
    interval: Duration,
    (start, measure_from, end): (Instant, Instant, Instant),
) -> Tally {
    let mut tally = Tally::default();
    let mut conn = None;
    let mut k: u32 = 0;
    let mut prev_done = start;
    loop {
        let due = start + interval * k;
        if due >= end {
            return tally;
        }
        tokio::time::sleep_until(due).await;
        let sent = Instant::now();
        let began = if prev_done > due { due } else { sent };
        let counted = due >= measure_from;
        if conn.is_none() {
            conn = connect(addr).await.ok();
        }
        let ok = match conn.as_mut() {
            Some(c) => exchange(c, &authority, &path).await.unwrap_or(false),
            None => false,
        };
        if !ok {
            // A failed exchange may leave the connection unusable: start a new one.
            conn = None;
        }
        prev_done = Instant::now();
        if counted {
            tally.sent += 1;
            if ok {
                let us = prev_done.duration_since(began).as_micros();
                tally
                    .latencies_us
                    .push(u32::try_from(us).unwrap_or(u32::MAX));
            } else {
                tally.errors += 1;
            }
        }
        k += 1;
    }
}

fn percentile(sorted: &[u32], p: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(
        args.rate > 0 && args.connections > 0,
        "--rate and --connections must be > 0"
    );
    let (addr, authority, path) = split_url(&args.url)?;
    // One thread, as `wrk -t1`: pin it with taskset to keep it off the target's core.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let tallies = rt.block_on(async {
        let interval = Duration::from_secs_f64(args.connections as f64 / args.rate as f64);
        let start = Instant::now() + Duration::from_millis(50);
        let measure_from = start + args.warmup;
        let end = measure_from + args.duration;
        let tasks: Vec<_> = (0..args.connections)
            .map(|i| {
                // Connection i starts i/rate after the others, so the sends interleave evenly.
                let offset = Duration::from_secs_f64(i as f64 / args.rate as f64);
                tokio::spawn(drive(
                    addr,
                    authority.clone(),
                    path.clone(),
                    interval,
                    (start + offset, measure_from, end),
                ))
            })
            .collect();
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.unwrap_or_default());
        }
        out
    });
    let mut all: Vec<u32> = Vec::new();
    let (mut sent, mut errors) = (0, 0);
    for t in tallies {
        all.extend(t.latencies_us);
        sent += t.sent;
        errors += t.errors;
    }
    all.sort_unstable();
    println!(
        "target={} rate={} sent={} ok={} errors={} achieved={:.0} p50_us={} p90_us={} p99_us={} p999_us={} max_us={}",
        args.name,
        args.rate,
        sent,
        all.len(),
        errors,
        all.len() as f64 / args.duration.as_secs_f64(),
        percentile(&all, 0.50),
        percentile(&all, 0.90),
        percentile(&all, 0.99),
        percentile(&all, 0.999),
        all.last().copied().unwrap_or(0),
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_percentiles() {
        let (addr, auth, path) = split_url("http://127.0.0.1:18600/x?y").unwrap_or_else(|e| {
            panic!("{e}");
        });
        assert_eq!(
            (addr.port(), auth.as_str(), path.as_str()),
            (18600, "127.0.0.1:18600", "/x?y")
        );
        assert!(split_url("https://a/").is_err());
        let v: Vec<u32> = (1..=100).collect();
        assert_eq!(percentile(&v, 0.5), 51);
        assert_eq!(percentile(&v, 0.99), 99);
        assert_eq!(percentile(&[], 0.99), 0);
    }
}
