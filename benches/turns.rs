//! The start order of a wave (`exec::turns`) at scale: how long handing out the
//! starts of a wave takes when every tenant waits behind one capped host, against the same
//! number of tenants on hosts of their own (the baseline), in the same run.
//!
//! `cargo bench --bench turns` prints the medians and their ratio, per wave size. A ratio
//! near 1 means a start costs the same whatever stands behind a full host; before the turns
//! kept a ready set, every start scanned all waiting tenants (40,000 tenants behind one
//! host: 15.6 s against 18 ms now). Scale with `FLEETMIG_BENCH_TURNS` (`10000,40000`) and
//! `FLEETMIG_BENCH_REPEAT` (5).

#[path = "common/mod.rs"]
mod common;
use common::median;

use std::collections::{HashMap, VecDeque};
use std::time::Instant;

use fleetmig::internal::Turns;

/// Starts every tenant in turn, `cap` at a time per host, and returns the seconds it took.
async fn wave(n: usize, one_host: bool, cap: usize) -> f64 {
    let host = |i: usize| if one_host { "h".to_owned() } else { format!("h{i}") };
    let caps: HashMap<String, usize> = (0..n).map(|i| (host(i), cap)).collect();
    let turns = Turns::new(64, caps, (0..n).map(|i| (i, Some(host(i)))));
    let began = Instant::now();
    let mut running = VecDeque::new();
    for i in 0..n {
        if running.len() == cap {
            drop(running.pop_front());
        }
        let mut turn = turns.take(i).await;
        turn.started();
        running.push_back(turn);
    }
    began.elapsed().as_secs_f64()
}

fn main() {
    let sizes: Vec<usize> = std::env::var("FLEETMIG_BENCH_TURNS")
        .unwrap_or_else(|_| "10000,40000".to_owned())
        .split(',')
        .map(|s| s.trim().parse().expect("FLEETMIG_BENCH_TURNS: sizes like 10000,40000"))
        .collect();
    let repeat: usize = std::env::var("FLEETMIG_BENCH_REPEAT")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5)
        .max(1);
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    println!("| tenants | one host, cap 4 (ms) | a host each, cap 4 (ms) | ratio |");
    println!("|---:|---:|---:|---:|");
    for n in sizes {
        let (mut one, mut each) = (Vec::new(), Vec::new());
        // Alternated, so machine noise falls on both alike.
        for _ in 0..repeat {
            one.push(rt.block_on(wave(n, true, 4)));
            each.push(rt.block_on(wave(n, false, 4)));
        }
        let (one, each) = (median(one), median(each));
        println!("| {n} | {:.1} | {:.1} | {:.2} |", one * 1e3, each * 1e3, one / each);
    }
}
