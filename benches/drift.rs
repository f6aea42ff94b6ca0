//! `fleetmig drift` over PostgreSQL schema-per-tenant fleets of 1,000 and 10,000 tenants in
//! one database, timed end to end with the release binary; and `status --drift` against
//! plain `status` at 1,000.
//!
//! `cargo bench --bench drift` makes a database of its own (kept and reused on the next run
//! when `FLEETMIG_BENCH_KEEP=1`) with 10,000 schemas, each given the migrations of
//! tests/fixtures/drift/postgres (tables with serial keys, a foreign key, a unique
//! constraint, an enum, an index, a function, a trigger and a view) and its history rows
//! by generated SQL in a few sessions (no fleetmig run per tenant); 1% of tenants get an
//! extra index by hand. The reference is the scratch target's (`scratch:` in the fleet
//! file). Scale with `FLEETMIG_BENCH_DRIFT_TENANTS` (10000), `FLEETMIG_BENCH_REPEAT` (3) and
//! `FLEETMIG_BENCH_PG` (`postgres://postgres@127.0.0.1:5432`).

#[path = "common/mod.rs"]
mod common;
use common::{env_or, median};

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use sqlx::{Connection, Executor, PgConnection, Row};

const FLEETMIG: &str = env!("CARGO_BIN_EXE_fleetmig");
/// Schemas made per statement batch, and connections making them at once.
const BATCH: usize = 50;
const WRITERS: usize = 4;

fn fail(what: &str) -> ! {
    eprintln!("drift bench: {what}");
    std::process::exit(1)
}

fn schema(i: usize) -> String {
    format!("t{i:05}")
}

/// Tenants edited by hand: every hundredth.
fn edited(i: usize) -> bool {
    i % 100 == 42
}

/// The set's migrations: (version, name, checksum, up SQL), as `fleetmig history` reads them.
fn migrations(dir: &Path) -> Vec<(i64, String, String, String)> {
    let set = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/drift/postgres");
    let out = Command::new(FLEETMIG)
        .current_dir(dir)
        .arg("--migrations")
        .arg(&set)
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
            let v = m["version"].as_i64().unwrap();
            let name = m["name"].as_str().unwrap().to_owned();
            let up = std::fs::read_to_string(set.join(format!("{v:04}_{name}.up.sql"))).unwrap();
            (v, name, m["checksum"].as_str().unwrap().to_owned(), up)
        })
        .collect()
}

/// The SQL that makes tenants `range`, each at head.
fn tenants_sql(range: std::ops::Range<usize>, set: &[(i64, String, String, String)]) -> String {
    let mut sql = String::new();
    for i in range {
        let s = schema(i);
        let _ = writeln!(sql, "CREATE SCHEMA \"{s}\";\nSET search_path TO \"{s}\";");
        for (_, _, _, up) in set {
            sql.push_str(up);
            sql.push('\n');
        }
        if edited(i) {
            sql.push_str("CREATE INDEX users_email_idx ON users (email);\n");
        }
        let _ = writeln!(
            sql,
            "CREATE TABLE fleetmig_history ({});",
            fleetmig::internal::HISTORY_COLUMNS
        );
        let rows: Vec<String> = set
            .iter()
            .map(|(v, name, checksum, _)| format!("({v}, '{name}', '{checksum}', 'bench')"))
            .collect();
        let _ = writeln!(
            sql,
            "INSERT INTO fleetmig_history (version, name, checksum, run_id) VALUES {};",
            rows.join(", ")
        );
    }
    sql.push_str("RESET search_path;\n");
    sql
}

/// Makes the database, unless a kept one with `total` tenants is there already.
async fn make_fleet(server: &str, db: &str, total: usize, set: &[(i64, String, String, String)]) {
    let url = format!("{server}/{db}");
    if let Ok(mut c) = PgConnection::connect(&url).await {
        let made: Option<i64> =
            sqlx::query("SELECT count(*) FROM pg_namespace WHERE nspname LIKE 't%' AND nspname ~ '^t[0-9]{5}$'")
                .fetch_one(&mut c)
                .await
                .ok()
                .map(|r| r.get(0));
        let _ = c.close().await;
        if made == Some(total as i64) {
            eprintln!("reusing database `{db}` with {total} tenants");
            return;
        }
    }
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
                c.execute(sqlx::raw_sql(&tenants_sql(range, set))).await.unwrap();
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
    let set = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/drift/postgres");
    let mut yaml = format!(
        "hosts:\n  main: {{url: \"{server}/{db}\", max_connections: 8}}\nscratch: main\nmigrations: \"{}\"\n\
         defaults: {{host: main, schema: \"{{id}}\"}}\ntenants:\n",
        set.display()
    );
    for i in 0..n {
        let _ = writeln!(yaml, "  - {{id: {}}}", schema(i));
    }
    let path = dir.join(format!("fleet_{n}.yaml"));
    std::fs::write(&path, yaml).unwrap();
    path
}

/// Runs `fleetmig <args>` once: wall seconds and stdout. Exit 1 is expected (drift).
fn time(dir: &Path, fleet: &Path, args: &[&str], code: i32) -> (f64, Vec<u8>) {
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
    if out.status.code() != Some(code) {
        fail(&format!(
            "{args:?} exited {:?}: {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    (wall, out.stdout)
}

fn main() {
    let total: usize = env_or("FLEETMIG_BENCH_DRIFT_TENANTS", 10_000);
    let repeat: usize = env_or::<usize>("FLEETMIG_BENCH_REPEAT", 3).max(1);
    let server: String = env_or("FLEETMIG_BENCH_PG", "postgres://postgres@127.0.0.1:5432".to_owned());
    let keep = std::env::var("FLEETMIG_BENCH_KEEP").is_ok();
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    let db = format!("fm_bench_drift_{total}");
    let set = migrations(dir);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let started = Instant::now();
    rt.block_on(make_fleet(&server, &db, total, &set));
    eprintln!(
        "fleet of {total} schema-tenants ready in {:.1}s",
        started.elapsed().as_secs_f64()
    );

    let sizes: Vec<usize> = [1_000].into_iter().filter(|n| *n < total).chain([total]).collect();
    let mut table = String::from("| tenants | `drift --format json` | per tenant |\n| ---: | ---: | ---: |\n");
    for n in &sizes {
        let fleet = fleet_file(dir, &server, &db, *n);
        let (_, out) = time(dir, &fleet, &["drift", "--format", "json"], 1);
        let doc: serde_json::Value = serde_json::from_slice(&out).unwrap();
        let drifted = doc["drifted"].as_array().map_or(0, Vec::len);
        let expected = (0..*n).filter(|i| edited(*i)).count();
        if drifted != expected {
            fail(&format!("drift named {drifted} tenants of {n}, {expected} were edited"));
        }
        let samples: Vec<f64> = (0..repeat)
            .map(|_| time(dir, &fleet, &["drift", "--format", "json"], 1).0)
            .collect();
        let m = median(samples);
        let _ = writeln!(table, "| {n} | {m:.3} s | {:.3} ms |", m / *n as f64 * 1000.0);
    }
    let n = sizes[0];
    let fleet = fleet_file(dir, &server, &db, n);
    let plain = median(
        (0..repeat)
            .map(|_| time(dir, &fleet, &["status", "--format", "json"], 0).0)
            .collect(),
    );
    let with = median(
        (0..repeat)
            .map(|_| time(dir, &fleet, &["status", "--drift", "--format", "json"], 1).0)
            .collect(),
    );
    println!("\nMedians of {repeat} runs each, release binary, wall time of the whole process:\n\n{table}");
    println!(
        "`status` at {n} tenants: {plain:.3} s; `status --drift`: {with:.3} s ({:.1}x)",
        with / plain
    );
    if keep {
        println!("kept database `{db}` (reused by the next run)");
    } else {
        rt.block_on(drop_db(&server, &db));
    }
}
