//! What a webhook costs a rollout: the same `up` (200 SQLite tenants, 4 waves, each
//! migration ~20 ms of SQL) with no webhook, one that answers 200, one that answers 500 and
//! one that never answers, interleaved, timed by the run's own report (`elapsed_ms`: the
//! rollout) and end to end (the command, which waits at most 2s at its end for queued
//! notices). Prints the medians and their ratios to the run without a webhook.
//!
//! `cargo bench --bench notify`; `FLEETMIG_BENCH_REPEAT` (7) and
//! `FLEETMIG_BENCH_NOTIFY_TENANTS` (200) scale it.

#[path = "common/mod.rs"]
mod common;
use common::{env_or, median};

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::Command;
use std::thread;
use std::time::Instant;

const FLEETMIG: &str = env!("CARGO_BIN_EXE_fleetmig");

/// A listener answering every request with `answer`, or never (`None`).
fn endpoint(answer: Option<&'static [u8]>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            thread::spawn(move || serve(stream, answer));
        }
    });
    format!("http://127.0.0.1:{port}/hook")
}

fn serve(mut stream: TcpStream, answer: Option<&'static [u8]>) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    loop {
        let mut length = 0;
        let mut line = String::new();
        loop {
            line.clear();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            if line == "\r\n" {
                break;
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                length = v.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        match answer {
            Some(bytes) => {
                if stream.write_all(bytes).is_err() {
                    return;
                }
            }
            None => loop {
                thread::park();
            },
        }
    }
}

fn project(dir: &Path, tenants: usize) {
    let mut fleet = String::from("defaults: { url: \"sqlite://data/{id}.db\" }\ntenants:\n");
    for i in 0..tenants {
        fleet.push_str(&format!("  - {{ id: t{i:04} }}\n"));
    }
    std::fs::write(dir.join("tenants.yaml"), fleet).unwrap();
    std::fs::create_dir_all(dir.join("migrations")).unwrap();
    std::fs::create_dir_all(dir.join("data")).unwrap();
    // Enough work per tenant that the run lasts a few seconds.
    let sql = "CREATE TABLE a (id INTEGER PRIMARY KEY, v TEXT);\n\
               WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 20000)\n\
               INSERT INTO a SELECT i, hex(randomblob(16)) FROM n;\n";
    std::fs::write(dir.join("migrations/0001_a.up.sql"), sql).unwrap();
    std::fs::write(dir.join("migrations/0001_a.down.sql"), "DROP TABLE a;\n").unwrap();
}

/// One cold `up`: the report's elapsed and the command's wall time, in ms.
fn run(dir: &Path, notify: Option<&str>) -> (f64, f64) {
    let _ = std::fs::remove_dir_all(dir.join("data"));
    std::fs::create_dir_all(dir.join("data")).unwrap();
    let mut cmd = Command::new(FLEETMIG);
    cmd.current_dir(dir).args([
        "--format",
        "json",
        "up",
        "-j",
        "4",
        "--waves",
        "1,10%,50%,100%",
        "--report",
        "run.json",
    ]);
    if let Some(url) = notify {
        cmd.args(["--notify", url]);
    }
    let started = Instant::now();
    let out = cmd.output().unwrap();
    let wall = started.elapsed().as_secs_f64() * 1000.0;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("run.json")).unwrap()).unwrap();
    (report["summary"]["elapsed_ms"].as_f64().unwrap(), wall)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let repeat = env_or("FLEETMIG_BENCH_REPEAT", 7usize);
    let dir = tempfile::tempdir().unwrap();
    project(dir.path(), env_or("FLEETMIG_BENCH_NOTIFY_TENANTS", 200usize));
    let ok = endpoint(Some(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"));
    let failing = endpoint(Some(b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\n\r\n"));
    let hanging = endpoint(None);
    let cases: [(&str, Option<&str>); 4] = [
        ("none", None),
        ("200", Some(&ok)),
        ("500", Some(&failing)),
        ("hangs", Some(&hanging)),
    ];
    let mut times: Vec<(Vec<f64>, Vec<f64>)> = vec![(Vec::new(), Vec::new()); cases.len()];
    for _ in 0..repeat {
        for (i, (_, url)) in cases.iter().enumerate() {
            let (rollout, wall) = run(dir.path(), *url);
            times[i].0.push(rollout);
            times[i].1.push(wall);
        }
    }
    let base = (median(times[0].0.clone()), median(times[0].1.clone()));
    println!("| webhook | rollout (median ms) | ratio | command (median ms) | ratio |");
    println!("|---|---:|---:|---:|---:|");
    for ((name, _), (rollout, wall)) in cases.iter().zip(times) {
        let (r, w) = (median(rollout), median(wall));
        println!("| {name} | {r:.0} | {:.3} | {w:.0} | {:.3} |", r / base.0, w / base.1);
    }
}
