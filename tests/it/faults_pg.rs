//! PostgreSQL under faults: a server that goes away and comes back (through a TCP proxy the
//! test controls), retries and what the report says of a tenant they could not finish,
//! no-transaction steps whose bookkeeping or concurrent index build fails, dirty marks that
//! a migration declares safe to run again, and a second runner waiting for a tenant's lock.

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use sqlx::{Connection, Executor, Row};

use crate::support::{Pg, Project, Proxy, ProxyMode, Run, tenant_line};

/// A fleetmig process in the background whose stdout lines arrive as it prints them.
struct Bg {
    child: Child,
    lines: Receiver<String>,
    seen: Vec<String>,
    stderr: std::thread::JoinHandle<String>,
}

impl Bg {
    fn spawn(p: &Project, args: &[&str]) -> Bg {
        let mut child = p
            .command(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let out = child.stdout.take().unwrap();
        let mut err = child.stderr.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = std::io::Read::read_to_string(&mut err, &mut s);
            s
        });
        Bg {
            child,
            lines,
            seen: Vec::new(),
            stderr,
        }
    }

    /// Waits (at most a minute) for a line the predicate accepts; returns it.
    fn wait_line(&mut self, what: &str, mut pred: impl FnMut(&str) -> bool) -> String {
        if let Some(l) = self.seen.iter().find(|l| pred(l)) {
            return l.clone();
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if pred(&line) {
                        return line;
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    let _ = self.child.kill();
                    panic!("no line {what} within 60 s; so far:\n{}", self.seen.join("\n"));
                }
                Err(RecvTimeoutError::Disconnected) => {
                    panic!("fleetmig ended without a line {what}:\n{}", self.seen.join("\n"));
                }
            }
        }
    }

    /// Waits (at most two minutes) for the process to end.
    fn finish(mut self) -> Run {
        let deadline = Instant::now() + Duration::from_secs(120);
        while self.child.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("fleetmig hung; so far:\n{}", self.seen.join("\n"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let code = self.child.wait().unwrap().code().unwrap_or(-1);
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(5)) {
            self.seen.push(line);
        }
        Run {
            code,
            stdout: self.seen.join("\n"),
            stderr: self.stderr.join().unwrap(),
        }
    }
}

/// JSON Lines output parsed; lines that are not JSON are left out.
fn events(stdout: &str) -> Vec<serde_json::Value> {
    stdout.lines().filter_map(|l| serde_json::from_str(l).ok()).collect()
}

fn tenant_finished<'a>(events: &'a [serde_json::Value], id: &str) -> &'a serde_json::Value {
    events
        .iter()
        .find(|e| e["event"] == "tenant_finished" && e["tenant"] == id)
        .unwrap_or_else(|| panic!("no tenant_finished for {id} in {events:#?}"))
}

fn is_event(line: &str, event: &str) -> bool {
    serde_json::from_str::<serde_json::Value>(line).is_ok_and(|v| v["event"] == event)
}

/// Polls until `done`, failing the test after a minute.
fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(Instant::now() < deadline, "gave up waiting until {what}");
        std::thread::sleep(Duration::from_millis(30));
    }
}

fn versions(pg: &Pg, schema: &str) -> Vec<String> {
    pg.column(&format!(
        "SELECT version::text || CASE WHEN dirty THEN ' dirty' ELSE '' END FROM \"{schema}\".fleetmig_history ORDER BY version"
    ))
}

/// `name valid|INVALID` for every index of `schema`.
fn indexes(pg: &Pg, schema: &str) -> Vec<String> {
    pg.column(&format!(
        "SELECT c.relname || CASE WHEN i.indisvalid THEN ' valid' ELSE ' INVALID' END FROM pg_index i \
         JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = '{schema}' AND c.relname <> 'fleetmig_history_pkey' ORDER BY 1"
    ))
}

/// A session of the test's own, held open across fleetmig runs (a transaction, a lock).
struct Holder {
    rt: tokio::runtime::Runtime,
    conn: sqlx::PgConnection,
}

impl Holder {
    fn open(pg: &Pg) -> Holder {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let conn = rt.block_on(sqlx::PgConnection::connect(&pg.url())).unwrap();
        Holder { rt, conn }
    }

    fn exec(&mut self, sql: &str) {
        let conn = &mut self.conn;
        self.rt
            .block_on(async { conn.execute(sqlx::raw_sql(sql)).await })
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    fn pid(&mut self) -> i32 {
        let conn = &mut self.conn;
        self.rt
            .block_on(async { sqlx::query("SELECT pg_backend_pid()").fetch_one(conn).await })
            .unwrap()
            .get(0)
    }
}

/// Schema tenants `t_<id>` of `db`, reached through `url`, on a named host (pooled sessions).
fn fleet(url: &str, ids: &[&str]) -> String {
    let mut yaml =
        format!("hosts:\n  main: {{url: \"{url}\"}}\ndefaults: {{host: main, schema: \"t_{{id}}\"}}\ntenants:\n");
    for id in ids {
        yaml.push_str(&format!("  - {{id: {id}}}\n"));
    }
    yaml
}

/// Migration 2 waits on `public.gate`, which the test can hold, so a test can act while
/// every tenant is inside it.
fn gated_migrations(p: &Project) {
    p.migration("0001_one.up.sql", "CREATE TABLE t1 (id INT);\n")
        .migration("0001_one.down.sql", "DROP TABLE t1;\n")
        .migration(
            "0002_gate.up.sql",
            "LOCK TABLE public.gate IN ACCESS SHARE MODE;\nCREATE TABLE t2 (id INT);\n",
        )
        .migration("0002_gate.down.sql", "DROP TABLE t2;\n")
        .migration("0003_three.up.sql", "CREATE TABLE t3 (id INT);\n")
        .migration("0003_three.down.sql", "DROP TABLE t3;\n");
}

/// Ends fleetmig's sessions on the test database, as a server restart does.
fn terminate_fleetmig(pg: &Pg) {
    pg.exec(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = current_database() AND application_name = 'fleetmig'",
    );
}

/// Sessions of fleetmig waiting on the gate.
fn at_gate(pg: &Pg) -> usize {
    pg.column(
        "SELECT count(*)::text FROM pg_stat_activity WHERE datname = current_database() \
         AND application_name = 'fleetmig' AND wait_event_type = 'Lock' AND query LIKE '%public.gate%'",
    )[0]
    .parse()
    .unwrap()
}

#[test]
fn a_server_restart_mid_run_is_ridden_out_and_each_retry_is_an_event() {
    let Some(pg) = Pg::create("restart") else { return };
    pg.exec("CREATE TABLE public.gate (x INT)");
    let proxy = Proxy::new("127.0.0.1:5432");
    let p = Project::new();
    p.fleet(&fleet(&proxy.pg_url(&pg.name), &["a", "b", "c"]));
    gated_migrations(&p);

    let mut gate = Holder::open(&pg);
    gate.exec("BEGIN; LOCK TABLE public.gate IN ACCESS EXCLUSIVE MODE");
    let mut up = Bg::spawn(&p, &["up", "--format", "json", "--lock-timeout", "60s"]);
    wait_until("every tenant waits in migration 2", || at_gate(&pg) == 3);

    // The server goes away: every session is cut, new connections are refused, for about
    // as long as a PostgreSQL restart takes; then it is back.
    proxy.set(ProxyMode::Refuse);
    proxy.cut();
    terminate_fleetmig(&pg);
    gate.exec("COMMIT");
    let first = up.wait_line("announcing a retry", |l| is_event(l, "step_retried"));
    let began = Instant::now();
    while began.elapsed() < Duration::from_secs(3) {
        std::thread::sleep(Duration::from_millis(100));
    }
    proxy.set(ProxyMode::Forward);
    let run = up.finish();

    assert_eq!(run.code, 0, "{run:?}");
    let evs = events(&run.stdout);
    for id in ["a", "b", "c"] {
        let done = tenant_finished(&evs, id);
        assert_eq!(done["status"], "succeeded", "{done}");
        assert_eq!(
            (done["start_version"].as_i64(), done["final_version"].as_i64()),
            (Some(0), Some(3))
        );
        assert_eq!(versions(&pg, &format!("t_{id}")), ["1", "2", "3"]);
        let retries = evs
            .iter()
            .filter(|e| e["event"] == "step_retried" && e["tenant"] == id)
            .count();
        assert!(retries >= 1, "tenant {id} was retried: {evs:#?}");
    }
    let first: serde_json::Value = serde_json::from_str(&first).unwrap();
    assert_eq!((&first["v"], &first["wave"]), (&2.into(), &1.into()), "{first}");
    assert!(
        first["ts_ms"].as_u64().is_some() && first["attempt"].as_u64() == Some(2),
        "{first}"
    );
    assert!(
        first["wait_ms"].as_u64().is_some() && first["error"]["message"].is_string(),
        "{first}"
    );
    let finished = evs.iter().find(|e| e["event"] == "run_finished").unwrap();
    assert_eq!(finished["stop_reason"]["kind"], "completed", "{finished}");
}

#[test]
fn a_tenant_that_migrated_then_lost_its_server_is_failed_at_its_version_not_skipped() {
    let Some(pg) = Pg::create("lost") else { return };
    pg.exec("CREATE TABLE public.gate (x INT)");
    let proxy = Proxy::new("127.0.0.1:5432");
    let p = Project::new();
    p.fleet(&fleet(&proxy.pg_url(&pg.name), &["a"]));
    gated_migrations(&p);

    let mut gate = Holder::open(&pg);
    gate.exec("BEGIN; LOCK TABLE public.gate IN ACCESS EXCLUSIVE MODE");
    let up = Bg::spawn(
        &p,
        &[
            "up",
            "--format",
            "json",
            "--lock-timeout",
            "60s",
            "--retry-for",
            "1s",
            "--connect-timeout",
            "1s",
        ],
    );
    wait_until("tenant a waits in migration 2", || at_gate(&pg) == 1);
    // Gone for longer than the retry budget.
    proxy.set(ProxyMode::Refuse);
    proxy.cut();
    terminate_fleetmig(&pg);
    gate.exec("COMMIT");
    let run = up.finish();

    assert_eq!(run.code, 1, "{run:?}");
    let evs = events(&run.stdout);
    let done = tenant_finished(&evs, "a");
    assert_eq!(
        done["status"], "failed",
        "a tenant that changed is never skipped: {done}"
    );
    assert_eq!(done["failed_migration"], 2, "{done}");
    assert_eq!(
        (done["start_version"].as_i64(), done["final_version"].as_i64()),
        (Some(0), Some(1)),
        "{done}"
    );
    assert_eq!(done["steps"].as_array().unwrap().len(), 1, "{done}");
    let finished = evs.iter().find(|e| e["event"] == "run_finished").unwrap();
    assert_ne!(finished["stop_reason"]["kind"], "completed", "{finished}");
    let count = |k: &str| finished["summary"][k].as_u64().unwrap_or(0);
    assert_eq!(
        (count("failed") + count("rollback_failed"), count("skipped")),
        (1, 0),
        "it counts as a failure: {finished}"
    );
    assert_eq!(
        versions(&pg, "t_a"),
        ["1"],
        "what the report says is what the history holds"
    );
}

#[test]
fn a_retry_that_starts_after_the_run_began_stopping_leaves_the_tenant_stopped_and_rolled_back() {
    let Some(pg) = Pg::create("late") else { return };
    pg.exec("CREATE TABLE public.gate (x INT)");
    let proxy = Proxy::new("127.0.0.1:5432");
    let p = Project::new();
    // Tenant a goes through the proxy; b directly, and its migration 2 fails on purpose once
    // the test lets it past an advisory lock.
    p.fleet(&format!(
        "tenants:\n  - {{id: a, url: \"{}\", schema: t_a}}\n  - {{id: b, url: \"{}\", schema: t_b}}\n",
        proxy.pg_url(&pg.name),
        pg.url()
    ));
    p.migration("0001_one.up.sql", "CREATE TABLE t1 (id INT);\n")
        .migration("0001_one.down.sql", "DROP TABLE t1;\n")
        .migration(
            "0002_two.up.sql",
            "DO $$ BEGIN
               IF current_schema() = 't_a' THEN LOCK TABLE public.gate IN ACCESS SHARE MODE; END IF;
               IF current_schema() = 't_b' THEN
                 PERFORM pg_advisory_xact_lock(4242);
                 RAISE EXCEPTION 'tenant b fails on purpose';
               END IF;
             END $$;\nCREATE TABLE t2 (id INT);\n",
        )
        .migration("0002_two.down.sql", "DROP TABLE t2;\n");

    let mut gate = Holder::open(&pg);
    gate.exec("BEGIN; LOCK TABLE public.gate IN ACCESS EXCLUSIVE MODE; SELECT pg_advisory_xact_lock(4242)");
    let mut up = Bg::spawn(&p, &["up", "-j", "2", "--format", "json", "--lock-timeout", "60s"]);
    wait_until("both tenants wait in migration 2", || {
        pg.column(
            "SELECT count(*)::text FROM pg_stat_activity WHERE datname = current_database() \
             AND application_name = 'fleetmig' AND wait_event_type = 'Lock'",
        ) == ["2"]
    });
    // a loses its connection; its retry's connection is kept waiting at the proxy.
    proxy.set(ProxyMode::Hold);
    proxy.cut();
    pg.exec(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() \
         AND application_name = 'fleetmig' AND wait_event = 'relation'",
    );
    up.wait_line("retrying tenant a", |l| is_event(l, "step_retried"));
    wait_until("a's retry is connecting", || proxy.held.load(Ordering::SeqCst) == 1);
    // b fails: the run stops while a's retry is under way.
    gate.exec("COMMIT");
    up.wait_line("stopping", |l| is_event(l, "stopping"));
    proxy.set(ProxyMode::Forward);
    let run = up.finish();

    assert_eq!(run.code, 1, "{run:?}");
    let evs = events(&run.stdout);
    let a = tenant_finished(&evs, "a");
    assert_eq!(a["status"], "stopped", "{a}");
    assert_eq!(
        (a["start_version"].as_i64(), a["final_version"].as_i64()),
        (Some(0), Some(1)),
        "{a}"
    );
    let rolled: Vec<&serde_json::Value> = evs.iter().filter(|e| e["event"] == "tenant_rolled_back").collect();
    assert!(
        rolled
            .iter()
            .any(|e| e["tenant"] == "a" && e["to"] == 0 && e["error"].is_null()),
        "the rollback brings a back: {rolled:#?}"
    );
    assert_eq!(pg.column("SELECT count(*)::text FROM t_a.fleetmig_history"), ["0"]);
}

#[test]
fn a_no_transaction_step_whose_history_write_timed_out_is_retried_and_never_reported_dirty() {
    let Some(pg) = Pg::create("nottx") else { return };
    let p = Project::new();
    p.fleet(&fleet(&pg.url(), &["a"]));
    p.migration("0001_one.up.sql", "CREATE TABLE t1 (id INT);\n").migration(
        "0002_idx.up.sql",
        "-- fleetmig: no-transaction\nCREATE INDEX CONCURRENTLY t1_id ON t1 (id);\n",
    );
    assert_eq!(p.run(&["up", "--to", "1"]).code, 0);

    // Reads of the history pass; its writes wait, and time out.
    let mut holder = Holder::open(&pg);
    holder.exec("BEGIN; LOCK TABLE t_a.fleetmig_history IN EXCLUSIVE MODE");
    let mut up = Bg::spawn(&p, &["up", "--format", "json", "--lock-timeout", "300ms"]);
    let retry = up.wait_line("step_retried", |l| is_event(l, "step_retried"));
    assert!(retry.contains("55P03"), "{retry}");
    assert_eq!(versions(&pg, "t_a"), ["1"]);
    holder.exec("COMMIT");
    let run = up.finish();

    assert_eq!(run.code, 0, "{run:?}");
    let evs = events(&run.stdout);
    let done = tenant_finished(&evs, "a");
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(versions(&pg, "t_a"), ["1", "2"]);
    assert_eq!(indexes(&pg, "t_a"), ["t1_id valid"]);
}

#[test]
fn a_no_transaction_step_that_failed_before_its_history_row_reports_the_version_the_history_holds() {
    let Some(pg) = Pg::create("nottxfail") else { return };
    let p = Project::new();
    p.fleet(&fleet(&pg.url(), &["a"]));
    p.migration("0001_one.up.sql", "CREATE TABLE t1 (id INT);\n").migration(
        "0002_idx.up.sql",
        "-- fleetmig: no-transaction\nCREATE INDEX CONCURRENTLY t1_id ON t1 (id);\n",
    );
    assert_eq!(p.run(&["up", "--to", "1"]).code, 0);
    let mut holder = Holder::open(&pg);
    holder.exec("BEGIN; LOCK TABLE t_a.fleetmig_history IN EXCLUSIVE MODE");
    let run = p.run(&["up", "--lock-timeout", "200ms", "--retry-for", "0s"]);
    holder.exec("COMMIT");

    assert_eq!(run.code, 1, "{run:?}");
    let line = tenant_line(&run.stdout, "a");
    assert!(!line.contains("dirty"), "{line}");
    assert_eq!(versions(&pg, "t_a"), ["1"]);
    let status = p.run(&["status", "--format", "json"]);
    let doc: serde_json::Value = serde_json::from_str(&status.stdout).unwrap();
    assert_eq!(doc["tenants"][0]["state"], "behind", "{doc}");
}

#[test]
fn concurrent_index_builds_held_back_by_an_application_transaction_are_cleaned_up_and_retried() {
    let Some(pg) = Pg::create("cic") else { return };
    let p = Project::new();
    p.fleet(&fleet(&pg.url(), &["a", "b", "c"]));
    p.migration(
        "0001_one.up.sql",
        "CREATE TABLE t1 (id INT);\nINSERT INTO t1 VALUES (1), (2);\n",
    )
    .migration(
        "0002_idx.up.sql",
        "-- fleetmig: no-transaction\nCREATE INDEX CONCURRENTLY t1_id ON t1 (id);\n",
    );
    assert_eq!(p.run(&["up", "--to", "1"]).code, 0);

    // An application transaction on tenant a's table, with a snapshot: every concurrent
    // index build in the database waits for it.
    let mut app = Holder::open(&pg);
    let app_pid = app.pid();
    app.exec("BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT count(*) FROM t_a.t1");
    let mut up = Bg::spawn(&p, &["up", "--format", "json", "--lock-timeout", "300ms"]);
    let mut retried = std::collections::HashSet::new();
    while retried.len() < 3 {
        let line = up.wait_line("a retry of each tenant", |l| {
            is_event(l, "step_retried")
                && !retried
                    .iter()
                    .any(|id: &String| l.contains(&format!("\"tenant\":\"{id}\"")))
        });
        let e: serde_json::Value = serde_json::from_str(&line).unwrap();
        let message = e["error"]["message"].as_str().unwrap();
        assert!(
            message.contains(&format!("pid {app_pid}")),
            "the blocker is named: {message}"
        );
        assert!(message.contains("query started"), "{message}");
        assert_eq!(e["error"]["code"], "55P03", "{e}");
        retried.insert(e["tenant"].as_str().unwrap().to_owned());
    }
    app.exec("COMMIT");
    let run = up.finish();

    assert_eq!(run.code, 0, "{run:?}");
    for id in ["a", "b", "c"] {
        let schema = format!("t_{id}");
        assert_eq!(versions(&pg, &schema), ["1", "2"], "{id}");
        assert_eq!(indexes(&pg, &schema), ["t1_id valid"], "{id}");
    }
}

#[test]
fn a_failed_concurrent_index_build_out_of_retries_leaves_no_invalid_index_and_no_dirty_mark() {
    let Some(pg) = Pg::create("cicfail") else { return };
    let p = Project::new();
    p.fleet(&fleet(&pg.url(), &["a", "b"]));
    p.migration("0001_one.up.sql", "CREATE TABLE t1 (id INT);\n").migration(
        "0002_idx.up.sql",
        "-- fleetmig: no-transaction\nCREATE INDEX CONCURRENTLY t1_id ON t1 (id);\n",
    );
    assert_eq!(p.run(&["up", "--to", "1"]).code, 0);
    pg.exec("CREATE TABLE public.app (x INT)");
    let mut app = Holder::open(&pg);
    app.exec("BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT count(*) FROM public.app");
    let run = p.run(&[
        "up",
        "--lock-timeout",
        "200ms",
        "--retry-for",
        "0s",
        "--max-failures",
        "all",
    ]);
    app.exec("COMMIT");

    assert_eq!(run.code, 1, "{run:?}");
    for id in ["a", "b"] {
        let line = tenant_line(&run.stdout, id);
        assert!(line.contains("FAILED") && !line.contains("dirty"), "{line}");
        let schema = format!("t_{id}");
        assert_eq!(versions(&pg, &schema), ["1"], "{id}");
        assert!(indexes(&pg, &schema).is_empty(), "{id}: {:?}", indexes(&pg, &schema));
    }
    let again = p.run(&["up"]);
    assert_eq!(again.code, 0, "{again:?}");
    assert_eq!(indexes(&pg, "t_a"), ["t1_id valid"]);
}

#[test]
fn a_second_runner_waiting_for_the_lock_does_not_deadlock_a_concurrent_index_build() {
    let Some(pg) = Pg::create("twocic") else { return };
    let p = Project::new();
    p.fleet(&fleet(&pg.url(), &["a"]));
    p.migration("0001_one.up.sql", "CREATE TABLE t1 (id INT);\n").migration(
        "0002_idx.up.sql",
        "-- fleetmig: no-transaction\nCREATE INDEX CONCURRENTLY t1_id ON t1 (id);\n",
    );
    assert_eq!(p.run(&["up", "--to", "1"]).code, 0);

    // A writer keeps the first runner's build waiting until the second runner waits too; so
    // the second runner's wait began before the build's last phase, which waits for every
    // older snapshot.
    let mut old = Holder::open(&pg);
    old.exec("BEGIN; INSERT INTO t_a.t1 VALUES (1)");
    // No retries: a deadlock either runner lost would be hidden by its retry.
    let args = ["up", "--lock-timeout", "60s", "--lock-wait", "60s", "--retries", "0"];
    let first = Bg::spawn(&p, &args);
    wait_until("the first runner's build waits", || {
        pg.column(
            "SELECT count(*)::text FROM pg_stat_activity WHERE datname = current_database() \
             AND pid <> pg_backend_pid() AND query LIKE '%CREATE INDEX CONCURRENTLY%' AND wait_event_type = 'Lock'",
        ) == ["1"]
    });
    let second = Bg::spawn(&p, &args);
    wait_until("the second runner waits for the tenant lock", || {
        pg.column(
            "SELECT count(*)::text FROM pg_stat_activity WHERE datname = current_database() \
             AND application_name = 'fleetmig' AND query LIKE '%advisory_lock(%' AND query NOT LIKE '%to_regclass%' \
             AND query NOT LIKE '%CREATE INDEX%'",
        ) == ["1"]
    });
    old.exec("COMMIT");
    let (first, second) = (first.finish(), second.finish());

    assert_eq!(first.code, 0, "{first:?}");
    assert_eq!(second.code, 0, "{second:?}");
    assert!(tenant_line(&second.stdout, "a").contains("nothing to do"), "{second:?}");
    assert_eq!(versions(&pg, "t_a"), ["1", "2"]);
    assert_eq!(indexes(&pg, "t_a"), ["t1_id valid"]);
}

#[test]
fn a_dirty_migration_marked_rerun_if_dirty_is_run_again_and_status_says_what_to_do_for_others() {
    let Some(pg) = Pg::create("rerun") else { return };
    let p = Project::new();
    p.fleet(&fleet(&pg.url(), &["a", "b"]));
    p.migration("0001_one.up.sql", "CREATE TABLE t1 (id INT);\nINSERT INTO t1 VALUES (1), (1);\n")
        .migration(
            "0002_idx.up.sql",
            "-- fleetmig: no-transaction, rerun-if-dirty\nCREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS t1_id ON t1 (id);\n",
        )
        .migration(
            "0003_plain.up.sql",
            "-- fleetmig: no-transaction\nCREATE INDEX CONCURRENTLY t1_plain ON t1 (id);\n",
        );
    assert_eq!(p.run(&["up", "--to", "1"]).code, 0);
    // Both tenants as a killed run leaves them: a dirty at 2 with the INVALID index its
    // failed build left, b dirty at 3.
    let checksum = |file: &str| {
        let hist = p.run(&["history", "--format", "json"]);
        let doc: serde_json::Value = serde_json::from_str(&hist.stdout).unwrap();
        let row = doc["migrations"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["name"] == file)
            .unwrap_or_else(|| panic!("{doc}"))
            .clone();
        row["checksum"].as_str().unwrap().to_owned()
    };
    let (idx, plain) = (checksum("idx"), checksum("plain"));
    let url = pg.url();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut c = sqlx::PgConnection::connect(&url).await.unwrap();
        // Duplicates make the unique build fail and leave its index INVALID.
        assert!(
            c.execute("CREATE UNIQUE INDEX CONCURRENTLY t1_id ON t_a.t1 (id)")
                .await
                .is_err()
        );
        c.execute(sqlx::raw_sql(&format!(
            "DELETE FROM t_a.t1 WHERE ctid <> (SELECT min(ctid) FROM t_a.t1);
             INSERT INTO t_a.fleetmig_history (version, name, checksum, run_id, dirty) VALUES (2, 'idx', '{idx}', 'x', true);
             DELETE FROM t_b.t1 WHERE ctid <> (SELECT min(ctid) FROM t_b.t1);
             INSERT INTO t_b.fleetmig_history (version, name, checksum, run_id) VALUES (2, 'idx', '{idx}', 'x');
             INSERT INTO t_b.fleetmig_history (version, name, checksum, run_id, dirty) VALUES (3, 'plain', '{plain}', 'x', true);"
        )))
        .await
        .unwrap();
    });
    assert_eq!(indexes(&pg, "t_a"), ["t1_id INVALID"]);

    let status = p.run(&["status", "--format", "json"]);
    let doc: serde_json::Value = serde_json::from_str(&status.stdout).unwrap();
    let detail = |i: usize| doc["tenants"][i]["detail"].as_str().unwrap().to_owned();
    assert!(
        detail(0).contains("rerun-if-dirty, so the next `up` runs it again"),
        "{doc}"
    );
    assert!(
        detail(1).contains(
            "check by hand whether it took effect, then `fleetmig stamp 3 --select id=b` (it did) or `fleetmig stamp 2 --select id=b` (it did not)"
        ),
        "{doc}"
    );

    let up = p.run(&["up", "--select", "id=a"]);
    assert_eq!(up.code, 0, "{up:?}");
    assert!(tenant_line(&up.stdout, "a").contains("1 -> 3  2 applied"), "{up:?}");
    assert_eq!(versions(&pg, "t_a"), ["1", "2", "3"]);
    assert_eq!(indexes(&pg, "t_a"), ["t1_id valid", "t1_plain valid"]);

    let up = p.run(&["up", "--select", "id=b"]);
    assert_eq!(up.code, 1, "{up:?}");
    assert!(tenant_line(&up.stdout, "b").contains("dirty"), "{up:?}");
    assert_eq!(versions(&pg, "t_b"), ["1", "2", "3 dirty"]);
}

#[test]
fn a_rollback_step_that_times_out_on_a_lock_is_retried_and_each_retry_is_an_event() {
    let Some(pg) = Pg::create("rbretry") else { return };
    pg.exec("CREATE TABLE public.gate (x INT)");
    let p = Project::new();
    p.fleet(&fleet(&pg.url(), &["a"]));
    // Migration 2 fails on its SQL, so migration 1 is rolled back; its down script needs
    // the gate, which the test holds until the rollback's retry is announced.
    p.migration("0001_one.up.sql", "CREATE TABLE t1 (id INT);\n")
        .migration(
            "0001_one.down.sql",
            "LOCK TABLE public.gate IN ACCESS SHARE MODE;\nDROP TABLE t1;\n",
        )
        .migration("0002_two.up.sql", "CREATE TABLE t1 (id INT);\n")
        .migration("0002_two.down.sql", "SELECT 1;\n");

    let mut gate = Holder::open(&pg);
    gate.exec("BEGIN; LOCK TABLE public.gate IN ACCESS EXCLUSIVE MODE");
    let mut up = Bg::spawn(&p, &["up", "--format", "json", "--lock-timeout", "100ms"]);
    let retry = up.wait_line("announcing the rollback's retry", |l| is_event(l, "step_retried"));
    gate.exec("COMMIT");
    let run = up.finish();

    let evs = events(&run.stdout);
    let retry: serde_json::Value = serde_json::from_str(&retry).unwrap();
    assert_eq!(
        (&retry["tenant"], &retry["wave"], &retry["attempt"]),
        (&"a".into(), &1.into(), &2.into()),
        "{retry}"
    );
    assert_eq!(retry["error"]["code"], "55P03", "{retry}");
    let order: Vec<&str> = evs.iter().filter_map(|e| e["event"].as_str()).collect();
    let at = |kind: &str| {
        order
            .iter()
            .position(|e| *e == kind)
            .unwrap_or_else(|| panic!("no {kind}: {order:?}"))
    };
    assert!(
        at("rollback_started") < at("step_retried"),
        "the retry is the rollback's: {order:?}"
    );
    let rolled = evs.iter().find(|e| e["event"] == "tenant_rolled_back").unwrap();
    assert_eq!(
        (&rolled["to"], &rolled["error"]),
        (&0.into(), &serde_json::Value::Null),
        "{rolled}"
    );
    assert_eq!(versions(&pg, "t_a"), Vec::<String>::new());
}
