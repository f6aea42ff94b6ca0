//! The ledger under faults: refusals that leave no run behind, a resume that keeps the
//! run's policy, a ledger that goes away mid-run (PostgreSQL outage, SQLite file deleted),
//! ledgers that are not ledgers, and unreachable ledgers bounded by `--connect-timeout`.

use std::io::{BufRead, BufReader, Read};
use std::net::TcpListener;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::{self, My, Pg, Project, Proxy, ProxyMode, Run, sqlite_column};

/// A MySQL tenant under `--tx per-tenant` is refused before the ledger hears of the run:
/// no run is recorded, so `--resume` finds nothing to run.
#[test]
fn a_refused_per_tenant_run_leaves_no_run_for_resume() {
    let Some(my) = My::create("txref") else { return };
    let p = Project::new();
    p.fleet(&format!(
        "defaults: {{ url: \"{}\", database: \"{}_{{id}}\" }}\ntenants:\n  - {{ id: acme }}\n",
        support::MYSQL_ADMIN,
        my.prefix
    ));
    p.migration("0001_t.up.sql", "CREATE TABLE t (id INT);");
    let refused = p.run(&["up", "--tx", "per-tenant"]);
    assert_eq!(refused.code, 2, "{refused:#?}");
    assert!(refused.stderr.contains("--tx per-tenant"), "{}", refused.stderr);
    let ledger = p.path().join("tenants.ledger.db");
    if ledger.exists() {
        assert_eq!(
            sqlite_column(&ledger, "SELECT CAST(COUNT(*) AS TEXT) FROM fleetmig_runs"),
            ["0"],
            "a refused run is in the ledger"
        );
    }
    let resumed = p.run(&["up", "--resume"]);
    assert_eq!(resumed.code, 2, "{resumed:#?}");
    // A refused run made no ledger at all, or one without a run in it.
    assert!(
        resumed.stderr.contains("no unfinished run") || resumed.stderr.contains("no run to resume"),
        "{}",
        resumed.stderr
    );
    let dbs = my.column(&format!(
        "SELECT CAST(SCHEMA_NAME AS CHAR) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME LIKE '{}%'",
        my.prefix
    ));
    assert!(dbs.is_empty(), "the refused run touched MySQL: {dbs:?}");
}

/// The same for a shared run: refused before it is created in the PostgreSQL ledger.
#[test]
fn a_refused_shared_per_tenant_run_is_not_created_in_the_ledger() {
    let Some(my) = My::create("txshr") else { return };
    let Some(ledger) = Pg::create("txshr") else { return };
    let p = Project::new();
    p.fleet(&format!(
        "defaults: {{ url: \"{}\", database: \"{}_{{id}}\" }}\ntenants:\n  - {{ id: acme }}\n",
        support::MYSQL_ADMIN,
        my.prefix
    ));
    p.migration("0001_t.up.sql", "CREATE TABLE t (id INT);");
    let refused = p.run(&["up", "--shared", "--ledger", &ledger.url(), "--tx", "per-tenant"]);
    assert_eq!(refused.code, 2, "{refused:#?}");
    assert!(refused.stderr.contains("--tx per-tenant"), "{}", refused.stderr);
    let runs = ledger.column("SELECT COUNT(*)::text FROM pg_catalog.pg_class WHERE oid = to_regclass('fleetmig_runs')");
    if runs == ["1"] {
        assert_eq!(ledger.column("SELECT COUNT(*)::text FROM fleetmig_runs"), ["0"]);
    }
}

/// SQLite tenants: `c1` a canary (wave 1), then `t1`..`t3` (wave 2).
fn two_wave_fleet() -> Project {
    let p = Project::new();
    p.migration("0001_t.up.sql", "CREATE TABLE t (id INTEGER);");
    p.migration("0002_u.up.sql", "CREATE TABLE u (id INTEGER);");
    p.fleet(
        "defaults: { url: \"sqlite://data/{id}.db\" }\ntenants:\n  - { id: c1, canary: true }\n  - { id: t1 }\n  - { id: t2 }\n  - { id: t3 }\n",
    );
    p
}

fn applied(p: &Project, id: &str) -> Vec<String> {
    let path = p.db_path(id);
    if !path.exists()
        || sqlite_column(&path, "SELECT name FROM sqlite_master WHERE name = 'fleetmig_history'").is_empty()
    {
        return vec![];
    }
    sqlite_column(
        &path,
        "SELECT CAST(version AS TEXT) FROM fleetmig_history ORDER BY version",
    )
}

/// Runs `up` with JSON Lines on stdout, calls `between` once wave 1 has finished (the
/// run then bakes 2 s before wave 2), and returns the run and its events. Bounded: a run
/// that does not end within 90 s is killed and fails the test.
fn run_cutting_after_wave_1(p: &Project, args: &[&str], between: impl FnOnce()) -> (Run, Vec<Value>) {
    let args = [&["up", "--format", "json", "--bake", "2s"], args].concat();
    run_cutting(p, &args, |e| e["event"] == "wave_finished" && e["wave"] == 1, between)
}

/// Runs fleetmig with JSON Lines on stdout and calls `between` at the first event `when`
/// picks; bounded as above.
fn run_cutting(p: &Project, args: &[&str], when: impl Fn(&Value) -> bool, between: impl FnOnce()) -> (Run, Vec<Value>) {
    let mut cmd = p.command(args);
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let pid = child.id();
    let stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        let _ = tx.send((child.wait().map(|s| s.code().unwrap_or(-1)), text));
    });
    let mut between = Some(between);
    let mut events = vec![];
    let mut lines = vec![];
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        lines.push(line.clone());
        let Ok(event) = serde_json::from_str::<Value>(&line) else {
            continue;
        };
        if when(&event) {
            if let Some(f) = between.take() {
                f();
            }
        }
        events.push(event);
    }
    let (code, stderr) = match rx.recv_timeout(Duration::from_secs(90)) {
        Ok((code, stderr)) => (code.unwrap(), stderr),
        Err(_) => {
            let _ = std::process::Command::new("kill")
                .args(["-9", &pid.to_string()])
                .status();
            panic!(
                "fleetmig up hung after the ledger went away; output so far:\n{}",
                lines.join("\n")
            );
        }
    };
    assert!(between.is_none(), "the moment to cut never came:\n{}", lines.join("\n"));
    let run = Run {
        code,
        stdout: lines.join("\n"),
        stderr,
    };
    (run, events)
}

fn stop_reason(events: &[Value]) -> Value {
    events
        .iter()
        .find(|e| e["event"] == "run_finished")
        .map(|e| e["stop_reason"].clone())
        .unwrap_or_else(|| panic!("no run_finished in {events:?}"))
}

fn tenant_status(events: &[Value], id: &str) -> String {
    events
        .iter()
        .rev()
        .find(|e| e["event"] == "tenant_finished" && e["tenant"] == id)
        .map(|e| e["status"].as_str().unwrap_or("?").to_owned())
        .unwrap_or_else(|| "none".into())
}

/// A PostgreSQL ledger cut off between two waves: the run starts no tenant it cannot
/// record, stops with a reason that names the ledger, exits 1, and still prints and
/// writes its report, saying on stderr that the ledger missed the run's end.
#[test]
fn a_ledger_outage_mid_run_stops_the_run_and_the_report_still_tells_it() {
    let Some(ledger) = Pg::create("outage") else { return };
    let proxy = Proxy::new("127.0.0.1:5432");
    let url = proxy.pg_url(&ledger.name);
    let p = two_wave_fleet();
    let report = p.path().join("report.json");
    let started = Instant::now();
    let (run, events) = run_cutting_after_wave_1(
        &p,
        &[
            "--ledger",
            &url,
            "--connect-timeout",
            "2s",
            "--report",
            report.to_str().unwrap(),
        ],
        || {
            proxy.set(ProxyMode::Refuse);
            proxy.cut();
        },
    );
    assert_eq!(run.code, 1, "{run:#?}");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "took {:?}",
        started.elapsed()
    );
    let reason = stop_reason(&events);
    assert_eq!(reason["kind"], "ledger_unavailable", "{reason}");
    assert!(
        reason["detail"].as_str().unwrap().contains("ledger `postgres://"),
        "{reason}"
    );
    assert!(
        run.stderr.contains("the ledger missed the end of run"),
        "{}",
        run.stderr
    );
    assert_eq!(tenant_status(&events, "c1"), "succeeded");
    for t in ["t1", "t2", "t3"] {
        assert!(applied(&p, t).is_empty(), "tenant `{t}` ran without a ledger record");
    }
    let written: Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(written["stop_reason"]["kind"], "ledger_unavailable", "{written}");
    let statuses: Vec<&str> = written["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["succeeded", "not_started", "not_started", "not_started"]);
    // What the ledger holds: the canary's outcome, and the run not finished.
    let rows = ledger.column("SELECT state FROM fleetmig_run_tenants ORDER BY wave, tenant");
    assert_eq!(rows, ["succeeded", "pending", "pending", "pending"]);
    assert_eq!(
        ledger.column("SELECT COALESCE(stop_reason, 'NULL') FROM fleetmig_runs"),
        ["NULL"]
    );
}

/// The SQLite ledger deleted between two waves: detected at the next write, the run
/// says its records were lost, stops, exits 1, and the report is still printed.
#[test]
fn a_sqlite_ledger_deleted_mid_run_is_reported_as_lost() {
    let p = two_wave_fleet();
    let ledger = p.path().join("tenants.ledger.db");
    let report = p.path().join("report.json");
    let (run, events) = run_cutting_after_wave_1(&p, &["--report", report.to_str().unwrap()], || {
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", ledger.display()));
        }
    });
    assert_eq!(run.code, 1, "{run:#?}");
    let reason = stop_reason(&events);
    assert_eq!(reason["kind"], "ledger_unavailable", "{reason}");
    let detail = reason["detail"].as_str().unwrap();
    assert!(
        detail.contains("tenants.ledger.db` was deleted during the run"),
        "{detail}"
    );
    assert!(detail.contains("are lost"), "{detail}");
    assert!(
        run.stderr.contains("the ledger missed the end of run"),
        "{}",
        run.stderr
    );
    for t in ["t1", "t2", "t3"] {
        assert!(applied(&p, t).is_empty(), "tenant `{t}` ran unrecorded");
    }
    let written: Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(written["stop_reason"], reason, "{written}");
    let statuses: Vec<&str> = written["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["succeeded", "not_started", "not_started", "not_started"]);
    assert!(!ledger.exists(), "fleetmig made a new ledger behind the run's back");
}

/// A SQLite ledger cut to 0 bytes is not taken for a new, empty one: the command is
/// refused naming the file, and no tenant is touched.
#[test]
fn an_emptied_sqlite_ledger_is_refused_not_recreated() {
    let p = two_wave_fleet();
    let first = p.run(&["up", "--to", "1"]);
    assert_eq!(first.code, 0, "{first:#?}");
    let ledger = p.path().join("tenants.ledger.db");
    for suffix in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", ledger.display()));
    }
    std::fs::write(&ledger, b"").unwrap();
    for args in [&["up"][..], &["runs"], &["up", "--resume"]] {
        let run = p.run(args);
        assert_eq!(run.code, 2, "{args:?}: {run:#?}");
        assert!(run.stderr.contains("tenants.ledger.db"), "{}", run.stderr);
        assert!(run.stderr.contains("empty (0 bytes)"), "{}", run.stderr);
    }
    assert_eq!(
        std::fs::metadata(&ledger).unwrap().len(),
        0,
        "the emptied ledger was written to"
    );
    assert_eq!(applied(&p, "t1"), ["1"], "a refused run touched a tenant");
}

/// A ledger path holding a SQLite database of something else, or no database at all,
/// is refused naming the file, at once.
#[test]
fn a_file_that_is_not_a_ledger_is_refused_naming_it() {
    let p = two_wave_fleet();
    let other = p.path().join("other.db");
    support::sqlite_exec(&other, "CREATE TABLE customers (id INTEGER);");
    let garbage = p.path().join("garbage.db");
    std::fs::write(
        &garbage,
        "this is not a database, only some text long enough to look like one. ".repeat(20),
    )
    .unwrap();
    for (file, why) in [(&other, "not a fleetmig ledger"), (&garbage, "not a database")] {
        let url = format!("sqlite://{}", file.display());
        let started = Instant::now();
        let run = p.run(&["up", "--ledger", &url, "--connect-timeout", "2s"]);
        assert_eq!(run.code, 2, "{run:#?}");
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "took {:?}",
            started.elapsed()
        );
        assert!(run.stderr.contains(&file.display().to_string()), "{}", run.stderr);
        assert!(run.stderr.contains(why), "{}", run.stderr);
    }
    assert!(applied(&p, "c1").is_empty());
    assert_eq!(
        sqlite_column(&other, "SELECT name FROM sqlite_master ORDER BY name"),
        ["customers"],
        "fleetmig added its tables to another program's database"
    );
}

/// An unreachable PostgreSQL ledger fails within `--connect-timeout`, saying why: the
/// refusal of a closed port, or no answer from a server that accepts and stays silent.
#[test]
fn an_unreachable_ledger_fails_within_the_connect_timeout_naming_the_cause() {
    let p = two_wave_fleet();
    let closed = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_port = silent.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = vec![];
        for c in silent.incoming() {
            held.push(c);
        }
    });
    for (port, why) in [(closed, "refused"), (silent_port, "no answer within 2s")] {
        let url = format!("postgres://postgres:hunter2@127.0.0.1:{port}/ledger");
        let started = Instant::now();
        let run = p.run(&["up", "--ledger", &url, "--connect-timeout", "2s"]);
        assert_eq!(run.code, 2, "{run:#?}");
        let took = started.elapsed();
        assert!(took < Duration::from_secs(10), "took {took:?}: {}", run.stderr);
        assert!(run.stderr.contains(why), "{}", run.stderr);
        assert!(!run.stderr.contains("pool timed out"), "{}", run.stderr);
        assert!(!run.all().contains("hunter2"), "{}", run.all());
    }
    assert!(applied(&p, "c1").is_empty());
}

/// `c1` (canary), then `t1`, then `t2` and `t3` (`--waves 1`): `t1` already has a table
/// `u`, so it fails at migration 2.
fn resumable_fleet() -> Project {
    let p = two_wave_fleet();
    p.migration("0001_t.down.sql", "DROP TABLE t;");
    p.migration("0002_u.down.sql", "DROP TABLE u;");
    std::fs::create_dir_all(p.path().join("data")).unwrap();
    support::sqlite_exec(&p.db_path("t1"), "CREATE TABLE u (id INTEGER);");
    p
}

/// `up --resume` runs under the policy the run was started with: its waves, failure limit
/// and rollback, not today's defaults; a flag that disagrees with the recorded policy is
/// refused naming the flag and the recorded value, the same value is accepted.
#[test]
fn resume_keeps_the_runs_policy_and_refuses_conflicting_flags() {
    let p = resumable_fleet();
    let first = p.run(&[
        "up",
        "--waves",
        "1",
        "--max-failures",
        "all",
        "--rollback",
        "none",
        "--bake",
        "1ms",
        "--pause-after",
        "1",
    ]);
    assert_eq!(first.code, 0, "{first:#?}");
    assert_eq!(applied(&p, "c1"), ["1", "2"]);
    assert!(applied(&p, "t2").is_empty());
    for (args, named) in [
        (&["--waves", "2"][..], "--waves 2: run `"),
        (&["--max-failures", "1"], "was started with --max-failures all"),
        (&["--rollback", "failed"], "was started with --rollback none"),
        (&["--bake", "5s"], "was started with --bake 1ms"),
        (&["--check", "SELECT true"], "was started without --check"),
        (&["--tx", "per-tenant"], "was started with --tx per-migration"),
        (&["--retries", "5"], "was started without --retries"),
        (&["--retry-for", "5s"], "was started with --retry-for 1m"),
    ] {
        let run = p.run(&[&["up", "--resume"], args].concat());
        assert_eq!(run.code, 2, "{args:?}: {run:#?}");
        assert!(run.stderr.contains(named), "{args:?}: {}", run.stderr);
    }
    assert!(applied(&p, "t2").is_empty(), "a refused resume touched a tenant");
    let resumed = p.run(&[
        "up",
        "--resume",
        "--waves",
        "1",
        "--max-failures",
        "all",
        "--format",
        "json",
    ]);
    assert_eq!(resumed.code, 1, "{resumed:#?}");
    // The recorded limit (all) lets wave 3 run after t1 failed in wave 2; the recorded
    // rollback (none) leaves t1 where it failed.
    assert_eq!(applied(&p, "t1"), ["1"], "{}", resumed.stdout);
    assert_eq!(applied(&p, "t2"), ["1", "2"], "{}", resumed.stdout);
    assert_eq!(applied(&p, "t3"), ["1", "2"], "{}", resumed.stdout);
    assert!(!resumed.stdout.contains("rollback_started"), "{}", resumed.stdout);
}

/// The recorded `--check` gate runs again on resume: a run stopped by its gate does not
/// sail past it when resumed without the flag.
#[test]
fn resume_runs_the_recorded_check_gate() {
    let p = two_wave_fleet();
    let first = p.run(&["up", "--check", "SELECT 1 = 0"]);
    assert_eq!(first.code, 1, "{first:#?}");
    assert!(applied(&p, "t1").is_empty());
    let resumed = p.run(&["up", "--resume", "--format", "json"]);
    assert_eq!(resumed.code, 1, "{resumed:#?}");
    assert!(
        resumed.stdout.contains("\"kind\":\"gate_failed\""),
        "{}",
        resumed.stdout
    );
    assert!(applied(&p, "t1").is_empty(), "the resumed run went past its gate");
}

/// Holds a PostgreSQL advisory lock on `url`'s database until dropped: a migration that
/// takes the same lock waits there, so a test can act while a tenant is mid-migration.
struct Held {
    release: Option<std::sync::mpsc::Sender<()>>,
    done: Option<std::thread::JoinHandle<()>>,
}

impl Held {
    fn lock(url: String, key: i64) -> Held {
        let (ready_tx, ready) = std::sync::mpsc::channel();
        let (release, wait) = std::sync::mpsc::channel::<()>();
        let done = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                use sqlx::Connection;
                let mut c = sqlx::PgConnection::connect(&url).await.unwrap();
                sqlx::query("SELECT pg_advisory_lock($1)")
                    .bind(key)
                    .execute(&mut c)
                    .await
                    .unwrap();
                ready_tx.send(()).unwrap();
                let _ = tokio::task::spawn_blocking(move || wait.recv_timeout(Duration::from_secs(90))).await;
                let _ = c.close().await;
            });
        });
        ready
            .recv_timeout(Duration::from_secs(30))
            .expect("taking the advisory lock");
        Held {
            release: Some(release),
            done: Some(done),
        }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        drop(self.release.take());
        if let Some(done) = self.done.take() {
            let _ = done.join();
        }
    }
}

/// A shared run whose PostgreSQL ledger is cut while a tenant is mid-migration: the
/// runner cannot record the tenant's outcome nor claim another, so it stops with the
/// ledger's stop reason (exit 1), within bounded time, and says the ledger missed the
/// run's end; the tenants it never claimed are untouched.
#[test]
fn a_shared_runner_stops_when_its_ledger_is_cut_mid_tenant() {
    let Some(tenants) = Pg::create("shcut") else { return };
    let Some(ledger) = Pg::create("shcutl") else { return };
    let proxy = Proxy::new("127.0.0.1:5432");
    let url = proxy.pg_url(&ledger.name);
    let p = Project::new();
    p.migration(
        "0001_t.up.sql",
        "SELECT pg_advisory_lock(4242); SELECT pg_advisory_unlock(4242); CREATE TABLE t (id int);",
    );
    p.fleet(&format!(
        "hosts:\n  pg: {{ url: \"{}\" }}\ndefaults: {{ host: pg, schema: \"s_{{id}}\" }}\n\
         tenants:\n  - {{ id: a }}\n  - {{ id: b }}\n  - {{ id: c }}\n",
        tenants.url()
    ));
    let mut held = Some(Held::lock(tenants.url(), 4242));
    let started = Instant::now();
    let (run, events) = run_cutting(
        &p,
        &[
            "up",
            "--shared",
            "--ledger",
            &url,
            "-j",
            "1",
            "--connect-timeout",
            "2s",
            "--format",
            "json",
        ],
        |e| e["event"] == "step_started",
        || {
            proxy.set(ProxyMode::Refuse);
            proxy.cut();
            drop(held.take());
        },
    );
    assert_eq!(run.code, 1, "{run:#?}");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "took {:?}",
        started.elapsed()
    );
    let reason = stop_reason(&events);
    assert_eq!(reason["kind"], "ledger_unavailable", "{reason}");
    assert!(
        run.stderr.contains("the ledger missed the end of run"),
        "{}",
        run.stderr
    );
    let migrated = tenants.column("SELECT count(*)::text FROM information_schema.tables WHERE table_name = 't'");
    assert_eq!(
        migrated,
        ["1"],
        "only the tenant in flight when the ledger went away ran"
    );
    // The ledger still says `started` for it: unknown, never a false "done".
    let states = ledger.column("SELECT state FROM fleetmig_run_tenants ORDER BY tenant");
    assert_eq!(states, ["started", "pending", "pending"]);
}

/// `status` reads the ledger only for notes; a ledger that accepts connections and never
/// answers holds it up no longer than `--connect-timeout`, and the note says why.
#[test]
fn status_gives_up_on_a_silent_ledger_within_the_connect_timeout() {
    let p = two_wave_fleet();
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = vec![];
        for c in silent.incoming() {
            held.push(c);
        }
    });
    let url = format!("postgres://postgres@127.0.0.1:{port}/ledger");
    let started = Instant::now();
    let run = p.run(&["status", "--ledger", &url, "--connect-timeout", "2s"]);
    let took = started.elapsed();
    assert_eq!(run.code, 1, "{run:#?}");
    assert!(took < Duration::from_secs(10), "took {took:?}");
    assert!(run.all().contains("no answer within 2s"), "{}", run.all());
}

/// The SQLite ledger replaced between two waves (a copy moved over it, as a restore from
/// backup would): its device and inode differ, so the run's later records would go to a
/// file that is not the run's ledger. Detected at the next write and reported.
#[test]
fn a_sqlite_ledger_replaced_mid_run_is_reported() {
    let p = two_wave_fleet();
    let ledger = p.path().join("tenants.ledger.db");
    let (run, events) = run_cutting_after_wave_1(&p, &[], || {
        let copy = p.path().join("copy.db");
        std::fs::copy(&ledger, &copy).unwrap();
        std::fs::rename(&copy, &ledger).unwrap();
    });
    assert_eq!(run.code, 1, "{run:#?}");
    let reason = stop_reason(&events);
    assert_eq!(reason["kind"], "ledger_unavailable", "{reason}");
    let detail = reason["detail"].as_str().unwrap();
    assert!(
        detail.contains("tenants.ledger.db` was replaced during the run"),
        "{detail}"
    );
    for t in ["t1", "t2", "t3"] {
        assert!(applied(&p, t).is_empty(), "tenant `{t}` ran unrecorded");
    }
}

/// `--ledger` (and `FLEETMIG_LEDGER`) read a SQLite URL as the fleet file's `ledger:` does:
/// `sqlite://runs.db` is the file `runs.db` in the current folder, and a MySQL ledger is
/// refused naming the flag.
#[test]
fn a_relative_sqlite_ledger_flag_is_a_file_in_the_current_folder() {
    let p = Project::new();
    p.fleet("defaults: { url: \"sqlite://data/{id}.db\" }\ntenants:\n  - { id: acme }\n");
    p.migration("0001_t.up.sql", "CREATE TABLE t (id INT);");
    let up = p.run(&["up", "--ledger", "sqlite://runs.db"]);
    assert_eq!(up.code, 0, "{up:#?}");
    let ledger = p.path().join("runs.db");
    assert_eq!(
        sqlite_column(&ledger, "SELECT command FROM fleetmig_runs"),
        ["up"],
        "the run is in ./runs.db"
    );
    assert!(!p.path().join("tenants.ledger.db").exists());
    let runs = p.run_env(&["runs"], &[("FLEETMIG_LEDGER", "sqlite:runs.db")]);
    assert_eq!(runs.code, 0, "{runs:#?}");
    assert!(runs.stdout.contains("up"), "{}", runs.stdout);
    let mysql = p.run(&["runs", "--ledger", "mysql://root@127.0.0.1:3306/x"]);
    assert_eq!(mysql.code, 2, "{mysql:#?}");
    assert!(
        mysql
            .stderr
            .contains("--ledger: the ledger lives in PostgreSQL or SQLite"),
        "{}",
        mysql.stderr
    );
}

/// A ledger that opens but then does not answer a read (here: a session holds its runs
/// table locked) fails `runs` within the ledger's time limit, naming what it was doing,
/// instead of hanging.
#[test]
fn ledger_reads_give_up_when_the_ledger_stops_answering() {
    let Some(ledger) = Pg::create("silentread") else { return };
    let p = Project::new();
    p.fleet("defaults: { url: \"sqlite://data/{id}.db\" }\ntenants:\n  - { id: acme }\n");
    p.migration("0001_t.up.sql", "CREATE TABLE t (id INT);");
    let url = ledger.url();
    assert_eq!(p.run(&["up", "--ledger", &url]).code, 0);
    let mut holder = std::process::Command::new("psql")
        .args(["-q", "-v", "ON_ERROR_STOP=1", &url])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("psql");
    {
        use std::io::Write;
        let stdin = holder.stdin.as_mut().unwrap();
        writeln!(stdin, "BEGIN; LOCK TABLE fleetmig_runs IN ACCESS EXCLUSIVE MODE;").unwrap();
        stdin.flush().unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while ledger.column(
        "SELECT count(*)::text FROM pg_locks WHERE mode = 'AccessExclusiveLock' AND relation = 'fleetmig_runs'::regclass",
    ) != ["1"]
    {
        assert!(Instant::now() < deadline, "psql never took the lock");
        std::thread::sleep(Duration::from_millis(20));
    }
    let started = Instant::now();
    let runs = p.run(&["runs", "--ledger", &url, "--connect-timeout", "1s"]);
    let took = started.elapsed();
    let _ = holder.kill();
    let _ = holder.wait();
    assert_eq!(runs.code, 2, "{runs:#?}");
    assert!(runs.stderr.contains("listing runs"), "{}", runs.stderr);
    assert!(took < Duration::from_secs(30), "took {took:?}");
}

/// A run whose recorded report or plan cannot be read is said to be unreadable, not
/// missing ("holds no finished run" would send the operator looking elsewhere).
#[test]
fn an_unreadable_report_or_plan_is_named_not_taken_for_a_missing_run() {
    let p = Project::new();
    p.fleet("defaults: { url: \"sqlite://data/{id}.db\" }\ntenants:\n  - { id: acme }\n");
    p.migration("0001_t.up.sql", "CREATE TABLE t (id INT);");
    assert_eq!(p.run(&["up"]).code, 0);
    let ledger = p.path().join("tenants.ledger.db");
    let run_id = sqlite_column(&ledger, "SELECT run_id FROM fleetmig_runs").remove(0);
    support::sqlite_exec(
        &ledger,
        "UPDATE fleetmig_runs SET report = '{\"run_id\": 7}', plan = 'not json'",
    );
    let report = p.run(&["report", &run_id]);
    assert_eq!(report.code, 2, "{report:#?}");
    assert!(report.stderr.contains("reading a run's report"), "{}", report.stderr);
    let resume = p.run(&["up", "--resume", &run_id]);
    assert_eq!(resume.code, 2, "{resume:#?}");
    assert!(resume.stderr.contains("reading a run's plan"), "{}", resume.stderr);
}

/// Commands that only read the ledger (`runs`, `report`, `up --resume`) create no SQLite
/// ledger, nor its folders, where there is none: they say there is no run.
#[test]
fn reading_commands_create_no_ledger() {
    let p = Project::new();
    p.fleet("defaults: { url: \"sqlite://data/{id}.db\" }\ntenants:\n  - { id: acme }\n");
    p.migration("0001_t.up.sql", "CREATE TABLE t (id INT);");
    let ledger = p.path().join("new").join("l.db");
    let flag = format!("sqlite://{}", ledger.display());
    let runs = p.run(&["runs", "--ledger", &flag, "--format", "json"]);
    assert_eq!(runs.code, 0, "{runs:#?}");
    assert_eq!(runs.stdout.trim(), r#"{"runs":[]}"#);
    let report = p.run(&["report", "x", "--ledger", &flag]);
    assert_eq!(report.code, 2, "{report:#?}");
    assert!(report.stderr.contains("holds no finished run `x`"), "{}", report.stderr);
    let resume = p.run(&["up", "--resume", "--ledger", &flag]);
    assert_eq!(resume.code, 2, "{resume:#?}");
    assert!(resume.stderr.contains("no run to resume"), "{}", resume.stderr);
    assert!(
        !p.path().join("new").exists(),
        "a reading command created the ledger's folder"
    );
    assert!(!p.path().join("tenants.ledger.db").exists());
}

/// Each record of a run that does not read (its report, its plan, a tenant's state) is
/// named with the run by every command that reads it: `report RUN`, `runs` and
/// `up --resume` say the ledger holds something they cannot read, never that it holds
/// no run.
#[test]
fn every_unreadable_record_is_named_with_its_run() {
    let p = Project::new();
    p.fleet("defaults: { url: \"sqlite://data/{id}.db\" }\ntenants:\n  - { id: acme }\n");
    p.migration("0001_t.up.sql", "CREATE TABLE t (id INT);");
    assert_eq!(p.run(&["up"]).code, 0);
    let ledger = p.path().join("tenants.ledger.db");
    let run_id = sqlite_column(&ledger, "SELECT run_id FROM fleetmig_runs").remove(0);
    let plan = sqlite_column(&ledger, "SELECT plan FROM fleetmig_runs").remove(0);
    let says = |args: &[&str], text: &str| {
        let run = p.run(args);
        assert_eq!(run.code, 2, "{args:?}: {run:#?}");
        let expected = format!("run `{run_id}`: {text} cannot be read");
        assert!(run.stderr.contains(&expected), "{args:?}: {}", run.stderr);
    };
    support::sqlite_exec(&ledger, "UPDATE fleetmig_runs SET report = '{\"run_id\": 7}'");
    says(&["report", &run_id], "its report");
    support::sqlite_exec(
        &ledger,
        "UPDATE fleetmig_runs SET report = NULL, finished_ms = NULL, plan = 'not json'",
    );
    says(&["runs"], "its plan");
    says(&["up", "--resume"], "its plan");
    support::sqlite_exec(
        &ledger,
        &format!(
            "UPDATE fleetmig_runs SET plan = '{}'; UPDATE fleetmig_run_tenants SET state = 'done'",
            plan.replace('\'', "''")
        ),
    );
    says(&["runs"], "its tenants' states");
}

/// A shared run's stop marker that does not read stops a runner joining it, naming the
/// run and the marker, where it once read as "not stopped" and the runner carried on.
#[test]
fn an_unreadable_stop_marker_stops_a_shared_runner() {
    let Some(pg) = Pg::create("badmarker") else { return };
    let p = Project::new();
    p.fleet("defaults: { url: \"sqlite://data/{id}.db\" }\ntenants:\n  - { id: a }\n  - { id: b }\n");
    p.migration("0001_t.up.sql", "CREATE TABLE t (id INT);");
    let url = pg.url();
    let shared = p.run(&["up", "--shared", "--ledger", &url]);
    assert_eq!(shared.code, 0, "{shared:#?}");
    let run_id = pg.column("SELECT run_id FROM fleetmig_runs").remove(0);
    pg.exec(
        "UPDATE fleetmig_runs SET shared_stop = 'not json', finished_ms = NULL, report = NULL; \
         UPDATE fleetmig_run_tenants SET state = 'pending', owner = NULL WHERE tenant = 'b'",
    );
    let joined = p.run(&["up", "--join", &run_id, "--ledger", &url]);
    assert_ne!(joined.code, 0, "{joined:#?}");
    let expected = format!("run `{run_id}`: its stop marker cannot be read");
    assert!(joined.all().contains(&expected), "{}", joined.all());
    assert_eq!(
        pg.column("SELECT state FROM fleetmig_run_tenants WHERE tenant = 'b'"),
        ["pending"],
        "the joining runner took no tenant"
    );
}
