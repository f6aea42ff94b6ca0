//! Scale: time per tenant at 1k, 10k and 100k tenants, so growth is visible, and peak memory.
//!
//! `cargo bench --bench scale` measures, with the benchmarked binary, wall time and peak RSS
//! (GNU time's `%M`) of:
//! - `plan --format json` over a SQLite fleet whose files do not exist yet: loading the
//!   fleet file, selecting, planning every tenant (each a `stat`, no database opened);
//! - the same with the tenants read from a SQLite registry (`discover:`);
//! - a no-op `up -j 8` over SQLite tenants already at head (one template file, written by
//!   fleetmig and vacuumed to 512-byte pages, copied once per tenant);
//! - `status --format json` and a no-op `up -j 8` over PostgreSQL schema-tenants at head in
//!   one database, their history tables written directly in SQL as `benches/status.rs` does;
//!   and the server's floor for both: the SQL of fleetmig's survey (one catalog query, then
//!   the history tables in UNION ALLs of 100) run by 8 psql sessions side by side.
//!
//! Medians of `FLEETMIG_BENCH_REPEAT` (3) runs. Sizes: `FLEETMIG_BENCH_SCALE_SIZES`
//! (`1000,10000,100000`, SQLite) and `FLEETMIG_BENCH_SCALE_PG` (`1000,10000`; empty to skip
//! PostgreSQL), `FLEETMIG_BENCH_PG` (`postgres://postgres@127.0.0.1:5432`).
//! `FLEETMIG_BENCH_KEEP=1` keeps the work folder and database. Linux only: `/usr/bin/time`.

#[path = "common/mod.rs"]
mod common;
use common::env_or;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use sqlx::{Connection, Executor, PgConnection, SqliteConnection};

const FLEETMIG: &str = env!("CARGO_BIN_EXE_fleetmig");
const GNU_TIME: &str = "/usr/bin/time";
const MIGRATIONS: i64 = 6;
/// Schemas made per statement batch, and connections making them at once.
const BATCH: usize = 20;
const WRITERS: usize = 4;

fn sizes(name: &str, default: &str) -> Vec<usize> {
    std::env::var(name)
        .unwrap_or_else(|_| default.to_owned())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect()
}

fn fail(what: &str) -> ! {
    eprintln!("scale bench: {what}");
    std::process::exit(1)
}

fn id(i: usize) -> String {
    format!("t{i:06}")
}

/// One measurement: wall seconds and peak RSS in kB.
#[derive(Clone, Copy)]
struct Sample {
    wall: f64,
    rss_kb: u64,
}

/// Runs `fleetmig <args>` under GNU time in `dir`, its output to a file; exit 0 or 1.
fn run(dir: &Path, args: &[&str]) -> Sample {
    let time_file = dir.join("time.out");
    let log = dir.join("fleetmig.log");
    let out = std::fs::File::create(&log).unwrap();
    let status = Command::new(GNU_TIME)
        .args(["-f", "%e %M", "-o"])
        .arg(&time_file)
        .arg(FLEETMIG)
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .status()
        .unwrap();
    if !matches!(status.code(), Some(0 | 1)) {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let tail: String = text.lines().rev().take(20).collect::<Vec<_>>().join("\n");
        fail(&format!("{args:?} exited {:?}: {tail}", status.code()));
    }
    let text = std::fs::read_to_string(&time_file).unwrap();
    let last = text.lines().last().unwrap_or_default();
    let mut parts = last.split_whitespace();
    let wall = parts.next().and_then(|v| v.parse().ok()).unwrap_or(f64::NAN);
    let rss_kb = parts.next().and_then(|v| v.parse().ok()).unwrap_or(0);
    Sample { wall, rss_kb }
}

fn median(mut v: Vec<Sample>) -> Sample {
    v.sort_by(|a, b| a.wall.total_cmp(&b.wall));
    let wall = v[v.len() / 2].wall;
    let rss_kb = v.iter().map(|s| s.rss_kb).max().unwrap_or(0);
    Sample { wall, rss_kb }
}

fn repeat(n: usize, dir: &Path, args: &[&str]) -> Sample {
    median((0..n).map(|_| run(dir, args)).collect())
}

/// Writes the migrations (valid SQL for both engines) and returns each one's version, name
/// and checksum, as `fleetmig history` reports them.
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

fn fleet_file(dir: &Path, name: &str, header: &str, n: usize) -> String {
    let mut yaml = format!("{header}tenants:\n");
    for i in 0..n {
        let _ = writeln!(yaml, "  - {{id: {}}}", id(i));
    }
    let file = format!("{name}_{n}.yaml");
    std::fs::write(dir.join(&file), yaml).unwrap();
    file
}

/// A SQLite registry of `n` tenants (`tenants (n, id)`), for `discover:`.
async fn registry(dir: &Path, n: usize) {
    let path = dir.join("registry.db");
    let mut c = SqliteConnection::connect(&format!("sqlite://{}?mode=rwc", path.display()))
        .await
        .unwrap();
    c.execute("CREATE TABLE tenants (n INTEGER PRIMARY KEY, id TEXT NOT NULL)")
        .await
        .unwrap();
    let mut sql = String::from("BEGIN;\n");
    for i in 0..n {
        let _ = writeln!(sql, "INSERT INTO tenants VALUES ({i}, '{}');", id(i));
    }
    sql.push_str("COMMIT;\n");
    c.execute(sqlx::raw_sql(&sql)).await.unwrap();
    c.close().await.unwrap();
}

/// A fleet file whose `n` tenants come from the registry, their files absent.
fn discover_file(dir: &Path, n: usize) -> String {
    let yaml = format!(
        "defaults: {{url: \"sqlite://absent/{{id}}.db\"}}\n\
         discover:\n  url: \"sqlite://registry.db\"\n  query: \"SELECT id FROM tenants WHERE n < {n} ORDER BY n\"\n"
    );
    let file = format!("discover_{n}.yaml");
    std::fs::write(dir.join(&file), yaml).unwrap();
    file
}

/// Writes one SQLite tenant at head with fleetmig, shrinks it, and copies it for `n` tenants.
async fn sqlite_tenants(dir: &Path, n: usize) {
    let make = dir.join("template");
    std::fs::create_dir_all(&make).unwrap();
    std::fs::create_dir_all(make.join("migrations")).unwrap();
    for e in std::fs::read_dir(dir.join("migrations")).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), make.join("migrations").join(e.file_name())).unwrap();
    }
    let fleet = fleet_file(&make, "one", "defaults: {url: \"sqlite://data/{id}.db\"}\n", 1);
    run(&make, &["--fleet", &fleet, "up"]);
    let template = make.join("data").join(format!("{}.db", id(0)));
    let mut c = SqliteConnection::connect(&format!("sqlite://{}", template.display()))
        .await
        .unwrap();
    c.execute("PRAGMA journal_mode = DELETE").await.unwrap();
    c.execute("PRAGMA page_size = 512").await.unwrap();
    c.execute("VACUUM").await.unwrap();
    c.close().await.unwrap();
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    for i in 0..n {
        std::fs::copy(&template, data.join(format!("{}.db", id(i)))).unwrap();
    }
}

/// The SQL that makes schema-tenants `range`, each at head: its history table only (the
/// migrations' own tables would take minutes to make and are not read by a no-op).
fn tenants_sql(range: std::ops::Range<usize>, history: &[(i64, String, String)]) -> String {
    let rows: Vec<String> = history
        .iter()
        .map(|(v, name, checksum)| format!("({v}, '{name}', '{checksum}', 'bench')"))
        .collect();
    let mut sql = String::new();
    for i in range {
        let s = id(i);
        let _ = writeln!(sql, "CREATE SCHEMA \"{s}\";");
        let _ = writeln!(
            sql,
            "CREATE TABLE \"{s}\".fleetmig_history ({});",
            fleetmig::internal::HISTORY_COLUMNS
        );
        let _ = writeln!(
            sql,
            "INSERT INTO \"{s}\".fleetmig_history (version, name, checksum, run_id) VALUES {};",
            rows.join(", ")
        );
    }
    sql
}

async fn admin(server: &str, sql: &str) {
    let mut c = PgConnection::connect(&format!("{server}/postgres"))
        .await
        .unwrap_or_else(|e| fail(&format!("PostgreSQL at {server}: {e}")));
    c.execute(sql).await.unwrap();
    c.close().await.unwrap();
}

async fn pg_tenants(server: &str, db: &str, total: usize, history: &[(i64, String, String)]) {
    admin(server, &format!("DROP DATABASE IF EXISTS \"{db}\" WITH (FORCE)")).await;
    admin(server, &format!("CREATE DATABASE \"{db}\"")).await;
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

/// Rows of the table: what was measured, tenants, and the sample.
type Row = (String, usize, Sample);

fn table(rows: &[Row]) -> String {
    let mut out = String::from(
        "| measurement | tenants | wall (median) | per tenant | per tenant vs smallest | peak RSS |\n\
         | --- | ---: | ---: | ---: | ---: | ---: |\n",
    );
    let mut first: std::collections::HashMap<&str, f64> = std::collections::HashMap::new();
    for (what, n, s) in rows {
        let per = s.wall / *n as f64;
        let base = *first.entry(what.as_str()).or_insert(per);
        let _ = writeln!(
            out,
            "| {what} | {n} | {:.3} s | {:.1} µs | {:.2}x | {:.1} MB |",
            s.wall,
            per * 1e6,
            per / base,
            s.rss_kb as f64 / 1024.0
        );
    }
    out
}

fn sqlite_part(dir: &Path, counts: &[usize], repeat_n: usize, rows: &mut Vec<Row>) {
    let Some(&max) = counts.iter().max() else { return };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let started = std::time::Instant::now();
    rt.block_on(sqlite_tenants(dir, max));
    eprintln!("made {max} SQLite tenants in {:.1}s", started.elapsed().as_secs_f64());
    for &n in counts {
        let absent = fleet_file(dir, "absent", "defaults: {url: \"sqlite://absent/{id}.db\"}\n", n);
        let s = repeat(repeat_n, dir, &["--fleet", &absent, "plan", "--format", "json"]);
        eprintln!("plan, {n} SQLite tenants (no files): {:.3} s", s.wall);
        rows.push(("`plan --format json`, SQLite, no files".into(), n, s));
    }
    rt.block_on(registry(dir, max));
    for &n in counts {
        let discover = discover_file(dir, n);
        let s = repeat(repeat_n, dir, &["--fleet", &discover, "plan", "--format", "json"]);
        eprintln!("plan, {n} SQLite tenants from a registry (no files): {:.3} s", s.wall);
        rows.push((
            "`plan --format json`, `discover:` from a SQLite registry, no files".into(),
            n,
            s,
        ));
    }
    for &n in counts {
        let fleet = fleet_file(dir, "sqlite", "defaults: {url: \"sqlite://data/{id}.db\"}\n", n);
        let s = repeat(repeat_n, dir, &["--fleet", &fleet, "up", "-j", "8"]);
        eprintln!("no-op up, {n} SQLite tenants: {:.3} s, {} kB", s.wall, s.rss_kb);
        rows.push(("no-op `up -j 8`, SQLite files".into(), n, s));
    }
}

/// Sessions of the psql floor, as many as the fleet's host allows fleetmig.
const FLOOR_SESSIONS: usize = 8;
/// Tables per statement in the floor, as fleetmig's survey reads them.
const FLOOR_BATCH: usize = 100;

/// The server's floor for a survey of `n` schema-tenants: the SQL fleetmig's survey sends
/// (the catalog query for the schemas with a history table, then their rows in UNION ALLs
/// of `FLOOR_BATCH` tables), written for `FLOOR_SESSIONS` psql sessions side by side.
fn survey_floor(dir: &Path, n: usize) -> Vec<PathBuf> {
    let ids: Vec<String> = (0..n).map(id).collect();
    let list = ids.iter().map(|s| format!("'{s}'")).collect::<Vec<_>>().join(",");
    let mut shares = vec![String::new(); FLOOR_SESSIONS];
    let _ = writeln!(
        shares[0],
        "SELECT n.nspname::text FROM pg_namespace n JOIN pg_class c ON c.relnamespace = n.oid \
         WHERE c.relname = 'fleetmig_history' AND c.relkind = 'r' AND n.nspname = ANY(ARRAY[{list}]);"
    );
    for (k, chunk) in ids.chunks(FLOOR_BATCH).enumerate() {
        let union = chunk
            .iter()
            .map(|s| format!("SELECT '{s}'::text, version::text, name, checksum, dirty FROM \"{s}\".fleetmig_history"))
            .collect::<Vec<_>>()
            .join(" UNION ALL ");
        let _ = writeln!(shares[k % FLOOR_SESSIONS], "{union};");
    }
    shares
        .into_iter()
        .enumerate()
        .map(|(k, sql)| {
            let path = dir.join(format!("survey-floor-{n}-{k}.sql"));
            std::fs::write(&path, sql).unwrap();
            path
        })
        .collect()
}

/// Runs `files` in psql sessions side by side; wall seconds (no RSS: not fleetmig's).
fn psql_floor(url: &str, files: &[PathBuf]) -> Sample {
    let started = std::time::Instant::now();
    let children: Vec<_> = files
        .iter()
        .map(|f| {
            Command::new("psql")
                .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-o", "/dev/null", "-d", url, "-f"])
                .arg(f)
                .stdin(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| fail(&format!("starting psql: {e}")))
        })
        .collect();
    for mut child in children {
        if !child.wait().unwrap().success() {
            fail("a survey floor psql session failed");
        }
    }
    Sample {
        wall: started.elapsed().as_secs_f64(),
        rss_kb: 0,
    }
}

fn pg_part(dir: &Path, counts: &[usize], repeat_n: usize, keep: bool, rows: &mut Vec<Row>) {
    let Some(&max) = counts.iter().max() else { return };
    let server: String = env_or("FLEETMIG_BENCH_PG", "postgres://postgres@127.0.0.1:5432".to_owned());
    let db = format!("fm_bench_scale_{}", std::process::id());
    let history = migrations(dir);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let started = std::time::Instant::now();
    rt.block_on(pg_tenants(&server, &db, max, &history));
    eprintln!("made {max} schema-tenants in {:.1}s", started.elapsed().as_secs_f64());
    let header = format!(
        "hosts:\n  main: {{url: \"{server}/{db}\", max_connections: 8}}\ndefaults: {{host: main, schema: \"{{id}}\"}}\n"
    );
    for &n in counts {
        let fleet = fleet_file(dir, "pg", &header, n);
        let s = repeat(repeat_n, dir, &["--fleet", &fleet, "status", "--format", "json"]);
        eprintln!("status, {n} schema-tenants: {:.3} s", s.wall);
        rows.push(("`status --format json`, PostgreSQL schemas".into(), n, s));
        let s = repeat(repeat_n, dir, &["--fleet", &fleet, "up", "-j", "8"]);
        eprintln!("no-op up, {n} schema-tenants: {:.3} s", s.wall);
        rows.push(("no-op `up -j 8`, PostgreSQL schemas".into(), n, s));
        let files = survey_floor(dir, n);
        let url = format!("{server}/{db}");
        let s = median((0..repeat_n).map(|_| psql_floor(&url, &files)).collect());
        eprintln!("survey floor (psql), {n} schema-tenants: {:.3} s", s.wall);
        rows.push(("floor: the survey's SQL in 8 psql sessions".into(), n, s));
    }
    if keep {
        eprintln!("kept database `{db}`");
    } else {
        rt.block_on(admin(
            &server,
            &format!("DROP DATABASE IF EXISTS \"{db}\" WITH (FORCE)"),
        ));
    }
}

fn main() {
    // `cargo bench` passes `--bench`; any other argument (a filter) is ignored.
    let repeat_n: usize = env_or::<usize>("FLEETMIG_BENCH_REPEAT", 3).max(1);
    let sqlite = sizes("FLEETMIG_BENCH_SCALE_SIZES", "1000,10000,100000");
    let pg = sizes("FLEETMIG_BENCH_SCALE_PG", "1000,10000");
    let keep = std::env::var("FLEETMIG_BENCH_KEEP").is_ok();
    let work = tempfile::tempdir().unwrap();
    let dir: PathBuf = work.path().to_owned();
    migrations(&dir);
    let mut rows = Vec::new();
    sqlite_part(&dir, &sqlite, repeat_n, &mut rows);
    pg_part(&dir, &pg, repeat_n, keep, &mut rows);
    println!(
        "\nMedians of {repeat_n} runs each (peak RSS: the largest), wall time of the whole process:\n\n{}",
        table(&rows)
    );
    if keep {
        println!("kept folder {}", work.keep().display());
    }
}
