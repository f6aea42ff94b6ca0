//! `fleetmig status` over PostgreSQL schema-per-tenant fleets of 1,000, 5,000 and 10,000
//! tenants at mixed versions, timed end to end with the release binary.
//!
//! `cargo bench --bench status` makes a database of its own with 10,000 schemas, each with a
//! `fleetmig_history` table written directly in SQL (no migration runs): 85% of tenants at
//! head (10), 8% at 9, 4% at 7, 1% at 3, 1% without a history table, 1% drifted (an edited
//! migration 1). Then, per fleet size, it runs `status --format json`, `status` (text, every
//! tenant listed) and `status --lagging`, and prints the medians as a Markdown table.
//! Scale with `FLEETMIG_BENCH_STATUS_TENANTS` (10000), `FLEETMIG_BENCH_REPEAT` (5) and
//! `FLEETMIG_BENCH_PG` (`postgres://postgres@127.0.0.1:5432`); `FLEETMIG_BENCH_KEEP=1` keeps
//! the database and prints the work folder.

#[path = "common/mod.rs"]
mod common;
use common::{env_or, median};

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use sqlx::{Connection, Executor, PgConnection};

const FLEETMIG: &str = env!("CARGO_BIN_EXE_fleetmig");
const MIGRATIONS: i64 = 10;
/// Schemas made per statement batch, and connections making them at once.
const BATCH: usize = 100;
const WRITERS: usize = 4;

fn fail(what: &str) -> ! {
    eprintln!("status bench: {what}");
    std::process::exit(1)
}

/// The version tenant `i` is at: `None` for no history table; drifted ones are at head.
fn version_of(i: usize) -> Option<i64> {
    match i % 100 {
        0..=84 | 99 => Some(MIGRATIONS),
        85..=92 => Some(MIGRATIONS - 1),
        93..=96 => Some(MIGRATIONS - 3),
        97 => Some(3),
        _ => None,
    }
}

fn schema(i: usize) -> String {
    format!("t{i:05}")
}

/// Writes the migrations and returns each one's checksum, as `fleetmig history` reports it.
fn migrations(dir: &Path) -> Vec<(i64, String, String)> {
    let folder = dir.join("migrations");
    std::fs::create_dir_all(&folder).unwrap();
    for v in 1..=MIGRATIONS {
        std::fs::write(
            folder.join(format!("{v:04}_step_{v}.up.sql")),
            format!("CREATE TABLE step_{v} (id BIGINT PRIMARY KEY, note TEXT);\n"),
        )
        .unwrap();
    }
    let out = Command::new(FLEETMIG)
        .current_dir(dir)
        .args(["history", "--format", "json"])
        .output()
        .unwrap();
    if !out.status.success() {
        fail(&format!("history: {}", String::from_utf8_lossy(&out.stderr)));
    }
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    doc["migrations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["version"].as_i64().unwrap(),
                m["name"].as_str().unwrap().to_owned(),
                m["checksum"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// The SQL that makes tenants `range`.
fn tenants_sql(range: std::ops::Range<usize>, history: &[(i64, String, String)]) -> String {
    let mut sql = String::new();
    for i in range {
        let s = schema(i);
        let _ = writeln!(sql, "CREATE SCHEMA \"{s}\";");
        let Some(at) = version_of(i) else { continue };
        let _ = writeln!(
            sql,
            "CREATE TABLE \"{s}\".fleetmig_history ({});",
            fleetmig::internal::HISTORY_COLUMNS
        );
        let rows: Vec<String> = history
            .iter()
            .filter(|(v, _, _)| *v <= at)
            .map(|(v, name, checksum)| {
                let checksum = if i % 100 == 99 && *v == 1 { "edited" } else { checksum };
                format!("({v}, '{name}', '{checksum}', 'bench')")
            })
            .collect();
        let _ = writeln!(
            sql,
            "INSERT INTO \"{s}\".fleetmig_history (version, name, checksum, run_id) VALUES {};",
            rows.join(", ")
        );
    }
    sql
}

async fn make_fleet(server: &str, db: &str, total: usize, history: &[(i64, String, String)]) {
    let mut admin = PgConnection::connect(&format!("{server}/postgres"))
        .await
        .unwrap_or_else(|e| fail(&format!("PostgreSQL at {server}: {e}")));
    admin
        .execute(format!("DROP DATABASE IF EXISTS \"{db}\" WITH (FORCE)").as_str())
        .await
        .unwrap();
    admin
        .execute(format!("CREATE DATABASE \"{db}\"").as_str())
        .await
        .unwrap();
    admin.close().await.unwrap();
    let url = format!("{server}/{db}");
    let batches: Vec<std::ops::Range<usize>> = (0..total)
        .step_by(BATCH)
        .map(|start| start..(start + BATCH).min(total))
        .collect();
    let chunk = batches.len().div_ceil(WRITERS).max(1);
    let writers = batches.chunks(chunk).map(|mine| {
        let url = url.clone();
        let mine = mine.to_vec();
        async move {
            let mut c = PgConnection::connect(&url).await.unwrap();
            for range in mine {
                // One simple query: one implicit transaction per batch.
                c.execute(sqlx::raw_sql(&tenants_sql(range, history))).await.unwrap();
            }
            c.close().await.unwrap();
        }
    });
    futures::future::join_all(writers).await;
    let mut c = PgConnection::connect(&url).await.unwrap();
    c.execute("VACUUM ANALYZE").await.unwrap();
    c.close().await.unwrap();
}

async fn drop_db(server: &str, db: &str) {
    if let Ok(mut admin) = PgConnection::connect(&format!("{server}/postgres")).await {
        let _ = admin
            .execute(format!("DROP DATABASE IF EXISTS \"{db}\" WITH (FORCE)").as_str())
            .await;
        let _ = admin.close().await;
    }
}

fn fleet_file(dir: &Path, server: &str, db: &str, n: usize) -> PathBuf {
    let mut yaml = format!(
        "hosts:\n  main: {{url: \"{server}/{db}\", max_connections: 8}}\ndefaults: {{host: main, schema: \"{{id}}\"}}\ntenants:\n"
    );
    for i in 0..n {
        let _ = writeln!(yaml, "  - {{id: {}}}", schema(i));
    }
    let path = dir.join(format!("fleet_{n}.yaml"));
    std::fs::write(&path, yaml).unwrap();
    path
}

/// Runs `fleetmig <args>` once: wall seconds and stdout. Exit 1 is expected (tenants lag).
fn time(dir: &Path, fleet: &Path, args: &[&str]) -> (f64, Vec<u8>) {
    let started = Instant::now();
    let out = Command::new(FLEETMIG)
        .current_dir(dir)
        .arg("--fleet")
        .arg(fleet)
        .args(args)
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let wall = started.elapsed().as_secs_f64();
    if out.status.code() != Some(1) {
        fail(&format!(
            "{args:?} exited {:?}: {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    (wall, out.stdout)
}

fn main() {
    // `cargo bench` passes `--bench`; any other argument (a filter) is ignored.
    let total: usize = env_or("FLEETMIG_BENCH_STATUS_TENANTS", 10_000);
    let repeat: usize = env_or::<usize>("FLEETMIG_BENCH_REPEAT", 5).max(1);
    let server: String = env_or("FLEETMIG_BENCH_PG", "postgres://postgres@127.0.0.1:5432".to_owned());
    let keep = std::env::var("FLEETMIG_BENCH_KEEP").is_ok();
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    let db = format!("fm_bench_status_{}", std::process::id());
    let history = migrations(dir);
    let rt = tokio::runtime::Runtime::new().unwrap();

    let started = Instant::now();
    rt.block_on(make_fleet(&server, &db, total, &history));
    eprintln!("made {total} schema-tenants in {:.1}s", started.elapsed().as_secs_f64());

    let sizes: Vec<usize> = [1_000, 5_000, 10_000]
        .into_iter()
        .filter(|n| *n < total)
        .chain([total])
        .collect();
    let mut table = String::from(
        "| tenants | `status --format json` | `status` (text) | `status --lagging` | json per 1,000 tenants |\n\
         | ---: | ---: | ---: | ---: | ---: |\n",
    );
    for n in sizes {
        let fleet = fleet_file(dir, &server, &db, n);
        let (_, out) = time(dir, &fleet, &["status", "--format", "json"]);
        let doc: serde_json::Value = serde_json::from_slice(&out).unwrap();
        let listed = doc["tenants"].as_array().map_or(0, Vec::len);
        if listed != n {
            fail(&format!("status listed {listed} of {n} tenants"));
        }
        eprintln!("{n} tenants: counts {} histogram {}", doc["counts"], doc["histogram"]);
        let mut samples: [Vec<f64>; 3] = Default::default();
        for _ in 0..repeat {
            for (k, args) in [
                &["status", "--format", "json"][..],
                &["status"][..],
                &["status", "--lagging"][..],
            ]
            .into_iter()
            .enumerate()
            {
                samples[k].push(time(dir, &fleet, args).0);
            }
        }
        let [json, text, lagging] = samples.map(median);
        let _ = writeln!(
            table,
            "| {n} | {json:.3} s | {text:.3} s | {lagging:.3} s | {:.3} s |",
            json / n as f64 * 1000.0
        );
    }
    println!("\nMedians of {repeat} runs each, release binary, wall time of the whole process:\n\n{table}");
    if keep {
        println!("kept database `{db}` and folder {}", work.keep().display());
    } else {
        rt.block_on(drop_db(&server, &db));
    }
}
