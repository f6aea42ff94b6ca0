//! What the operator is told after faults that strike while a run is ending: a ledger that
//! stops answering once the run was abandoned, a lost answer to a step's bookkeeping.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::{Pg, Project, Proxy, Spawned};

/// How long anything here may take before the test calls it hung.
const BOUND: Duration = Duration::from_secs(60);

fn pg_project(url: &str, n: usize, migrations: &[(&str, &str)]) -> Project {
    let p = Project::new();
    for (file, sql) in migrations {
        p.migration(file, sql);
    }
    let tenants: String = (0..n).map(|i| format!("  - {{ id: x{i:02} }}\n")).collect();
    p.fleet(&format!(
        "hosts: {{ pg: {{ url: \"{url}\", max_connections: 4 }} }}\ndefaults: {{ host: pg, schema: \"s_{{id}}\" }}\ntenants:\n{tenants}"
    ));
    p
}

/// Two interrupts, the second once the run says it is stopping: the exit code, stderr,
/// and how long the process lived after the second.
fn interrupt_twice(mut run: Spawned) -> (Option<i32>, String, Duration) {
    run.signal("INT");
    run.wait_for(BOUND, |v| v["event"] == "stopping");
    run.signal("INT");
    let second = Instant::now();
    let (code, _, stderr) = run.finish(BOUND);
    (code, stderr, second.elapsed())
}

/// The `--report report.json` a run wrote, or a failure that shows the run's stderr.
fn written_report(p: &Project, stderr: &str) -> Value {
    let text = std::fs::read_to_string(p.path().join("report.json"))
        .unwrap_or_else(|e| panic!("the report was not written ({e}); stderr:\n{stderr}"));
    serde_json::from_str(&text).unwrap()
}

#[test]
fn two_interrupts_with_a_ledger_that_stopped_answering_say_so_on_stderr_and_still_write_the_report() {
    let Some(pg) = Pg::create("abandonledger") else { return };
    let Some(ledger_db) = Pg::create("abandonledger_l") else {
        return;
    };
    let proxy = Proxy::new("127.0.0.1:5432");
    let ledger = format!("postgres://postgres@127.0.0.1:{}/{}", proxy.port, ledger_db.name);
    let p = pg_project(
        &pg.url(),
        2,
        &[
            ("0001_a.up.sql", "CREATE TABLE t1 (id int);"),
            ("0002_b.up.sql", "CREATE TABLE t2 (id int); SELECT pg_sleep(0.5);"),
        ],
    );
    let mut run = Spawned::new(p.command(&[
        "up",
        "-j",
        "2",
        "--ledger",
        &ledger,
        "--format",
        "json",
        "--report",
        "report.json",
    ]));
    run.wait_for(BOUND, |v| v["event"] == "step_started" && v["version"] == 2);
    proxy.blackhole();
    let (code, stderr, lived) = interrupt_twice(run);
    assert!(
        lived < Duration::from_secs(8),
        "the process lived {:?} after the second interrupt\n{stderr}",
        lived
    );
    assert_eq!(code, Some(1), "{stderr}");
    let r = written_report(&p, &stderr);
    assert_eq!(r["stop_reason"]["kind"], "abandoned", "{r}");
    assert!(
        stderr.contains("the ledger missed the end of run"),
        "the operator is told the ledger has not got the run's end:\n{stderr}"
    );
}

#[test]
fn two_interrupts_when_tenants_and_ledger_stopped_answering_still_write_the_report_in_time() {
    let Some(pg) = Pg::create("abandonall") else { return };
    let Some(ledger_db) = Pg::create("abandonall_l") else {
        return;
    };
    let proxy = Proxy::new("127.0.0.1:5432");
    let ledger = format!("postgres://postgres@127.0.0.1:{}/{}", proxy.port, ledger_db.name);
    let url = format!("postgres://postgres@127.0.0.1:{}/{}", proxy.port, pg.name);
    let p = pg_project(
        &url,
        6,
        &[
            ("0001_a.up.sql", "CREATE TABLE t1 (id int);"),
            ("0002_b.up.sql", "CREATE TABLE t2 (id int); SELECT pg_sleep(0.5);"),
        ],
    );
    let mut run = Spawned::new(p.command(&[
        "up",
        "-j",
        "2",
        "--ledger",
        &ledger,
        "--format",
        "json",
        "--report",
        "report.json",
    ]));
    run.wait_for(BOUND, |v| v["event"] == "step_started" && v["version"] == 2);
    proxy.blackhole();
    let (code, stderr, lived) = interrupt_twice(run);
    // Before the process's own deadline (6 s), which would end it with no report at all.
    assert!(
        lived < Duration::from_millis(5500),
        "the process lived {:?} after the second interrupt\n{stderr}",
        lived
    );
    assert_eq!(code, Some(1), "{stderr}");
    let r = written_report(&p, &stderr);
    assert_eq!(r["stop_reason"]["kind"], "abandoned", "{r}");
    assert_eq!(
        r["tenants"].as_array().unwrap().len(),
        6,
        "every tenant accounted for: {r}"
    );
    assert!(stderr.contains("the ledger missed the end of run"), "{stderr}");
}

#[test]
fn the_library_sets_the_skip_limit() {
    use fleetmig::api::{self, MaxSkipped, Options, StopReason, UpOptions};

    let p = Project::new();
    p.migration("0001_t1.up.sql", "CREATE TABLE t1 (id INTEGER);");
    p.fleet(
        "defaults: { url: \"sqlite://data/{id}.db\" }\ntenants:\n  - { id: c1, canary: true }\n  - { id: a1 }\n  - { id: a2 }\n",
    );
    std::fs::create_dir_all(p.path().join("data")).unwrap();
    // The canary applied a migration whose file was then edited: drifted, so skipped.
    let first = p.run(&["up", "--select", "canary=true"]);
    assert_eq!(first.code, 0, "{}", first.all());
    p.migration("0001_t1.up.sql", "CREATE TABLE t1 (id INTEGER, edited INTEGER);");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let fleet = api::load_fleet(p.path().join("tenants.yaml"), Duration::from_secs(5))
            .await
            .unwrap();
        let set = api::load_migrations(p.path().join("migrations")).unwrap();
        let report = api::up(&fleet, &set, &Options::default(), &UpOptions::default())
            .await
            .unwrap();
        assert!(
            matches!(report.stop_reason, StopReason::CanarySkipped { .. }),
            "{report:#?}"
        );
        let all = UpOptions {
            max_skipped: Some("all".parse::<MaxSkipped>().unwrap()),
            ..UpOptions::default()
        };
        let report = api::up(&fleet, &set, &Options::default(), &all).await.unwrap();
        assert!(
            matches!(report.stop_reason, StopReason::Incomplete { skipped: 1, .. }),
            "{report:#?}"
        );
        assert_eq!(report.summary.succeeded, 2, "{report:#?}");
    });
}

/// Waits (bounded) until `done` holds.
fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let until = Instant::now() + BOUND;
    while !done() {
        assert!(Instant::now() < until, "{what} did not happen within {BOUND:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// (max clean version, dirty versions) of a schema-tenant's history.
fn pg_history(pg: &Pg, schema: &str) -> (i64, Vec<i64>) {
    let clean = pg.column(&format!(
        "SELECT COALESCE(max(version::int), 0)::text FROM {schema}.fleetmig_history WHERE NOT dirty"
    ));
    let dirty = pg.column(&format!(
        "SELECT version::text FROM {schema}.fleetmig_history WHERE dirty ORDER BY version"
    ));
    (
        clean[0].parse().unwrap(),
        dirty.iter().map(|v| v.parse().unwrap()).collect(),
    )
}

/// A no-transaction step's dirty mark is written, and its answer lost: the server was cut off
/// while the insert waited for a lock an application held, and did it once the lock went.
fn lost_answer_to_the_dirty_mark(retry_for: &str) -> (Pg, Value, String) {
    let pg = Pg::create("lostmark").unwrap();
    let proxy = Proxy::new("127.0.0.1:5432");
    let url = format!("postgres://postgres@127.0.0.1:{}/{}", proxy.port, pg.name);
    let p = pg_project(
        &url,
        1,
        &[
            ("0001_a.up.sql", "CREATE TABLE t1 (id int);"),
            ("0002_b.up.sql", "-- fleetmig: no-transaction\nSELECT 1"),
        ],
    );
    let first = p.run(&["up", "--to", "1"]);
    assert_eq!(first.code, 0, "{}", first.all());
    // The application's lock: reads go on, the history insert waits.
    let mut holder = std::process::Command::new("psql")
        .args([
            "-X",
            "-q",
            &pg.url(),
            "-c",
            "BEGIN; LOCK TABLE s_x00.fleetmig_history IN SHARE MODE; SELECT pg_sleep(60);",
        ])
        .env("PGAPPNAME", "holder")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let granted = "SELECT count(*)::text FROM pg_stat_activity WHERE application_name = 'holder' AND datname = current_database() AND query LIKE '%pg_sleep%'";
    wait_until("the application's lock", || pg.column(granted)[0] == "1");
    let mut run = Spawned::new(p.command(&[
        "up",
        "--statement-timeout",
        "3s",
        "--lock-timeout",
        "0s",
        "--retry-for",
        retry_for,
        "--format",
        "json",
        "--report",
        "report.json",
    ]));
    run.wait_for(BOUND, |v| v["event"] == "step_started" && v["version"] == 2);
    let waiting = "SELECT count(*)::text FROM pg_stat_activity WHERE application_name = 'fleetmig' \
                   AND wait_event_type = 'Lock' AND query LIKE '%fleetmig_history%'";
    wait_until("the dirty mark waiting for the lock", || pg.column(waiting)[0] == "1");
    proxy.blackhole();
    pg.exec(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'holder' AND datname = current_database()",
    );
    let _ = holder.wait();
    let (code, _, stderr) = run.finish(BOUND);
    assert_eq!(code, Some(1), "{stderr}");
    let text = std::fs::read_to_string(p.path().join("report.json")).unwrap();
    drop(proxy);
    let r: Value = serde_json::from_str(&text).unwrap();
    (pg, r["tenants"][0].clone(), stderr)
}

#[test]
fn a_lost_answer_to_a_dirty_mark_is_never_reported_as_not_dirty() {
    if Pg::create("probe").is_none() {
        return;
    }
    for retry_for in ["0s", "2s"] {
        let (pg, t, stderr) = lost_answer_to_the_dirty_mark(retry_for);
        let settled = format!(
            "SELECT count(*)::text FROM pg_stat_activity WHERE application_name = 'fleetmig' AND datname = '{}'",
            pg.name
        );
        wait_until("the abandoned session's end", || pg.column(&settled)[0] == "0");
        let (version, dirty) = pg_history(&pg, "s_x00");
        assert_eq!(
            (version, dirty.as_slice()),
            (1, [2].as_slice()),
            "the server did the insert"
        );
        assert!(stderr.is_empty() || !stderr.contains("panicked"), "{stderr}");
        assert_eq!(
            t["status"], "failed",
            "a tenant that may have changed is never skipped: {t}"
        );
        let error = t["error"].as_str().unwrap();
        assert!(
            t["dirty"] == 2 || (t["final_version"].is_null() && error.contains("dirty")),
            "--retry-for {retry_for}: the history holds a dirty mark the report denies: {t}"
        );
    }
}

#[test]
fn a_shared_runner_interrupted_twice_reports_its_tenants_in_flight_where_they_are() {
    let Some(pg) = Pg::create("sharedabandon") else { return };
    let Some(ledger_db) = Pg::create("sharedabandon_l") else {
        return;
    };
    let p = pg_project(
        &pg.url(),
        4,
        &[
            ("0001_a.up.sql", "CREATE TABLE t1 (id int);"),
            ("0002_b.up.sql", "CREATE TABLE t2 (id int); SELECT pg_sleep(1);"),
        ],
    );
    let mut run = Spawned::new(p.command(&[
        "up",
        "--shared",
        "--ledger",
        &ledger_db.url(),
        "-j",
        "2",
        "--format",
        "json",
        "--report",
        "report.json",
    ]));
    run.wait_for(BOUND, |v| v["event"] == "step_started" && v["version"] == 2);
    let (code, stderr, _) = interrupt_twice(run);
    assert_eq!(code, Some(1), "{stderr}");
    let text = std::fs::read_to_string(p.path().join("report.json")).unwrap();
    let r: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(r["stop_reason"]["kind"], "abandoned", "{r}");
    let settled = format!(
        "SELECT count(*)::text FROM pg_stat_activity WHERE application_name = 'fleetmig' AND datname = '{}'",
        pg.name
    );
    wait_until("the abandoned sessions' end", || pg.column(&settled)[0] == "0");
    let tenants = r["tenants"].as_array().unwrap();
    let changed: Vec<String> = (0..4)
        .map(|i| format!("x{i:02}"))
        .filter(|id| {
            pg.column(&format!(
                "SELECT (to_regclass('s_{id}.fleetmig_history') IS NOT NULL)::text"
            ))[0]
                == "true"
        })
        .collect();
    assert!(!changed.is_empty(), "the runner had tenants in flight");
    for id in &changed {
        let t = tenants
            .iter()
            .find(|t| t["id"] == id.as_str())
            .unwrap_or_else(|| panic!("{id}, which this runner changed, is missing from its report: {r}"));
        let (version, _) = pg_history(&pg, &format!("s_{id}"));
        assert!(
            t["final_version"] == version || t["final_version"].is_null(),
            "{id}: report and history disagree: {t}"
        );
    }
}

/// Runs `args` (with `--format json --report report.json`), interrupts it twice once a step
/// of `version` started, and returns its report once the abandoned sessions ended.
fn abandon_at(pg: &Pg, p: &Project, args: &[&str], version: i64) -> Value {
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["--format", "json", "--report", "report.json"]);
    let mut run = Spawned::new(p.command(&all));
    run.wait_for(BOUND, |v| v["event"] == "step_started" && v["version"] == version);
    let (code, stderr, _) = interrupt_twice(run);
    assert_eq!(code, Some(1), "{stderr}");
    let settled = format!(
        "SELECT count(*)::text FROM pg_stat_activity WHERE application_name = 'fleetmig' AND datname = '{}'",
        pg.name
    );
    wait_until("the abandoned sessions' end", || pg.column(&settled)[0] == "0");
    let text = std::fs::read_to_string(p.path().join("report.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

#[test]
fn a_tenant_abandoned_in_flight_keeps_its_start_its_steps_and_a_down_by_steps_that_arrived_succeeds() {
    let Some(pg) = Pg::create("abandonknown") else { return };
    let p = pg_project(
        &pg.url(),
        1,
        &[
            ("0001_a.up.sql", "CREATE TABLE t1 (id int);"),
            ("0001_a.down.sql", "DROP TABLE t1; SELECT pg_sleep(1);"),
            ("0002_b.up.sql", "CREATE TABLE t2 (id int); SELECT pg_sleep(1);"),
            ("0002_b.down.sql", "DROP TABLE t2;"),
        ],
    );
    let r = abandon_at(&pg, &p, &["up"], 2);
    let t = &r["tenants"][0];
    assert_eq!(pg_history(&pg, "s_x00"), (2, vec![]), "the server committed the step");
    assert_eq!(t["status"], "succeeded", "{t}");
    assert_eq!(t["start_version"], 0, "the run read where it started: {t}");
    assert_eq!(t["final_version"], 2, "{t}");
    assert!(
        t["migrations_run"].as_u64().unwrap() >= 1,
        "migration 1 ran in this run: {t}"
    );

    let r = abandon_at(&pg, &p, &["down", "--steps", "2", "--yes"], 1);
    let t = &r["tenants"][0];
    assert_eq!(pg_history(&pg, "s_x00"), (0, vec![]), "the server committed the step");
    assert_eq!(t["start_version"], 2, "{t}");
    assert_eq!(t["final_version"], 0, "{t}");
    assert_eq!(t["status"], "succeeded", "two steps down from 2 is where it is: {t}");
}

#[test]
fn status_during_a_no_transaction_step_does_not_advise_a_stamp_without_saying_it_may_be_running() {
    let Some(pg) = Pg::create("statusinflight") else { return };
    let p = pg_project(
        &pg.url(),
        1,
        &[
            ("0001_a.up.sql", "CREATE TABLE t1 (id int);"),
            ("0002_b.up.sql", "-- fleetmig: no-transaction\nSELECT pg_sleep(2)"),
        ],
    );
    let mut run = Spawned::new(p.command(&["up", "--format", "json"]));
    run.wait_for(BOUND, |v| v["event"] == "step_started" && v["version"] == 2);
    let dirty = "SELECT count(*)::text FROM s_x00.fleetmig_history WHERE dirty";
    wait_until("the step's dirty mark", || pg.column(dirty)[0] == "1");
    let status = p.run(&["status", "--format", "json"]);
    let s: Value = serde_json::from_str(&status.stdout).unwrap();
    let t = &s["tenants"][0];
    assert_eq!(t["state"], "dirty", "{s}");
    let detail = t["detail"].as_str().unwrap();
    assert!(
        detail.contains("in flight") && detail.contains("may be running now"),
        "a step in progress looks dirty; the advice must say so: {detail}"
    );
    let (code, _, stderr) = run.finish(BOUND);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(p.run(&["status"]).code, 0);
}

#[test]
fn two_interrupts_when_only_the_tenants_stopped_answering_leave_the_ledger_time_for_the_runs_end() {
    let Some(pg) = Pg::create("abandontenants") else { return };
    let proxy = Proxy::new("127.0.0.1:5432");
    let url = format!("postgres://postgres@127.0.0.1:{}/{}", proxy.port, pg.name);
    let p = pg_project(
        &url,
        6,
        &[
            ("0001_a.up.sql", "CREATE TABLE t1 (id int);"),
            ("0002_b.up.sql", "CREATE TABLE t2 (id int); SELECT pg_sleep(0.5);"),
        ],
    );
    let mut run = Spawned::new(p.command(&["up", "-j", "2", "--format", "json", "--report", "report.json"]));
    run.wait_for(BOUND, |v| v["event"] == "step_started" && v["version"] == 2);
    proxy.blackhole();
    let (code, stderr, _) = interrupt_twice(run);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        !stderr.contains("the ledger missed"),
        "the SQLite ledger answers; it must be given the time to record the end:\n{stderr}"
    );
    let runs = p.run(&["runs", "--format", "json"]);
    let runs: Value = serde_json::from_str(&runs.stdout).unwrap();
    assert!(runs["runs"][0]["finished_ms"].is_i64(), "{runs}");
}

#[test]
fn per_tenant_tx_going_down_names_the_down_script_that_cannot_join() {
    let p = Project::new();
    p.migration("0001_a.up.sql", "CREATE TABLE t1 (id INTEGER);");
    p.migration("0001_a.down.sql", "DROP TABLE t1;");
    p.migration(
        "0002_b.up.sql",
        "-- fleetmig: no-transaction\nCREATE INDEX i1 ON t1 (id);",
    );
    p.migration("0002_b.down.sql", "-- fleetmig: no-transaction\nDROP INDEX i1;");
    p.fleet("defaults: { url: \"sqlite://data/{id}.db\" }\ntenants:\n  - { id: a }\n");
    std::fs::create_dir_all(p.path().join("data")).unwrap();
    assert_eq!(p.run(&["up"]).code, 0);
    let down = p.run(&["down", "--to", "0", "--tx", "per-tenant", "--yes"]);
    assert_eq!(down.code, 2, "{}", down.all());
    assert!(down.stderr.contains("0002_b.down.sql"), "{}", down.stderr);
}

#[test]
fn ctrl_c_under_a_low_rate_stops_at_once_not_one_start_slot_per_tenant() {
    let p = Project::new();
    p.migration("0001_a.up.sql", "CREATE TABLE t1 (id INTEGER);");
    let tenants: String = (0..20).map(|i| format!("  - {{ id: t{i:02} }}\n")).collect();
    p.fleet(&format!(
        "defaults: {{ url: \"sqlite://data/{{id}}.db\" }}\ntenants:\n{tenants}"
    ));
    std::fs::create_dir_all(p.path().join("data")).unwrap();
    let mut run = Spawned::new(p.command(&["up", "--rate", "1", "--burst", "1", "--format", "json"]));
    run.wait_for(BOUND, |v| v["event"] == "tenant_finished");
    run.signal("INT");
    let stopped = Instant::now();
    let (code, rest, stderr) = run.finish(BOUND);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stopped.elapsed() < Duration::from_secs(4),
        "the stop took {:?}: the tenants waiting for a start slot each waited their turn",
        stopped.elapsed()
    );
    let last: Value = serde_json::from_str(rest.last().unwrap()).unwrap();
    assert!(last["summary"]["not_started"].as_u64().unwrap() >= 15, "{last}");
}

#[test]
fn ctrl_c_while_a_tenant_waits_for_another_runners_lock_stops_at_once() {
    let Some(pg) = Pg::create("lockstop") else { return };
    let p = pg_project(&pg.url(), 1, &[("0001_a.up.sql", "CREATE TABLE t1 (id int);")]);
    // Another runner holds the tenant's lock (the key fleetmig takes: database and schema).
    let mut holder = std::process::Command::new("psql")
        .args([
            "-X",
            "-q",
            &pg.url(),
            "-c",
            &format!(
                "SELECT pg_advisory_lock(hashtextextended('fleetmig/{}/s_x00', 0)); SELECT pg_sleep(60);",
                pg.name
            ),
        ])
        .env("PGAPPNAME", "holder")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let held = "SELECT count(*)::text FROM pg_stat_activity WHERE application_name = 'holder' AND datname = current_database() AND query LIKE '%pg_sleep%'";
    wait_until("the other runner's lock", || pg.column(held)[0] == "1");
    let mut run = Spawned::new(p.command(&["up", "--lock-wait", "60s", "--format", "json"]));
    run.wait_for(BOUND, |v| v["event"] == "tenant_started");
    std::thread::sleep(Duration::from_millis(300));
    run.signal("INT");
    let stopped = Instant::now();
    let (code, rest, stderr) = run.finish(BOUND);
    pg.exec(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'holder' AND datname = current_database()",
    );
    let _ = holder.wait();
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stopped.elapsed() < Duration::from_secs(3),
        "the stop waited {:?} for a lock (--lock-wait 60s) on a tenant where nothing had run",
        stopped.elapsed()
    );
    let finished: Value = rest
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["event"] == "tenant_finished")
        .unwrap();
    assert_eq!(finished["status"], "not_started", "{finished}");
}

#[test]
fn ctrl_c_during_a_slow_check_gate_stops_at_once_with_the_report() {
    let Some(pg) = Pg::create("slowcheck") else { return };
    let p = Project::new();
    p.migration("0001_a.up.sql", "CREATE TABLE t1 (id int);");
    p.fleet(&format!(
        "hosts: {{ pg: {{ url: \"{}\" }} }}\ndefaults: {{ host: pg, schema: \"s_{{id}}\" }}\ntenants:\n  - {{ id: a, canary: true }}\n  - {{ id: b }}\n",
        pg.url()
    ));
    let mut run = Spawned::new(p.command(&[
        "up",
        "--check",
        "SELECT pg_sleep(30) IS NOT NULL",
        "--format",
        "json",
        "--report",
        "report.json",
    ]));
    run.wait_for(BOUND, |v| v["event"] == "wave_finished");
    std::thread::sleep(Duration::from_millis(300));
    run.signal("INT");
    let stopped = Instant::now();
    let (code, _, stderr) = run.finish(BOUND);
    assert!(
        stopped.elapsed() < Duration::from_secs(3),
        "the stop waited {:?} for a check that only reads",
        stopped.elapsed()
    );
    assert_eq!(code, Some(1), "{stderr}");
    let text = std::fs::read_to_string(p.path().join("report.json")).unwrap();
    let r: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(r["stop_reason"]["kind"], "interrupted", "{r}");
    assert_eq!(r["summary"]["not_started"], 1, "{r}");
}

#[test]
fn two_interrupts_while_a_wave_surveys_a_host_that_stopped_answering_still_write_the_report() {
    let Some(pg) = Pg::create("surveycut") else { return };
    let proxy = Proxy::new("127.0.0.1:5432");
    let url = format!("postgres://postgres@127.0.0.1:{}/{}", proxy.port, pg.name);
    let p = Project::new();
    p.migration("0001_a.up.sql", "CREATE TABLE t1 (id int);");
    p.fleet(&format!(
        "hosts: {{ pg: {{ url: \"{url}\" }} }}\ndefaults: {{ host: pg, schema: \"s_{{id}}\" }}\ntenants:\n  - {{ id: a, canary: true }}\n  - {{ id: b }}\n  - {{ id: c }}\n"
    ));
    let mut run = Spawned::new(p.command(&[
        "up",
        "--bake",
        "1s",
        "--connect-timeout",
        "20s",
        "--format",
        "json",
        "--report",
        "report.json",
    ]));
    run.wait_for(BOUND, |v| v["event"] == "wave_finished");
    proxy.blackhole();
    // The bake ends and the next wave surveys the host, which no longer answers.
    run.wait_for(BOUND, |v| v["event"] == "wave_started" && v["wave"] == 2);
    std::thread::sleep(Duration::from_millis(300));
    run.signal("INT");
    std::thread::sleep(Duration::from_millis(300));
    run.signal("INT");
    let (code, _, stderr) = run.finish(BOUND);
    assert_eq!(code, Some(1), "{stderr}");
    let r = written_report(&p, &stderr);
    assert_eq!(r["summary"]["succeeded"], 1, "{r}");
    assert_eq!(r["tenants"].as_array().unwrap().len(), 3, "{r}");
}

#[test]
fn two_interrupts_while_the_ledger_does_not_record_the_runs_end_still_write_the_report() {
    let Some(pg) = Pg::create("endcut") else { return };
    let Some(ledger_db) = Pg::create("endcut_l") else {
        return;
    };
    let proxy = Proxy::new("127.0.0.1:5432");
    let ledger = format!("postgres://postgres@127.0.0.1:{}/{}", proxy.port, ledger_db.name);
    let p = pg_project(&pg.url(), 1, &[("0001_a.up.sql", "CREATE TABLE t1 (id int);")]);
    let mut run = Spawned::new(p.command(&[
        "up",
        "--ledger",
        &ledger,
        "--connect-timeout",
        "30s",
        "--check",
        "SELECT pg_sleep(30) IS NOT NULL",
        "--format",
        "json",
        "--report",
        "report.json",
    ]));
    run.wait_for(BOUND, |v| v["event"] == "wave_finished");
    proxy.blackhole();
    // The first ends the check; the run's end then waits on the ledger.
    run.signal("INT");
    run.wait_for(BOUND, |v| v["event"] == "stopping");
    std::thread::sleep(Duration::from_millis(500));
    run.signal("INT");
    let second = Instant::now();
    let (code, _, stderr) = run.finish(BOUND);
    assert!(
        second.elapsed() < Duration::from_secs(5),
        "{:?}\n{stderr}",
        second.elapsed()
    );
    assert_eq!(code, Some(1), "{stderr}");
    let r = written_report(&p, &stderr);
    assert_eq!(r["summary"]["succeeded"], 1, "{r}");
    assert!(stderr.contains("the ledger missed the end of run"), "{stderr}");
}

#[test]
fn a_shared_runner_whose_ledger_stopped_answering_still_ends_with_its_report_on_two_interrupts() {
    let Some(pg) = Pg::create("sharedcut") else { return };
    let Some(ledger_db) = Pg::create("sharedcut_l") else {
        return;
    };
    let proxy = Proxy::new("127.0.0.1:5432");
    let ledger = format!("postgres://postgres@127.0.0.1:{}/{}", proxy.port, ledger_db.name);
    let p = pg_project(
        &pg.url(),
        3,
        &[("0001_a.up.sql", "CREATE TABLE t1 (id int); SELECT pg_sleep(0.5);")],
    );
    let mut run = Spawned::new(p.command(&[
        "up",
        "--shared",
        "--ledger",
        &ledger,
        "--connect-timeout",
        "30s",
        "-j",
        "1",
        "--format",
        "json",
        "--report",
        "report.json",
    ]));
    run.wait_for(BOUND, |v| v["event"] == "step_started");
    proxy.blackhole();
    run.signal("INT");
    // The tenant in flight finishes its step; recording it waits on the ledger.
    std::thread::sleep(Duration::from_millis(1200));
    run.signal("INT");
    let second = Instant::now();
    let (code, _, stderr) = run.finish(BOUND);
    assert!(
        second.elapsed() < Duration::from_secs(8),
        "{:?}\n{stderr}",
        second.elapsed()
    );
    assert_eq!(code, Some(1), "{stderr}");
    let r = written_report(&p, &stderr);
    assert_eq!(r["stop_reason"]["kind"], "abandoned", "{r}");
    assert_eq!(r["summary"]["succeeded"], 1, "{r}");
}
