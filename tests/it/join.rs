//! Several runners on one run through a PostgreSQL ledger: one killed mid-run and its
//! tenants taken over, and a failure limit that stops every runner.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::{Pg, Project};

/// A fleet of `n` schema-tenants `t_x000`... on `pg`, with three slow migrations that each
/// add a row to the tenant's `applied` table: a migration that ran twice shows twice.
/// `fail` makes migration 2 raise on that tenant.
fn fleet(pg: &Pg, n: usize, fail: Option<&str>) -> Project {
    let p = Project::new();
    p.migration(
        "0001_applied.up.sql",
        "CREATE TABLE applied (v int); INSERT INTO applied VALUES (1); SELECT pg_sleep(0.05);",
    );
    p.migration("0001_applied.down.sql", "DROP TABLE applied;");
    let raise = fail.map_or(String::new(), |id| {
        format!("DO $$ BEGIN IF current_schema() = 't_{id}' THEN RAISE EXCEPTION 'boom'; END IF; END $$;")
    });
    p.migration(
        "0002_two.up.sql",
        &format!("INSERT INTO applied VALUES (2); SELECT pg_sleep(0.05); {raise}"),
    );
    p.migration("0002_two.down.sql", "DELETE FROM applied WHERE v = 2;");
    p.migration(
        "0003_three.up.sql",
        "INSERT INTO applied VALUES (3); SELECT pg_sleep(0.05);",
    );
    p.migration("0003_three.down.sql", "DELETE FROM applied WHERE v = 3;");
    let tenants: String = (0..n)
        .map(|i| format!("  - {{ id: x{i:03}{} }}\n", if i < 2 { ", canary: true" } else { "" }))
        .collect();
    p.fleet(&format!(
        "hosts:\n  pg: {{ url: \"{}\", max_connections: 3 }}\n\
         defaults: {{ host: pg, schema: \"t_{{id}}\" }}\ntenants:\n{tenants}",
        pg.url()
    ));
    p
}

/// A fleetmig process whose JSON lines arrive on a channel and whose stderr is kept.
struct Runner {
    child: Child,
    lines: Receiver<String>,
    stderr: JoinHandle<String>,
}

impl Runner {
    fn start(p: &Project, args: &[&str]) -> Runner {
        let mut child = p
            .command(args)
            .env("FLEETMIG_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let out = BufReader::new(child.stdout.take().unwrap());
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for line in out.lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut err = child.stderr.take().unwrap();
        let stderr = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = err.read_to_string(&mut s);
            s
        });
        Runner { child, lines, stderr }
    }

    /// The next event, parsed; panics after a minute of silence.
    fn next_event(&self) -> Value {
        let line = self
            .lines
            .recv_timeout(Duration::from_secs(60))
            .expect("a runner went silent");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"))
    }

    /// Kills the runner and returns every event it had printed, read or not. A line cut
    /// short by the kill is dropped.
    fn kill_9(mut self) -> Vec<Value> {
        std::process::Command::new("kill")
            .args(["-9", &self.child.id().to_string()])
            .status()
            .unwrap();
        let _ = self.child.wait();
        self.lines
            .iter()
            .filter_map(|l| serde_json::from_str(&l).ok())
            .collect()
    }

    /// Waits for the end (a watchdog, not a timing assertion): exit code, events, stderr.
    fn finish(mut self) -> (i32, Vec<Value>, String) {
        let deadline = Instant::now() + Duration::from_secs(120);
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("a runner hung");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let events = self
            .lines
            .iter()
            .map(|l| serde_json::from_str(&l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect();
        (status.code().unwrap_or(-1), events, self.stderr.join().unwrap())
    }
}

/// Starts the creating runner and returns it with the run id from its `run_started` line.
fn create(p: &Project, ledger: &str, extra: &[&str]) -> (Runner, String) {
    let mut args = vec![
        "up", "--shared", "--ledger", ledger, "--lease", "2s", "--format", "json", "-j", "2",
    ];
    args.extend_from_slice(extra);
    let first = Runner::start(p, &args);
    let started = first.next_event();
    assert_eq!(started["event"], "run_started", "{started}");
    let run = started["run_id"].as_str().unwrap().to_owned();
    (first, run)
}

fn join(p: &Project, ledger: &str, run: &str) -> Runner {
    Runner::start(
        p,
        &[
            "up", "--join", run, "--ledger", ledger, "--lease", "2s", "--format", "json", "-j", "2",
        ],
    )
}

fn applied(pg: &Pg, id: &str) -> Vec<String> {
    pg.column(&format!("SELECT v::text FROM t_{id}.applied ORDER BY v"))
}

fn history(pg: &Pg, id: &str) -> Vec<String> {
    pg.column(&format!(
        "SELECT version::text FROM t_{id}.fleetmig_history ORDER BY version"
    ))
}

fn schema_exists(pg: &Pg, id: &str) -> bool {
    pg.column(&format!(
        "SELECT count(*)::text FROM information_schema.schemata WHERE schema_name = 't_{id}'"
    )) == ["1"]
}

#[test]
fn three_runners_one_killed_every_tenant_migrated_exactly_once() {
    let Some(tenants_db) = Pg::create("join_t") else { return };
    let Some(ledger_db) = Pg::create("join_l") else { return };
    let n = 60;
    let p = fleet(&tenants_db, n, None);
    let ledger = ledger_db.url();
    let (first, run) = create(&p, &ledger, &["--waves", "20,100%"]);
    let victim = join(&p, &ledger, &run);
    let third = join(&p, &ledger, &run);

    let finished_ids = |events: &[Value]| -> Vec<String> {
        events
            .iter()
            .filter(|e| e["event"] == "tenant_finished")
            .map(|e| e["tenant"].as_str().unwrap().to_owned())
            .collect()
    };
    let mut seen = Vec::new();
    while finished_ids(&seen).len() < 3 {
        seen.push(victim.next_event());
    }
    // The victim runs on between its third line and the kill: what it printed in that
    // time counts as its own too.
    seen.extend(victim.kill_9());
    let by_victim: BTreeSet<String> = finished_ids(&seen).into_iter().collect();

    let mut by_survivors = BTreeSet::new();
    let mut took_over = false;
    for (name, runner) in [("first", first), ("third", third)] {
        let (code, events, stderr) = runner.finish();
        assert_eq!(code, 0, "{name} runner: {stderr}");
        let end = events.last().unwrap();
        assert_eq!(end["event"], "run_finished", "{name}: {end}");
        assert_eq!(end["stop_reason"]["kind"], "completed", "{name}: {end}");
        for id in finished_ids(&events) {
            assert!(by_survivors.insert(id.clone()), "{id} was run by both survivors");
        }
        took_over |= stderr.contains("taking it over");
    }
    assert!(took_over, "a survivor took over a tenant of the killed runner");
    assert!(
        by_victim.is_disjoint(&by_survivors),
        "a tenant the victim finished was run again: {:?}",
        by_victim.intersection(&by_survivors).collect::<Vec<_>>()
    );
    // A runner records a tenant's end on the ledger before it prints it, so the kill can
    // fall between the two on each of its two lanes: at most two tenants are nobody's in
    // the printed lines (the ledger below still has every one succeeded).
    let unprinted = n - by_victim.len() - by_survivors.len();
    assert!(
        unprinted <= 2,
        "the survivors ran the other tenants: {unprinted} missing"
    );

    for i in 0..n {
        let id = format!("x{i:03}");
        assert_eq!(applied(&tenants_db, &id), ["1", "2", "3"], "{id}: each migration once");
        assert_eq!(history(&tenants_db, &id), ["1", "2", "3"], "{id}");
    }
    let states = ledger_db.column(&format!(
        "SELECT state || ' ' || final_version::text FROM fleetmig_run_tenants WHERE run_id = '{run}'"
    ));
    assert_eq!(states, vec!["succeeded 3"; n]);
    assert_eq!(
        ledger_db.column(&format!("SELECT stop_reason FROM fleetmig_runs WHERE run_id = '{run}'")),
        ["completed"]
    );
    // Waves held across runners: no tenant of a wave was claimed before every tenant of
    // the wave before it had finished (claims and finishes are both on the ledger's clock).
    for wave in 2..=3 {
        let held = ledger_db.column(&format!(
            "SELECT ((SELECT min(claimed_ms) FROM fleetmig_run_tenants WHERE run_id = '{run}' AND wave = {wave}) \
             >= (SELECT max(updated_ms) FROM fleetmig_run_tenants WHERE run_id = '{run}' AND wave = {wave} - 1))::text"
        ));
        assert_eq!(held, ["true"], "wave {wave}");
    }
    let report = p.run(&["report", &run, "--ledger", &ledger, "--format", "json"]);
    assert_eq!(report.code, 0, "{}", report.all());
    let report: Value = serde_json::from_str(&report.stdout).unwrap();
    assert_eq!(report["stop_reason"]["kind"], "completed");
    assert_eq!(report["tenants"].as_array().unwrap().len(), n);
    assert_eq!(report["summary"]["succeeded"], n);
}

#[test]
fn the_failure_limit_stops_every_runner() {
    let Some(tenants_db) = Pg::create("join_ft") else {
        return;
    };
    let Some(ledger_db) = Pg::create("join_fl") else { return };
    let n = 40;
    let p = fleet(&tenants_db, n, Some("x020"));
    let ledger = ledger_db.url();
    let (first, run) = create(&p, &ledger, &["--max-failures", "1"]);
    let second = join(&p, &ledger, &run);
    let third = join(&p, &ledger, &run);
    let mut busy = 0;
    for (name, runner) in [("first", first), ("second", second), ("third", third)] {
        let (code, events, stderr) = runner.finish();
        assert_eq!(code, 1, "{name} runner: {stderr}");
        let end = events.last().unwrap();
        assert_eq!(end["stop_reason"]["kind"], "max_failures", "{name}: {end}");
        busy += usize::from(events.iter().any(|e| e["event"] == "tenant_finished"));
    }
    assert!(
        busy >= 2,
        "several runners were at work when the limit stopped them all"
    );
    let rows = ledger_db.rows(&format!(
        "SELECT tenant, state, claimed_ms::text FROM fleetmig_run_tenants WHERE run_id = '{run}' ORDER BY tenant"
    ));
    let state = |id: &str| {
        rows.iter().find(|r| r[0].as_deref() == Some(id)).unwrap()[1]
            .clone()
            .unwrap()
    };
    assert_eq!(state("x020"), "rolled_back", "its runner rolled the failed tenant back");
    let failed_at: i64 = ledger_db.column(&format!(
        "SELECT updated_ms::text FROM fleetmig_run_tenants WHERE run_id = '{run}' AND tenant = 'x020'"
    ))[0]
        .parse()
        .unwrap();
    let marker = ledger_db.column(&format!("SELECT shared_stop FROM fleetmig_runs WHERE run_id = '{run}'"));
    assert!(marker[0].contains("max_failures"), "{marker:?}");
    let mut pending = 0;
    for r in &rows {
        let id = r[0].as_deref().unwrap();
        let id = id.to_owned();
        match r[2].as_deref() {
            // A claim reads the marker in the same statement; the slack covers claims that
            // were already running when the failure's transaction committed (three more
            // statements after the failed row's time, on a machine busy with other tests).
            // Claims that went on regardless would show as no tenant left pending below.
            Some(claimed) => assert!(
                claimed.parse::<i64>().unwrap() <= failed_at + 500,
                "{id} claimed after the marker"
            ),
            None => {
                pending += 1;
                assert_eq!(r[1].as_deref(), Some("pending"), "{id}");
                assert!(!schema_exists(&tenants_db, &id), "{id} was never started: untouched");
            }
        }
    }
    assert!(pending > 0, "the stop left tenants unstarted");
    let stop = ledger_db.column(&format!("SELECT stop_reason FROM fleetmig_runs WHERE run_id = '{run}'"));
    assert!(stop[0].starts_with("1 tenant(s) failed"), "{stop:?}");
    // The assembled report says which migration failed and what the rollback did.
    let doc = p.run(&["report", &run, "--ledger", &ledger, "--format", "json"]);
    let doc: Value = serde_json::from_str(&doc.stdout).unwrap_or_else(|e| panic!("{e}: {}", doc.all()));
    let x020 = doc["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == "x020")
        .unwrap();
    assert_eq!(x020["failed_migration"], 2, "{x020}");
    assert_eq!(x020["rollback"], serde_json::json!([1, 0]), "{x020}");
}

#[test]
fn sharing_needs_a_postgres_ledger_and_refuses_gates() {
    let p = Project::new();
    p.migration("0001_a.up.sql", "CREATE TABLE a (id INTEGER);");
    p.fleet("defaults: { url: \"sqlite://data/{id}.db\" }\ntenants:\n  - { id: one }\n");
    let shared = p.run(&["up", "--shared"]);
    assert_eq!(shared.code, 2, "{}", shared.all());
    assert!(shared.stderr.contains("need a PostgreSQL ledger"), "{}", shared.stderr);
    let joined = p.run(&["up", "--join", "some-run"]);
    assert_eq!(joined.code, 2, "{}", joined.all());
    assert!(joined.stderr.contains("need a PostgreSQL ledger"), "{}", joined.stderr);
    let gated = p.run(&["up", "--shared", "--check", "SELECT true"]);
    assert_eq!(gated.code, 2, "{}", gated.all());
    assert!(
        gated.stderr.contains("--check is not supported with --shared"),
        "{}",
        gated.stderr
    );
    assert!(!p.db_path("one").exists(), "nothing ran");
}

/// The report a shared run assembles from the ledger says what each runner's own report
/// says of its failures: where (while connecting), which migration, the code, the rollback.
#[test]
fn the_assembled_report_keeps_where_and_how_tenants_failed() {
    let Some(tenants_db) = Pg::create("join_at") else {
        return;
    };
    let Some(ledger_db) = Pg::create("join_al") else { return };
    let p = fleet(&tenants_db, 6, Some("x003"));
    let yaml = std::fs::read_to_string(p.path().join("tenants.yaml"))
        .unwrap()
        .replace("{ id: x004 }", "{ id: x004, init_sql: \"SELEC 1\" }");
    p.fleet(&yaml);
    // x005 applied migration 1, whose file was then edited: refused.
    let ledger = ledger_db.url();
    let one = p.run(&["up", "--to", "1", "--select", "id=x005", "--ledger", &ledger]);
    assert_eq!(one.code, 0, "{}", one.all());
    p.migration(
        "0001_applied.up.sql",
        "CREATE TABLE applied (v int); INSERT INTO applied VALUES (1); SELECT pg_sleep(0.05); -- edited",
    );
    let (first, run) = create(&p, &ledger, &["--max-failures", "all"]);
    let second = join(&p, &ledger, &run);
    // Each exits by its own tenants: one that ran no failing tenant exits 0.
    let codes: Vec<i32> = [first, second]
        .into_iter()
        .map(|runner| {
            let (code, _, stderr) = runner.finish();
            assert!(code == 0 || code == 1, "{code}: {stderr}");
            code
        })
        .collect();
    assert!(codes.contains(&1), "{codes:?}");
    let doc = p.run(&["report", &run, "--ledger", &ledger, "--format", "json"]);
    let doc: Value = serde_json::from_str(&doc.stdout).unwrap_or_else(|e| panic!("{e}: {}", doc.all()));
    let tenant = |id: &str| {
        doc["tenants"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["id"] == id)
            .unwrap_or_else(|| panic!("no {id} in {doc}"))
            .clone()
    };
    let raised = tenant("x003");
    assert_eq!(raised["status"], "failed", "{raised}");
    assert_eq!(raised["failed_migration"], 2, "{raised}");
    assert_eq!(raised["error_code"], "P0001", "{raised}");
    let connecting = tenant("x004");
    assert_eq!(connecting["status"], "failed", "{connecting}");
    assert_eq!(connecting["during"], "connecting", "{connecting}");
    assert_eq!(connecting["error_code"], "42601", "{connecting}");
    let refused = tenant("x005");
    assert_eq!(refused["status"], "skipped", "{refused}");
    assert_eq!(refused["refusal"]["kind"], "modified", "{refused}");
    let text = p.run(&["report", &run, "--ledger", &ledger]);
    let line = crate::support::tenant_line(&text.stdout, "x005");
    assert!(line.contains("migration 1 edited (see below)"), "{}", text.all());
    let line = crate::support::tenant_line(&text.stdout, "x004");
    assert!(line.contains("while connecting"), "{}", text.all());
    let line = crate::support::tenant_line(&text.stdout, "x003");
    assert!(line.contains("migration 2: applying 0002_two: boom"), "{}", text.all());
}

/// A runner of a shared run applies its breaker to the tenants it claims: a dead host's
/// tenants it claims after K failed attempts are skipped untried, the ledger records why,
/// and the run's report assembled from the ledger lists the host as cut off.
#[test]
fn a_runner_cuts_off_a_dead_host_among_the_tenants_it_claims() {
    let Some(tenants_db) = Pg::create("join_bt") else {
        return;
    };
    let Some(ledger_db) = Pg::create("join_bl") else { return };
    let p = Project::new();
    p.migration("0001_a.up.sql", "CREATE TABLE a (v int);");
    let tenants: String = (0..4)
        .map(|i| format!("  - {{ id: x{i:03}, host: pg }}\n"))
        .chain((0..20).map(|i| format!("  - {{ id: d{i:03}, host: dead }}\n")))
        .collect();
    p.fleet(&format!(
        "hosts:\n  pg: {{ url: \"{}\", max_connections: 3 }}\n  dead: {{ url: \"postgres://u@127.0.0.1:1/db\" }}\n\
         defaults: {{ schema: \"t_{{id}}\" }}\ntenants:\n{tenants}",
        tenants_db.url()
    ));
    let ledger = ledger_db.url();
    let flags = ["--host-failures", "2", "--retry-for", "0s", "--max-skipped", "all"];
    let (runner, run) = create(&p, &ledger, &flags);
    let (code, events, stderr) = runner.finish();
    assert_eq!(code, 1, "skipped tenants: {stderr}");
    let cut: Vec<&Value> = events.iter().filter(|e| e["event"] == "host_cut_off").collect();
    assert_eq!(cut.len(), 1, "{events:?}");
    assert_eq!(cut[0]["host"], "host:dead", "{}", cut[0]);
    let untried: Vec<&str> = events
        .iter()
        .filter(|e| e["event"] == "tenant_finished")
        .filter(|e| e.to_string().contains("not tried: "))
        .map(|e| e["tenant"].as_str().unwrap())
        .collect();
    assert!(
        untried.len() >= 20 - 2 - 2,
        "at most -j tenants were in flight when it tripped: {events:?}"
    );

    let report = p.run(&["report", &run, "--ledger", &ledger, "--format", "json"]);
    let report: Value = serde_json::from_str(&report.stdout).unwrap_or_else(|e| panic!("{e}: {report:?}"));
    let hosts = report["hosts_cut_off"]
        .as_array()
        .unwrap_or_else(|| panic!("{report:#}"));
    assert_eq!(hosts.len(), 1, "{report:#}");
    assert_eq!(hosts[0]["host"], "host:dead");
    assert_eq!(hosts[0]["skipped"].as_u64(), Some(untried.len() as u64));
    assert_eq!(hosts[0]["failures"], 2, "{}", hosts[0]);
    let status = |id: &str| {
        report["tenants"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["id"] == id)
            .unwrap()["status"]
            .clone()
    };
    for i in 0..4 {
        assert_eq!(status(&format!("x{i:03}")), "succeeded", "{report:#}");
    }
    for i in 0..20 {
        assert_eq!(status(&format!("d{i:03}")), "skipped", "{report:#}");
    }
}
