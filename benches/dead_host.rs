//! What dead hosts cost a rollout with the breaker (`--host-failures`): the same cold `up`
//! of healthy SQLite tenants, alone and beside two dead PostgreSQL hosts, one that refuses
//! connections (127.0.0.1:1) and one that accepts them and never answers (a listener in
//! the harness), each with as many tenants, and the same again without the breaker
//! (`--host-failures 0`). Timed by the run's own report (`elapsed_ms`), interleaved; prints
//! the medians and the ratios of the runs with the dead hosts to the run without them.
//!
//! `cargo bench --profile dev --bench dead_host`; `FLEETMIG_BENCH_REPEAT` (5),
//! `FLEETMIG_BENCH_HEALTHY` (200 tenants) and `FLEETMIG_BENCH_DEAD` (50 tenants per dead
//! host) scale it. Both runs use `-j 8 --connect-timeout 1s --retry-for 1s`.

#[path = "common/mod.rs"]
mod common;
use common::{env_or, median};

use std::net::TcpListener;
use std::path::Path;
use std::process::Command;
use std::thread;

const FLEETMIG: &str = env!("CARGO_BIN_EXE_fleetmig");

/// A listener that accepts every connection and never answers, holding the sockets.
fn silent() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().flatten() {
            held.push(stream);
        }
    });
    port
}

fn project(dir: &Path, healthy: usize, dead: usize, silent_port: u16) {
    let mut fleet = String::from("tenants:\n");
    for i in 0..healthy {
        fleet.push_str(&format!(
            "  - {{ id: t{i:04}, url: \"sqlite://data/t{i:04}.db\", labels: {{ dead: \"no\" }} }}\n"
        ));
    }
    for i in 0..dead {
        fleet.push_str(&format!(
            "  - {{ id: r{i:04}, url: \"postgres://u@127.0.0.1:1/r{i:04}\", labels: {{ dead: \"yes\" }} }}\n"
        ));
        fleet.push_str(&format!(
            "  - {{ id: s{i:04}, url: \"postgres://u@127.0.0.1:{silent_port}/s{i:04}\", labels: {{ dead: \"yes\" }} }}\n"
        ));
    }
    std::fs::write(dir.join("tenants.yaml"), fleet).unwrap();
    std::fs::create_dir_all(dir.join("migrations")).unwrap();
    // Enough work per tenant that the healthy run lasts a few seconds.
    let sql = "CREATE TABLE a (id INTEGER PRIMARY KEY, v TEXT);\n\
               WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 20000)\n\
               INSERT INTO a SELECT i, hex(randomblob(16)) FROM n;\n";
    std::fs::write(dir.join("migrations/0001_a.up.sql"), sql).unwrap();
}

/// The runs compared.
#[derive(Clone, Copy, PartialEq)]
enum Case {
    Healthy,
    Breaker,
    NoBreaker,
}

/// One cold `up`: the report's elapsed, in ms.
fn run(dir: &Path, case: Case) -> f64 {
    let _ = std::fs::remove_dir_all(dir.join("data"));
    let _ = std::fs::remove_file(dir.join("tenants.ledger.db"));
    std::fs::create_dir_all(dir.join("data")).unwrap();
    let mut cmd = Command::new(FLEETMIG);
    cmd.current_dir(dir).args([
        "--format",
        "json",
        "--connect-timeout",
        "1s",
        "up",
        "-j",
        "8",
        "--retry-for",
        "1s",
        "--max-skipped",
        "all",
        "--report",
        "run.json",
    ]);
    match case {
        Case::Healthy => cmd.args(["--select", "dead=no"]),
        Case::Breaker => &mut cmd,
        Case::NoBreaker => cmd.args(["--host-failures", "0"]),
    };
    let out = cmd.output().unwrap();
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("run.json")).unwrap()).unwrap();
    let summary = &report["summary"];
    let healthy = summary["succeeded"].as_u64().unwrap();
    assert!(healthy > 0, "{}", String::from_utf8_lossy(&out.stderr));
    match case {
        Case::Healthy => assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr)),
        Case::Breaker => assert_eq!(report["hosts_cut_off"].as_array().map(Vec::len), Some(2), "{report}"),
        Case::NoBreaker => assert!(report.get("hosts_cut_off").is_none(), "{report}"),
    }
    summary["elapsed_ms"].as_f64().unwrap()
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let repeat = env_or("FLEETMIG_BENCH_REPEAT", 5usize);
    let healthy = env_or("FLEETMIG_BENCH_HEALTHY", 200usize);
    let dead = env_or("FLEETMIG_BENCH_DEAD", 50usize);
    let dir = tempfile::tempdir().unwrap();
    project(dir.path(), healthy, dead, silent());
    let cases = [Case::Healthy, Case::Breaker, Case::NoBreaker];
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); cases.len()];
    for k in 0..repeat {
        // Each goes first in turn, so the machine's drift does not favour one.
        for j in 0..cases.len() {
            let i = (j + k) % cases.len();
            times[i].push(run(dir.path(), cases[i]));
        }
    }
    let ratios = |i: usize| median(times[i].iter().zip(&times[0]).map(|(b, a)| b / a).collect());
    let medians: Vec<f64> = times.iter().map(|t| median(t.clone())).collect();
    println!("| run | median ms | ratio to healthy alone (median of per-repetition ratios) |");
    println!("|---|---:|---:|");
    println!("| {healthy} healthy tenants alone | {:.0} | 1.000 |", medians[0]);
    println!(
        "| the same beside 2 dead hosts x {dead} tenants, breaker (`--host-failures 3`) | {:.0} | {:.3} ({:.3}) |",
        medians[1],
        medians[1] / medians[0],
        ratios(1)
    );
    println!(
        "| the same, no breaker (`--host-failures 0`) | {:.0} | {:.3} ({:.3}) |",
        medians[2],
        medians[2] / medians[0],
        ratios(2)
    );
}
