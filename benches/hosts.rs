//! Mixed-host dispatch (issue 14): how close a run over hosts of different caps and speeds
//! comes to its lower bound, max(all work / `-j`, each host's work / its cap), with
//! latency-bound migrations (`pg_sleep`) so the result does not hang on this machine's
//! cores. The hosts are names in the fleet file for one PostgreSQL server, each with its
//! own `max_connections`; tenants are schemas of one database. Shapes:
//!
//! - `two`: host `a` (cap 1, 16 tenants) listed first, host `b` (cap 8, 160 tenants), `-j 8`.
//! - `three`, grouped and interleaved: `slow` (cap 1, 16 tenants), `large` (cap 8, 96
//!   tenants) and `double` (cap 4, 32 tenants whose migration sleeps twice as long), `-j 8`.
//!
//! Prints, per shape, the median wall time of the runs, the bound, and the bound's share of
//! the time (100%: as fast as the caps allow). The bound counts only the sleeps; every
//! tenant also costs a fixed time of its own (a session's turn, its schema and history
//! table made, the step's commit: WAL flushes on the server) and the command its start.
//! Both are measured in the same run, on one host capped at 1 with the sleep at 0: 1 and
//! 17 tenants, so fixed = (t17 - t1) / 16 and start = t1 - fixed; the second bound,
//! start + the same max with each tenant's work plus its fixed cost, says how close the
//! dispatch comes once that cost is counted. `FLEETMIG_BENCH_REPEAT` (3),
//! Each shape also runs without the breaker (`--host-failures 0`), interleaved: the
//! breaker's ramp (one tenant per host until one connected) must not slow healthy hosts,
//! so the median of the per-repetition ratios with / without it is printed too.
//! `FLEETMIG_BENCH_STEP` (0.2 s, one migration's sleep), `FLEETMIG_BENCH_NO_TX=1` (the
//! migration as `-- fleetmig: no-transaction`, which adds a dirty-row write and its clear,
//! two more commits a tenant) and `FLEETMIG_BENCH_PG` scale it.

#[path = "common/mod.rs"]
mod common;
use common::{env_or, median};

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use sqlx::{Connection, Executor, PgConnection};

const FLEETMIG: &str = env!("CARGO_BIN_EXE_fleetmig");

/// A host of the fleet: name, cap, tenants, and how many steps each tenant's migration
/// sleeps.
struct Host {
    name: &'static str,
    cap: usize,
    tenants: usize,
    steps: u32,
}

struct Shape {
    name: &'static str,
    hosts: Vec<Host>,
    interleaved: bool,
    concurrency: usize,
}

impl Shape {
    /// The fleet file's tenants, grouped by host in the hosts' order or interleaved.
    fn tenants(&self) -> Vec<(String, &'static str)> {
        let mut lists: Vec<Vec<(String, &'static str)>> = self
            .hosts
            .iter()
            .map(|h| (0..h.tenants).map(|i| (format!("{}{i:03}", h.name), h.name)).collect())
            .collect();
        if !self.interleaved {
            return lists.concat();
        }
        let mut out = Vec::new();
        let longest = lists.iter().map(Vec::len).max().unwrap_or(0);
        for i in 0..longest {
            for list in &mut lists {
                if let Some(t) = list.get(i) {
                    out.push(t.clone());
                }
            }
        }
        out
    }

    /// max(all work / -j, each host's work / its cap), in seconds, where a tenant's work is
    /// its sleep plus `fixed`.
    fn bound(&self, step: f64, fixed: f64) -> f64 {
        let work = |h: &Host| h.tenants as f64 * (f64::from(h.steps) * step + fixed);
        let total: f64 = self.hosts.iter().map(work).sum();
        self.hosts
            .iter()
            .map(|h| work(h) / h.cap as f64)
            .fold(total / self.concurrency as f64, f64::max)
    }
}

fn shapes() -> Vec<Shape> {
    let three = |interleaved| Shape {
        name: if interleaved {
            "three, interleaved"
        } else {
            "three, grouped"
        },
        hosts: vec![
            Host {
                name: "slow",
                cap: 1,
                tenants: 16,
                steps: 1,
            },
            Host {
                name: "large",
                cap: 8,
                tenants: 96,
                steps: 1,
            },
            Host {
                name: "double",
                cap: 4,
                tenants: 32,
                steps: 2,
            },
        ],
        interleaved,
        concurrency: 8,
    };
    vec![
        Shape {
            name: "two (issue 14's)",
            hosts: vec![
                Host {
                    name: "a",
                    cap: 1,
                    tenants: 16,
                    steps: 1,
                },
                Host {
                    name: "b",
                    cap: 8,
                    tenants: 160,
                    steps: 1,
                },
            ],
            interleaved: false,
            concurrency: 8,
        },
        three(false),
        three(true),
    ]
}

fn write_project(dir: &Path, url: &str, shape: &Shape, step: f64, no_tx: bool) {
    let mut fleet = String::from("hosts:\n");
    for h in &shape.hosts {
        fleet.push_str(&format!(
            "  {}: {{ url: \"{url}\", max_connections: {} }}\n",
            h.name, h.cap
        ));
    }
    fleet.push_str("tenants:\n");
    for (id, host) in shape.tenants() {
        fleet.push_str(&format!("  - {{ id: {id}, host: {host}, schema: \"s_{id}\" }}\n"));
    }
    std::fs::write(dir.join("tenants.yaml"), fleet).unwrap();
    let folder = dir.join("migrations");
    std::fs::create_dir_all(&folder).unwrap();
    // Tenants of `double` sleep two steps: their schema names start with `s_double`.
    let sql = format!(
        "{}SELECT pg_sleep(CASE WHEN current_schema() LIKE 's\\_double%' THEN {} ELSE {step} END);\n",
        if no_tx { "-- fleetmig: no-transaction\n" } else { "" },
        2.0 * step
    );
    std::fs::write(folder.join("0001_sleep.up.sql"), sql).unwrap();
    std::fs::write(folder.join("0001_sleep.down.sql"), "SELECT 1;\n").unwrap();
}

async fn fresh_db(server: &str, db: &str) {
    let mut c = PgConnection::connect(&format!("{server}/postgres")).await.unwrap();
    c.execute(format!("DROP DATABASE IF EXISTS \"{db}\" WITH (FORCE)").as_str())
        .await
        .unwrap();
    c.execute(format!("CREATE DATABASE \"{db}\"").as_str()).await.unwrap();
}

/// One cold run's wall time, in seconds.
fn run(dir: &Path, concurrency: usize, extra: &[&str]) -> f64 {
    let started = Instant::now();
    let out = Command::new(FLEETMIG)
        .current_dir(dir)
        .args(["up", "-j", &concurrency.to_string()])
        .args(extra)
        .output()
        .unwrap();
    let took = started.elapsed().as_secs_f64();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    took
}

/// The fixed cost of one tenant and the command's start, in seconds: runs of 1 and 17
/// tenants on one host capped at 1 with no sleep, medians of `repeat`.
async fn fixed_costs(server: &str, db: &str, repeat: usize, no_tx: bool) -> (f64, f64) {
    let probe = |tenants| Shape {
        name: "probe",
        hosts: vec![Host {
            name: "p",
            cap: 1,
            tenants,
            steps: 1,
        }],
        interleaved: false,
        concurrency: 8,
    };
    let (mut one, mut many) = (Vec::new(), Vec::new());
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    write_project(a.path(), &format!("{server}/{db}"), &probe(1), 0.0, no_tx);
    write_project(b.path(), &format!("{server}/{db}"), &probe(17), 0.0, no_tx);
    for _ in 0..repeat {
        fresh_db(server, db).await;
        one.push(run(a.path(), 8, &[]));
        fresh_db(server, db).await;
        many.push(run(b.path(), 8, &[]));
    }
    let (one, many) = (median(one), median(many));
    let fixed = ((many - one) / 16.0).max(0.0);
    (fixed, (one - fixed).max(0.0))
}

#[tokio::main]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let server: String = env_or("FLEETMIG_BENCH_PG", "postgres://postgres@127.0.0.1:5432".to_owned());
    let repeat = env_or("FLEETMIG_BENCH_REPEAT", 3usize);
    let step = env_or("FLEETMIG_BENCH_STEP", 0.2f64);
    let no_tx = env_or("FLEETMIG_BENCH_NO_TX", 0u8) == 1;
    let db = format!("fm_bench_hosts_{}", std::process::id());
    let (fixed, start) = fixed_costs(&server, &db, repeat, no_tx).await;
    println!(
        "fixed cost a tenant {:.1} ms, the command's start {:.0} ms",
        1000.0 * fixed,
        1000.0 * start
    );
    println!(
        "| shape | median wall (s) | bound (s) | bound / wall | bound with fixed costs (s) | its share | \
         without the breaker (s) | with / without (median ratio) |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for shape in shapes() {
        let dir = tempfile::tempdir().unwrap();
        write_project(dir.path(), &format!("{server}/{db}"), &shape, step, no_tx);
        let (mut times, mut without) = (Vec::new(), Vec::new());
        for k in 0..repeat {
            // Each goes first in turn, so the machine's drift does not favour one.
            for with in [k % 2 == 0, k % 2 == 1] {
                fresh_db(&server, &db).await;
                match with {
                    true => times.push(run(dir.path(), shape.concurrency, &[])),
                    false => without.push(run(dir.path(), shape.concurrency, &["--host-failures", "0"])),
                }
            }
        }
        let ratio = median(times.iter().zip(&without).map(|(a, b)| a / b).collect());
        let (wall, bound, off) = (median(times), shape.bound(step, 0.0), median(without));
        let full = start + shape.bound(step, fixed);
        println!(
            "| {} | {wall:.2} | {bound:.2} | {:.0}% | {full:.2} | {:.0}% | {off:.2} | {ratio:.3} |",
            shape.name,
            100.0 * bound / wall,
            100.0 * full / wall
        );
    }
    let mut c = PgConnection::connect(&format!("{server}/postgres")).await.unwrap();
    c.execute(format!("DROP DATABASE IF EXISTS \"{db}\" WITH (FORCE)").as_str())
        .await
        .unwrap();
}
