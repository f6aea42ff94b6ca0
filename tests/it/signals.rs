//! Stopping from outside: SIGTERM, two interrupts, a server that stops answering. Real
//! signals to the fleetmig process, a real blocked socket (a proxy that stops forwarding),
//! and every wait bounded.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::{Pg, Project, Proxy, Spawned, sqlite_rows};

/// How long anything here may take before the test calls it hung.
const BOUND: Duration = Duration::from_secs(60);

/// Schema-tenants `x00..` on `url` (a pooled host), with `migrations` as (file, SQL).
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

fn event_is(v: &Value, name: &str) -> bool {
    v["event"] == name
}

fn report(p: &Project) -> Value {
    let text = std::fs::read_to_string(p.path().join("report.json")).expect("the report was written");
    serde_json::from_str(&text).unwrap()
}

/// (max clean version, any dirty row) of a schema-tenant's history; (0, false) without one.
fn pg_history(pg: &Pg, schema: &str) -> (i64, bool) {
    let exists = pg.column(&format!(
        "SELECT (to_regclass('{schema}.fleetmig_history') IS NOT NULL)::text"
    ))[0]
        == "true";
    if !exists {
        return (0, false);
    }
    let row = &pg.rows(&format!(
        "SELECT COALESCE(max(version::int), 0)::text, bool_or(dirty)::text FROM {schema}.fleetmig_history"
    ))[0];
    (
        row[0].as_deref().unwrap().parse().unwrap(),
        row[1].as_deref() == Some("true"),
    )
}

/// (tenant, state, final version) rows of a run in the project's SQLite ledger.
fn ledger_rows(p: &Project, run: &str) -> Vec<(String, String, Option<i64>)> {
    sqlite_rows(
        &p.path().join("tenants.ledger.db"),
        &format!(
            "SELECT tenant, state, CAST(final_version AS TEXT) FROM fleetmig_run_tenants WHERE run_id = '{run}' ORDER BY tenant"
        ),
    )
    .into_iter()
    .map(|r| {
        (
            r[0].clone().unwrap(),
            r[1].clone().unwrap(),
            r[2].as_ref().map(|v| v.parse().unwrap()),
        )
    })
    .collect()
}

/// Waits (bounded) until no fleetmig session is left on the database: whatever the
/// server was still doing for an abandoned session has committed or rolled back.
fn settle(pg: &Pg) {
    let sql = format!(
        "SELECT count(*)::text FROM pg_stat_activity WHERE application_name = 'fleetmig' AND datname = '{}'",
        pg.name
    );
    let until = Instant::now() + BOUND;
    while pg.column(&sql)[0] != "0" {
        assert!(Instant::now() < until, "fleetmig sessions still open after {BOUND:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The report, the ledger and every history table say the same of every tenant: the
/// report's final version is the history's (or unknown, and then it says so), and the
/// ledger holds the report's state and version.
fn all_agree(pg: &Pg, p: &Project, r: &Value) {
    let run = r["run_id"].as_str().unwrap();
    let ledger = ledger_rows(p, run);
    let tenants = r["tenants"].as_array().unwrap();
    assert_eq!(ledger.len(), tenants.len(), "{r}");
    for t in tenants {
        let id = t["id"].as_str().unwrap();
        let (version, dirty) = pg_history(pg, &format!("s_{id}"));
        if t["final_version"].is_null() {
            let error = t["error"].as_str().unwrap_or_default();
            let unknown = error.contains("unknown") || error.contains("no answer");
            let untouched = t["status"] == "skipped" && error.contains("unreachable");
            assert!(unknown || untouched, "{id}: {t}");
        } else {
            assert_eq!(t["final_version"], version, "{id}: report and history disagree: {t}");
        }
        if dirty {
            assert!(t["error"].as_str().unwrap_or_default().contains("dirty"), "{id}: {t}");
        }
        let row = ledger.iter().find(|(tenant, ..)| tenant == id).unwrap();
        assert_eq!(row.1, t["status"].as_str().unwrap(), "{id}: ledger state");
        assert_eq!(row.2, t["final_version"].as_i64(), "{id}: ledger final version");
    }
}

#[test]
fn sigterm_stops_at_safe_points_like_ctrl_c_and_leaves_nothing_dirty() {
    let Some(pg) = Pg::create("sigterm") else { return };
    let p = pg_project(
        &pg.url(),
        6,
        &[
            ("0001_a.up.sql", "CREATE TABLE t1 (id int); SELECT pg_sleep(0.1);"),
            ("0002_b.up.sql", "-- fleetmig: no-transaction\nSELECT pg_sleep(0.5)"),
            ("0003_c.up.sql", "CREATE TABLE t3 (id int);"),
        ],
    );
    let mut run = Spawned::new(p.command(&[
        "up",
        "-j",
        "2",
        "--rollback",
        "none",
        "--format",
        "json",
        "--report",
        "report.json",
    ]));
    // Mid-way through the step that runs outside a transaction: a kill here leaves it dirty.
    run.wait_for(BOUND, |v| event_is(v, "step_started") && v["version"] == 2);
    run.signal("TERM");
    let (code, rest, stderr) = run.finish(BOUND);
    assert_eq!(code, Some(1), "SIGTERM stops the run like Ctrl-C, exit 1\n{stderr}");
    assert!(
        rest.iter()
            .any(|l| l.contains("\"event\":\"stopping\"") && l.contains("interrupted")),
        "{rest:?}"
    );
    let r = report(&p);
    assert_eq!(r["stop_reason"]["kind"], "interrupted", "{r}");
    settle(&pg);
    all_agree(&pg, &p, &r);
    for t in r["tenants"].as_array().unwrap() {
        let id = t["id"].as_str().unwrap();
        assert!(!pg_history(&pg, &format!("s_{id}")).1, "{id} left dirty");
        assert!(
            ["succeeded", "stopped", "not_started"].contains(&t["status"].as_str().unwrap()),
            "{id}: {t}"
        );
    }
    let run_id = r["run_id"].as_str().unwrap();
    assert!(
        ledger_rows(&p, run_id).iter().all(|(_, state, _)| state != "started"),
        "the ledger holds an end for every tenant"
    );
    let resumed = p.run(&["up", "--resume"]);
    assert_eq!(resumed.code, 0, "{}", resumed.all());
    for i in 0..6 {
        assert_eq!(pg_history(&pg, &format!("s_x{i:02}")), (3, false));
    }
}

#[test]
fn two_interrupts_report_the_version_the_database_really_reached() {
    let Some(pg) = Pg::create("abandon") else { return };
    // One tenant's three migrations travel as one transaction of about 1.2 s, which the
    // server finishes (and commits) even after the client has gone.
    let p = pg_project(
        &pg.url(),
        2,
        &[
            ("0001_a.up.sql", "CREATE TABLE t1 (id int); SELECT pg_sleep(0.4);"),
            ("0002_b.up.sql", "CREATE TABLE t2 (id int); SELECT pg_sleep(0.4);"),
            ("0003_c.up.sql", "CREATE TABLE t3 (id int); SELECT pg_sleep(0.4);"),
        ],
    );
    let mut run = Spawned::new(p.command(&[
        "up",
        "-j",
        "2",
        "--tx",
        "per-tenant",
        "--format",
        "json",
        "--report",
        "report.json",
    ]));
    run.wait_for(BOUND, |v| event_is(v, "step_started") && v["index"] == 3);
    // The transactions are on the server, sleeping.
    let busy = format!(
        "SELECT count(*)::text FROM pg_stat_activity WHERE application_name = 'fleetmig' AND datname = '{}' AND query LIKE '%pg_sleep%' AND state = 'active'",
        pg.name
    );
    let until = Instant::now() + BOUND;
    while pg.column(&busy)[0] == "0" {
        assert!(Instant::now() < until, "no migration ever ran on the server");
        std::thread::sleep(Duration::from_millis(10));
    }
    run.signal("INT");
    run.wait_for(BOUND, |v| event_is(v, "stopping"));
    run.signal("INT");
    let second = Instant::now();
    let (code, _, stderr) = run.finish(BOUND);
    assert!(
        second.elapsed() < Duration::from_secs(8),
        "the process lived {:?} after the second interrupt",
        second.elapsed()
    );
    assert_eq!(code, Some(1), "{stderr}");
    let r = report(&p);
    assert_eq!(r["stop_reason"]["kind"], "abandoned", "{r}");
    settle(&pg);
    all_agree(&pg, &p, &r);
    for t in r["tenants"].as_array().unwrap() {
        let error = t["error"].as_str().unwrap_or_default();
        assert!(
            !error.contains("rolled back"),
            "no guess about what the database did: {t}"
        );
    }
}

#[test]
fn a_server_that_stops_answering_mid_statement_fails_the_tenant_within_the_statement_timeout() {
    let Some(pg) = Pg::create("partition") else { return };
    let proxy = Proxy::new("127.0.0.1:5432");
    let url = format!("postgres://postgres@127.0.0.1:{}/{}", proxy.port, pg.name);
    let p = pg_project(
        &url,
        2,
        &[
            ("0001_a.up.sql", "CREATE TABLE t1 (id int);"),
            ("0002_b.up.sql", "CREATE TABLE t2 (id int); SELECT pg_sleep(0.3);"),
        ],
    );
    let mut run = Spawned::new(p.command(&[
        "up",
        "-j",
        "2",
        "--statement-timeout",
        "1s",
        "--connect-timeout",
        "1s",
        "--retries",
        "0",
        "--rollback",
        "none",
        "--format",
        "json",
        "--report",
        "report.json",
    ]));
    run.wait_for(BOUND, |v| event_is(v, "step_started") && v["version"] == 2);
    proxy.blackhole();
    let cut = Instant::now();
    let (code, _, stderr) = run.finish(BOUND);
    assert!(
        cut.elapsed() < Duration::from_secs(15),
        "a statement timeout of 1s, and the run took {:?} to end",
        cut.elapsed()
    );
    assert_eq!(code, Some(1), "{stderr}");
    let r = report(&p);
    let lost: Vec<&Value> = r["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["status"] == "failed")
        .collect();
    assert!(!lost.is_empty(), "{r}");
    for t in lost {
        assert!(t["error"].as_str().unwrap().contains("no answer within"), "{t}");
        assert!(
            t["final_version"].is_null(),
            "whether the commit happened is unknown: {t}"
        );
    }
    drop(proxy);
    settle(&pg);
    all_agree(&pg, &p, &r);
}

#[test]
fn two_interrupts_end_a_run_whose_server_stopped_answering() {
    let Some(pg) = Pg::create("partition2") else { return };
    let proxy = Proxy::new("127.0.0.1:5432");
    let url = format!("postgres://postgres@127.0.0.1:{}/{}", proxy.port, pg.name);
    let p = pg_project(
        &url,
        2,
        &[
            ("0001_a.up.sql", "CREATE TABLE t1 (id int);"),
            ("0002_b.up.sql", "CREATE TABLE t2 (id int); SELECT pg_sleep(0.3);"),
        ],
    );
    // No --statement-timeout: nothing bounds the wait for the server but the operator.
    let mut run = Spawned::new(p.command(&["up", "-j", "2", "--format", "json", "--report", "report.json"]));
    run.wait_for(BOUND, |v| event_is(v, "step_started") && v["version"] == 2);
    proxy.blackhole();
    run.signal("INT");
    run.wait_for(BOUND, |v| event_is(v, "stopping"));
    run.signal("TERM");
    let second = Instant::now();
    let (code, _, stderr) = run.finish(BOUND);
    assert!(
        second.elapsed() < Duration::from_secs(8),
        "the process lived {:?} after the second interrupt\n{stderr}",
        second.elapsed()
    );
    assert_eq!(code, Some(1), "{stderr}");
    let r = report(&p);
    assert_eq!(r["stop_reason"]["kind"], "abandoned", "{r}");
    drop(proxy);
    settle(&pg);
    all_agree(&pg, &p, &r);
}

#[test]
fn a_mysql_server_that_stops_answering_fails_the_tenant_within_the_statement_timeout() {
    let Some(my) = crate::support::My::create("partition") else {
        return;
    };
    let proxy = Proxy::new("127.0.0.1:3306");
    let p = Project::new();
    p.migration("0001_a.up.sql", "CREATE TABLE t1 (id INT);");
    p.migration("0002_b.up.sql", "CREATE TABLE t2 (id INT); SELECT SLEEP(2);");
    p.fleet(&format!(
        "hosts: {{ my: {{ url: \"mysql://root@127.0.0.1:{}/\" }} }}\ndefaults: {{ host: my, database: \"{}_{{id}}\" }}\ntenants:\n  - {{ id: x00 }}\n",
        proxy.port, my.prefix
    ));
    let mut run = Spawned::new(p.command(&[
        "up",
        "--statement-timeout",
        "1s",
        "--connect-timeout",
        "1s",
        "--retries",
        "0",
        "--rollback",
        "none",
        "--format",
        "json",
        "--report",
        "report.json",
    ]));
    run.wait_for(BOUND, |v| event_is(v, "step_started") && v["version"] == 2);
    // Cut while the script runs on the server (its dirty row written and answered).
    let until = Instant::now() + BOUND;
    // Only this test's database: other tests sleep on the same server.
    let running = format!(
        "SELECT CAST(COUNT(*) AS CHAR) FROM information_schema.PROCESSLIST WHERE DB = '{}_x00' \
         AND INFO LIKE '%SLEEP(2)%' AND INFO NOT LIKE '%PROCESSLIST%'",
        my.prefix
    );
    while my.column(&running)[0] == "0" {
        assert!(Instant::now() < until, "the script never ran");
        std::thread::sleep(Duration::from_millis(10));
    }
    proxy.blackhole();
    let cut = Instant::now();
    let (code, _, stderr) = run.finish(BOUND);
    assert!(
        cut.elapsed() < Duration::from_secs(15),
        "a statement timeout of 1s, and the run took {:?} to end",
        cut.elapsed()
    );
    assert_eq!(code, Some(1), "{stderr}");
    let r = report(&p);
    let t = &r["tenants"][0];
    assert_eq!(t["status"], "failed", "{r}");
    assert!(t["error"].as_str().unwrap().contains("no answer within"), "{t}");
    assert!(t["final_version"].is_null(), "{t}");
    drop(proxy);
    // The script ran on: the history says where it is, marked dirty at the step cut off.
    let rows = my.rows(&format!(
        "SELECT CAST(version AS CHAR), CAST(dirty AS CHAR) FROM `{}_x00`.fleetmig_history ORDER BY version",
        my.prefix
    ));
    assert_eq!(rows.last().unwrap()[0].as_deref(), Some("2"), "{rows:?}");
    assert_eq!(rows.last().unwrap()[1].as_deref(), Some("1"), "{rows:?}");
    assert_eq!(t["dirty"], 2, "report and history agree on the dirty mark: {t}");
}

/// A `--check` that is true at once once `s_x00.t1` exists, and sleeps 100 s before.
const SLOW_BEFORE_T1: &str =
    "SELECT CASE WHEN to_regclass('s_x00.t1') IS NULL THEN (SELECT true FROM pg_sleep(100)) ELSE true END";

#[test]
fn a_check_that_hangs_before_wave_1_costs_its_two_seconds_and_delays_no_tenant() {
    let Some(pg) = Pg::create("slowcheck") else { return };
    let p = pg_project(&pg.url(), 1, &[("0001_a.up.sql", "CREATE TABLE t1 (id int);")]);
    let began = Instant::now();
    let run = Spawned::new(p.command(&["up", "--check", SLOW_BEFORE_T1, "--format", "json"]));
    let (code, _, stderr) = run.finish(BOUND);
    let took = began.elapsed();
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        took < Duration::from_secs(8),
        "the run took {took:?} (the rehearsal has 2 s)"
    );
    // The rehearsal's query does not live on in the server (it did, for its 100 s).
    let sleeping = format!(
        "SELECT count(*)::text FROM pg_stat_activity WHERE datname = '{}' AND query LIKE '%pg_sleep(100)%' \
         AND pid <> pg_backend_pid()",
        pg.name
    );
    let until = Instant::now() + Duration::from_secs(3);
    while pg.column(&sleeping)[0] != "0" {
        assert!(Instant::now() < until, "the rehearsal's check still runs in the server");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Before the run begins (the rehearsal is one of its last checks, at most 2 s), Ctrl-C ends
/// the process as any command's: nothing was changed and no run was recorded.
#[test]
fn ctrl_c_during_the_check_before_wave_1_ends_at_once_and_changes_nothing() {
    // The rehearsal has 2 s: on a loaded machine the signal may reach the process after
    // them, when the run has begun. Then the test's premise did not hold and it tries again
    // (the query's age in the server says so); a run that ignored a signal sent in time fails.
    for attempt in 0..4 {
        if ctrl_c_during_the_check(attempt) {
            return;
        }
    }
    panic!("the signal never reached the process within the rehearsal's 2 s in 4 tries");
}

/// One try: `false` when the signal went out too late to test anything.
fn ctrl_c_during_the_check(attempt: usize) -> bool {
    let Some(pg) = Pg::create(&format!("checkint{attempt}")) else {
        return true;
    };
    let p = pg_project(&pg.url(), 2, &[("0001_a.up.sql", "CREATE TABLE t1 (id int);")]);
    let run = Spawned::new(p.command(&[
        "up",
        "--check",
        SLOW_BEFORE_T1,
        "--format",
        "json",
        "--report",
        "report.json",
    ]));
    let sleeping = format!(
        "SELECT coalesce(max(extract(epoch FROM clock_timestamp() - query_start) * 1000)::int::text, 'none') \
         FROM pg_stat_activity WHERE datname = '{}' AND query LIKE '%pg_sleep(100)%' AND pid <> pg_backend_pid()",
        pg.name
    );
    let until = Instant::now() + BOUND;
    let age_ms = loop {
        if let Ok(ms) = pg.column(&sleeping)[0].parse::<u64>() {
            break ms;
        }
        assert!(Instant::now() < until, "the check never ran");
        std::thread::sleep(Duration::from_millis(10));
    };
    let sent = Instant::now();
    run.signal("INT");
    let (code, lines, stderr) = run.finish(BOUND);
    if code == Some(0) && age_ms > 1000 {
        eprintln!("the signal went out {age_ms} ms into the rehearsal's 2 s: trying again");
        return false;
    }
    assert!(sent.elapsed() < Duration::from_secs(3), "{:?}", sent.elapsed());
    assert_ne!(code, Some(0), "signal sent {age_ms} ms into the check: {stderr}");
    assert_eq!(pg_history(&pg, "s_x00"), (0, false), "{lines:?}");
    assert_eq!(pg_history(&pg, "s_x01"), (0, false), "{lines:?}");
    let started = lines.iter().filter(|l| l.contains("\"tenant_started\"")).count();
    assert_eq!(started, 0, "{lines:?}");
    // No run is left unfinished in the ledger.
    let ledger = p.path().join("tenants.ledger.db");
    let unfinished = if ledger.exists() {
        sqlite_rows(&ledger, "SELECT run_id FROM fleetmig_runs WHERE finished_ms IS NULL")
    } else {
        vec![]
    };
    assert!(unfinished.is_empty(), "{unfinished:?}");
    true
}
