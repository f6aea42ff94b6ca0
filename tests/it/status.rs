//! `status` on a fleet at mixed versions (the chart, the lagging list with the ledger's
//! since-when and last errors, text and JSON, exit codes), `wait` returning when a
//! concurrent `up` finishes and timing out with the laggards, and the library calls.

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{Pg, Project, Run, sqlite_exec};

/// Four migrations; the last creates `blocker`, so it fails on a tenant that already has one.
fn migrations(p: &Project) {
    p.migration("0001_one.up.sql", "CREATE TABLE t1 (x INT);\n")
        .migration("0002_two.up.sql", "CREATE TABLE t2 (x INT);\n")
        .migration("0003_three.up.sql", "CREATE TABLE t3 (x INT);\n")
        .migration("0004_blocker.up.sql", "CREATE TABLE blocker (x INT);\n");
}

const MIXED: [&str; 8] = ["a", "b", "c", "d", "e", "broken", "drifted", "gone"];

/// The unreachable tenant: nothing listens on port 1.
const GONE: &str = "  - {id: gone, url: \"postgres://postgres@127.0.0.1:1/x\", schema: s}\n";

fn assert_code(run: &Run, code: i32) {
    assert_eq!(run.code, code, "{run:#?}");
}

fn json_of(run: &Run) -> Value {
    serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("{e}: {run:#?}"))
}

/// Brings the fleet of [`MIXED`] to mixed versions: a, b, c at 4; d at 2; e never
/// migrated; broken failed at 4 (left at 3); drifted at 4 with migration 1 edited after;
/// gone unreachable. `block` makes a tenant's migration 4 fail, `drift` edits a history row.
fn mix(p: &Project, block: impl Fn(&str), drift: impl Fn(&str)) {
    block("broken");
    assert_code(&p.run(&["up", "--to", "2", "--select", "id=d"]), 0);
    let run = p.run(&[
        "up",
        "--select",
        "id!=d,id!=e",
        "--max-failures",
        "all",
        "--connect-timeout",
        "2s",
        "--retry-for",
        "0s",
    ]);
    assert_code(&run, 1);
    drift("drifted");
}

fn row(doc: &Value, list: &str, id: &str) -> Value {
    doc[list]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == id)
        .unwrap_or_else(|| panic!("no {id} in {list}: {doc:#}"))
        .clone()
}

fn check_mixed_status(p: &Project) {
    let status = p.run(&["status", "--format", "json", "--connect-timeout", "2s"]);
    assert_code(&status, 1);
    let doc = json_of(&status);
    assert_eq!(doc["head"], 4);
    assert_eq!(doc["target"], 4);
    assert_eq!(doc["histogram"], json!({"0": 1, "2": 1, "3": 1, "4": 4}), "{doc:#}");
    assert_eq!(
        doc["counts"],
        json!({"current": 3, "behind": 3, "drifted": 1, "unreachable": 1}),
        "{doc:#}"
    );
    let tenants: Vec<(&str, i64, &str, i64)> = doc["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["id"].as_str().unwrap(),
                t["version"].as_i64().unwrap(),
                t["state"].as_str().unwrap(),
                t["pending"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        tenants,
        [
            ("a", 4, "current", 0),
            ("b", 4, "current", 0),
            ("c", 4, "current", 0),
            ("d", 2, "behind", 2),
            ("e", 0, "behind", 4),
            ("broken", 3, "behind", 1),
            ("drifted", 4, "drifted", 0),
            ("gone", 0, "unreachable", 0),
        ]
    );
    let lagging: Vec<&str> = doc["lagging"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap())
        .collect();
    assert_eq!(lagging, ["d", "e", "broken", "drifted", "gone"]);

    // d's last run succeeded (to 2) and e was never in a run: the ledger has nothing to add.
    let d = row(&doc, "lagging", "d");
    assert_eq!(
        (d["behind_by"].clone(), d["since"].clone(), d["last_error"].clone()),
        (json!(2), Value::Null, Value::Null)
    );
    assert_eq!(row(&doc, "lagging", "e")["behind_by"], 4);

    let broken = row(&doc, "lagging", "broken");
    assert_eq!(broken["behind_by"], 1);
    let error = broken["last_error"]["error"].as_str().unwrap();
    assert!(
        error.contains("0004_blocker") && error.contains("blocker"),
        "{broken:#}"
    );
    let since = broken["since_ms"].as_i64().unwrap();
    assert!(since <= broken["last_error"]["at_ms"].as_i64().unwrap(), "{broken:#}");
    assert!(broken["since"].as_str().unwrap().ends_with('Z'), "{broken:#}");

    let drifted = row(&doc, "lagging", "drifted");
    assert_eq!(drifted["state"], "drifted");
    assert!(
        drifted["detail"].as_str().unwrap().contains("migration 1 was edited"),
        "{drifted:#}"
    );

    let gone = row(&doc, "lagging", "gone");
    assert_eq!(
        (gone["version"].clone(), gone["behind_by"].clone()),
        (Value::Null, Value::Null)
    );
    assert!(gone["detail"].as_str().unwrap().starts_with("connecting:"), "{gone:#}");
    assert!(gone["since_ms"].is_i64(), "skipped by the last run: {gone:#}");
    assert!(
        gone["last_error"]["error"].as_str().unwrap().contains("unreachable"),
        "{gone:#}"
    );

    let text = p.run(&["status", "--connect-timeout", "2s"]);
    assert_code(&text, 1);
    let lines: Vec<&str> = text.stdout.lines().collect();
    let bar = |n: usize| format!("{}{}", "█".repeat(n), " ".repeat(40 - n));
    assert_eq!(
        lines[..6],
        [
            "Tenants by version (target 4, head 4):".to_owned(),
            format!("  4 {} 4 target", bar(40)),
            format!("  3 {} 1", bar(10)),
            format!("  2 {} 1", bar(10)),
            format!("  0 {} 1", bar(10)),
            format!("  ? {} 1 unreachable", bar(10)),
        ],
        "{text:#?}"
    );
    assert!(
        text.stdout
            .contains("3 of 8 tenant(s) current at 4. Not current: 3 behind, 1 drifted, 1 unreachable.\n"),
        "{text:#?}"
    );
    for id in MIXED {
        assert!(
            crate::support::tenant_line(&text.stdout, id).starts_with(id),
            "{text:#?}"
        );
    }

    let lagging = p.run(&["status", "--lagging", "--connect-timeout", "2s"]);
    assert_code(&lagging, 1);
    let listed: Vec<&str> = lagging
        .stdout
        .lines()
        .skip_while(|l| !l.starts_with("TENANT"))
        .skip(1)
        .take_while(|l| !l.is_empty())
        .map(|l| l.split_whitespace().next().unwrap())
        .collect();
    assert_eq!(listed, ["d", "e", "broken", "drifted", "gone"], "{lagging:#?}");
    let broken_line = crate::support::tenant_line(&lagging.stdout, "broken");
    let words: Vec<&str> = broken_line.split_whitespace().collect();
    assert_eq!(words[..4], ["broken", "3", "1", "behind"], "{broken_line}");
    assert!(broken_line.contains("last error (run "), "{broken_line}");
    let json_lagging = json_of(&p.run(&["status", "--lagging", "--format", "json", "--connect-timeout", "2s"]));
    assert_eq!(json_lagging["tenants"].as_array().unwrap().len(), 5);
    assert_eq!(json_lagging["histogram"], doc["histogram"]);

    let fine = p.run(&["status", "--select", "id=a", "--select", "id=b"]);
    assert_code(&fine, 0);
    assert!(fine.stdout.contains("2 of 2 tenant(s) current at 4.\n"), "{fine:#?}");
    let at_two = p.run(&["status", "--select", "id=d", "--to", "2", "--format", "json"]);
    assert_code(&at_two, 0);
}

#[test]
fn status_of_a_mixed_sqlite_fleet() {
    let p = Project::new();
    migrations(&p);
    let mut fleet = String::from("defaults: {url: \"sqlite://data/{id}.db\"}\ntenants:\n");
    for id in &MIXED[..7] {
        fleet.push_str(&format!("  - {{id: {id}}}\n"));
    }
    fleet.push_str(GONE);
    p.fleet(&fleet);
    std::fs::create_dir_all(p.path().join("data")).unwrap();
    mix(
        &p,
        |id| sqlite_exec(&p.db_path(id), "CREATE TABLE blocker (x INT)"),
        |id| {
            sqlite_exec(
                &p.db_path(id),
                "UPDATE fleetmig_history SET checksum = 'edited' WHERE version = '1'",
            )
        },
    );
    check_mixed_status(&p);
}

#[test]
fn status_of_mixed_postgres_schema_tenants() {
    let Some(pg) = Pg::create("status") else { return };
    let p = Project::new();
    migrations(&p);
    // A named host: its schema-tenants are read with a few queries, not a session each.
    let mut fleet = format!(
        "hosts:\n  main: {{url: \"{}\", max_connections: 4}}\ndefaults: {{host: main, schema: \"t_{{id}}\"}}\ntenants:\n",
        pg.url()
    );
    for id in &MIXED[..7] {
        fleet.push_str(&format!("  - {{id: {id}}}\n"));
    }
    fleet.push_str(GONE);
    p.fleet(&fleet);
    mix(
        &p,
        |id| pg.exec(&format!("CREATE SCHEMA t_{id}; CREATE TABLE t_{id}.blocker (x INT)")),
        |id| {
            pg.exec(&format!(
                "UPDATE t_{id}.fleetmig_history SET checksum = 'edited' WHERE version = '1'"
            ))
        },
    );
    check_mixed_status(&p);
}

/// Enough schema-tenants on one host that the survey splits them into batches read side
/// by side: every tenant still gets its own history, none another's.
#[test]
fn status_of_many_postgres_schema_tenants_read_in_batches() {
    let Some(pg) = Pg::create("statusmany") else { return };
    let p = Project::new();
    migrations(&p);
    let mut fleet = format!(
        "hosts:\n  main: {{url: \"{}\", max_connections: 3}}\ndefaults: {{host: main, schema: \"t_{{id}}\"}}\ntenants:\n",
        pg.url()
    );
    let ids: Vec<String> = (0..90).map(|i| format!("n{i:02}")).collect();
    for (i, id) in ids.iter().enumerate() {
        fleet.push_str(&format!("  - {{id: {id}, labels: {{v: \"{}\"}}}}\n", i % 5));
    }
    p.fleet(&fleet);
    for v in 1..=4 {
        let to = v.to_string();
        let select = format!("v={v}");
        assert_code(&p.run(&["up", "--to", &to, "--select", &select]), 0);
    }
    let status = p.run(&["status", "--format", "json"]);
    assert_code(&status, 1);
    let doc = json_of(&status);
    assert_eq!(
        doc["histogram"],
        json!({"0": 18, "1": 18, "2": 18, "3": 18, "4": 18}),
        "{doc:#}"
    );
    for (i, id) in ids.iter().enumerate() {
        assert_eq!(row(&doc, "tenants", id)["version"], i % 5, "{id}");
    }
    // The survey also lets a no-op `up` pass the tenants already there without a session.
    let run = p.run(&["up", "--to", "4", "--select", "v=4", "--format", "json"]);
    assert_code(&run, 0);
    assert_eq!(run.stdout.matches("\"step_started\"").count(), 0, "{}", run.stdout);
}

#[test]
fn status_reads_no_ledger_and_creates_none() {
    let p = Project::new();
    migrations(&p);
    p.fleet("defaults: {url: \"sqlite://data/{id}.db\"}\ntenants:\n  - {id: a}\n  - {id: b}\n");
    for args in [
        &["status"][..],
        &["status", "--format", "json"],
        &["status", "--lagging"],
    ] {
        let run = p.run(args);
        assert_code(&run, 1);
    }
    let doc = json_of(&p.run(&["status", "--format", "json"]));
    assert_eq!(doc["lagging"][0]["since"], Value::Null);
    assert!(doc.get("ledger_error").is_none(), "{doc:#}");
    assert!(!p.path().join("tenants.ledger.db").exists());
}

/// A fleetmig process whose stdout lines arrive on a channel as it writes them.
struct Watched {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

/// A watchdog for a child process, not a timing assertion.
const PATIENCE: Duration = Duration::from_secs(120);

impl Watched {
    fn spawn(p: &Project, args: &[&str]) -> Watched {
        let mut child = p
            .command(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Watched {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Blocks until a line equal to `want` arrives.
    fn expect_line(&mut self, want: &str) {
        while !self.seen.iter().any(|l| l == want) {
            match self.lines.recv_timeout(PATIENCE) {
                Ok(line) => self.seen.push(line),
                Err(_) => {
                    let _ = self.child.kill();
                    panic!("no line `{want}` from the process; it wrote {:#?}", self.seen);
                }
            }
        }
    }

    /// Waits for the process to end: its exit code and everything it wrote.
    fn finish(mut self) -> (i32, String) {
        loop {
            match self.lines.recv_timeout(PATIENCE) {
                Ok(line) => self.seen.push(line),
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    let _ = self.child.kill();
                    panic!("the process did not end; it wrote {:#?}", self.seen);
                }
            }
        }
        let code = self.child.wait().unwrap().code().unwrap_or(-1);
        (code, self.seen.join("\n"))
    }
}

/// `wait` sees the fleet short, `up` runs meanwhile, and `wait` ends with 0.
fn wait_returns_after_up(p: &Project) {
    let mut wait = Watched::spawn(p, &["wait", "--interval", "50ms", "--timeout", "10m"]);
    wait.expect_line("Waiting: 3 of 3 tenant(s) have not reached 4.");
    assert_code(&p.run(&["up"]), 0);
    let (code, out) = wait.finish();
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("\nAll 3 tenant(s) have reached 4 (waited"), "{out}");
}

/// With w2 reset (its file or schema gone) and taken to 3: `wait --to 3` counts the
/// tenants past 3 as there, and `wait` for head gives up, naming w2.
fn wait_times_out(p: &Project) {
    assert_code(&p.run(&["up", "--to", "3", "--select", "id=w2"]), 0);
    let at_three = p.run(&["wait", "--to", "3", "--timeout", "10m"]);
    assert_code(&at_three, 0);
    assert!(
        at_three.stdout.starts_with("All 3 tenant(s) have reached 3 (waited"),
        "{at_three:#?}"
    );

    let run = p.run(&["wait", "--interval", "50ms", "--timeout", "300ms"]);
    assert_code(&run, 1);
    let first = run.stdout.lines().find(|l| l.starts_with("Timed out after "));
    assert!(
        first.is_some_and(|l| l.ends_with(": 1 of 3 tenant(s) have not reached 4:")),
        "{run:#?}"
    );
    let words: Vec<&str> = crate::support::tenant_line(&run.stdout, "w2")
        .split_whitespace()
        .collect();
    assert_eq!(words, ["w2", "3", "1", "behind"], "{run:#?}");
    assert!(!run.stdout.contains("w1"), "{run:#?}");

    let json = p.run(&["wait", "--interval", "50ms", "--timeout", "200ms", "--format", "json"]);
    assert_code(&json, 1);
    let doc = json_of(&json);
    assert_eq!(
        (doc["arrived"].clone(), doc["target"].clone(), doc["tenants"].clone()),
        (json!(false), json!(4), json!(3))
    );
    assert_eq!(
        doc["laggards"],
        json!([{"id": "w2", "version": 3, "state": "behind", "behind_by": 1, "detail": null}])
    );
}

fn wait_fleet(p: &Project, defaults: &str) {
    migrations(p);
    p.fleet(&format!(
        "{defaults}tenants:\n  - {{id: w1}}\n  - {{id: w2}}\n  - {{id: w3}}\n"
    ));
}

#[test]
fn wait_on_sqlite_returns_after_a_concurrent_up_and_times_out_on_laggards() {
    let p = Project::new();
    wait_fleet(&p, "defaults: {url: \"sqlite://data/{id}.db\"}\n");
    wait_returns_after_up(&p);
    std::fs::remove_file(p.db_path("w2")).unwrap();
    wait_times_out(&p);
}

#[test]
fn wait_on_postgres_schemas_returns_after_a_concurrent_up_and_times_out_on_laggards() {
    let Some(pg) = Pg::create("wait") else { return };
    let p = Project::new();
    wait_fleet(
        &p,
        &format!(
            "hosts:\n  main: {{url: \"{}\"}}\ndefaults: {{host: main, schema: \"t_{{id}}\"}}\n",
            pg.url()
        ),
    );
    wait_returns_after_up(&p);
    pg.exec("DROP SCHEMA t_w2 CASCADE");
    wait_times_out(&p);
}

#[test]
fn the_library_migrates_and_waits() {
    use fleetmig::api::{self, Options, UpOptions, WaitOptions};

    let p = Project::new();
    wait_fleet(&p, "defaults: {url: \"sqlite://data/{id}.db\"}\n");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let fleet = api::load_fleet(p.path().join("tenants.yaml"), Duration::from_secs(5))
            .await
            .unwrap();
        let set = api::load_migrations(p.path().join("migrations")).unwrap();
        let quick = WaitOptions {
            timeout: Duration::from_millis(100),
            interval: Duration::from_millis(20),
        };
        let short = api::wait_for(&fleet, &set, &Options::default(), &quick).await.unwrap();
        assert!(!short.arrived);
        let ids: Vec<&str> = short.laggards().map(|t| t.id.as_str()).collect();
        assert_eq!(ids, ["w1", "w2", "w3"]);

        let report = api::up(&fleet, &set, &Options::default(), &UpOptions::default())
            .await
            .unwrap();
        assert!(report.is_success(), "{report:#?}");
        let arrived = api::wait_for(&fleet, &set, &Options::default(), &quick).await.unwrap();
        assert!(arrived.arrived);
        assert_eq!(arrived.polls, 1);
        let status = api::status(&fleet, &set, &Options::default()).await.unwrap();
        assert!(status.all_current());
        assert_eq!(
            status.histogram().into_iter().collect::<Vec<_>>(),
            [(fleetmig::model::migration::Version::int(4), 3)]
        );
    });
    assert!(
        !p.path().join("tenants.ledger.db").exists(),
        "the library writes no ledger unless asked"
    );
}

/// More schema-tenants than one survey statement reads, in every state the survey must
/// tell apart, with mixed-case and hyphenated schema names (quoted in SQL): each tenant's
/// row in `status` is what its own history says, and a no-op `up` passes only those at
/// head without a session.
#[test]
fn survey_batches_keep_each_schema_tenants_own_state() {
    let Some(pg) = Pg::create("surveymix") else { return };
    let p = Project::new();
    migrations(&p);
    // Two connections: 230 tenants make three statements of at most 100 tables.
    let mut fleet = format!(
        "hosts:\n  main: {{url: \"{}\", max_connections: 2}}\ndefaults: {{host: main, schema: \"Sv-{{id}}\"}}\ntenants:\n",
        pg.url()
    );
    let ids: Vec<String> = (0..230).map(|i| format!("m{i:03}")).collect();
    for (i, id) in ids.iter().enumerate() {
        let group = ["a", "b", "c"][(i / 100).min(2)];
        fleet.push_str(&format!("  - {{id: {id}, labels: {{g: {group}}}}}\n"));
    }
    p.fleet(&fleet);
    assert_code(&p.run(&["up", "--to", "3", "-j", "4"]), 0);
    // Group a (m000-m099) at 3; b and c at 4, then m200-m205 each put in a state of its own.
    assert_code(&p.run(&["up", "--select", "g!=a", "-j", "4"]), 0);
    let quoted = |id: &str| format!("\"Sv-{id}\"");
    pg.exec(&format!("DROP SCHEMA {} CASCADE", quoted("m200")));
    let m201 = quoted("m201");
    pg.exec(&format!(
        "DROP TABLE {m201}.t1, {m201}.t2, {m201}.t3, {m201}.blocker, {m201}.fleetmig_history"
    ));
    pg.exec(&format!(
        "UPDATE {}.fleetmig_history SET checksum = 'edited' WHERE version = '2'",
        quoted("m202")
    ));
    pg.exec(&format!(
        "UPDATE {}.fleetmig_history SET dirty = true WHERE version = '4'",
        quoted("m203")
    ));
    pg.exec(&format!(
        "INSERT INTO {}.fleetmig_history (version, name, checksum, run_id) VALUES ('9', 'later', 'x', 'r')",
        quoted("m204")
    ));
    let m205 = quoted("m205");
    pg.exec(&format!(
        "DELETE FROM {m205}.fleetmig_history WHERE version = '4'; DROP TABLE {m205}.blocker"
    ));
    let doc = json_of(&p.run(&["status", "--format", "json"]));
    let state = |id: &str| {
        let r = row(&doc, "tenants", id);
        (r["version"].clone(), r["state"].as_str().unwrap_or_default().to_owned())
    };
    for id in &ids[..100] {
        assert_eq!(state(id), (json!(3), "behind".to_owned()), "{id}");
    }
    for id in ids[100..200].iter().chain(&ids[206..]) {
        assert_eq!(state(id), (json!(4), "current".to_owned()), "{id}");
    }
    assert_eq!(state("m200"), (json!(0), "behind".to_owned()));
    assert_eq!(state("m201"), (json!(0), "behind".to_owned()));
    assert_eq!(state("m202").1, "drifted");
    assert_eq!(state("m203").1, "dirty");
    assert_eq!(state("m204").1, "ahead");
    assert_eq!(state("m205"), (json!(3), "behind".to_owned()));
    assert_eq!(doc["counts"]["current"], 124, "{:#}", doc["counts"]);

    // Only the 124 at head pass without a session; m000-m099, m200, m201 and m205 migrate.
    let run = p.run(&[
        "up",
        "--select",
        "id!=m202,id!=m203,id!=m204",
        "--format",
        "json",
        "-j",
        "4",
    ]);
    assert_code(&run, 0);
    assert_eq!(
        run.stdout.matches("\"step_started\"").count(),
        100 + 4 + 4 + 1,
        "{}",
        run.stdout
    );
    let after = json_of(&p.run(&["status", "--format", "json", "--select", "id!=m202,id!=m203,id!=m204"]));
    assert_eq!(after["counts"], json!({"current": 227}), "{after:#}");
}

/// A wave whose every tenant the survey finds at its target is announced and recorded
/// without a session or a turn per tenant: each tenant still starts and finishes once, in
/// fleet order, and the report and the ledger say where each is.
/// The tenants named by each JSON Lines event of `kind`, in order.
fn tenants_of(stdout: &str, kind: &str) -> Vec<String> {
    stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|e| e["event"] == kind)
        .map(|e| {
            e["tenant"]
                .as_str()
                .or(e["report"]["id"].as_str())
                .unwrap_or_default()
                .to_owned()
        })
        .collect()
}

#[test]
fn a_no_op_up_over_surveyed_tenants_announces_each_in_fleet_order() {
    let Some(pg) = Pg::create("surveynoop") else { return };
    let p = Project::new();
    migrations(&p);
    let mut fleet = format!(
        "hosts:\n  main: {{url: \"{}\", max_connections: 2}}\ndefaults: {{host: main, schema: \"n_{{id}}\"}}\ntenants:\n",
        pg.url()
    );
    let ids: Vec<String> = (0..40).rev().map(|i| format!("z{i:02}")).collect();
    for id in &ids {
        fleet.push_str(&format!("  - {{id: {id}}}\n"));
    }
    p.fleet(&fleet);
    assert_code(&p.run(&["up", "-j", "4"]), 0);
    let run = p.run(&["up", "--format", "json", "-j", "4", "--report", "noop.json"]);
    assert_code(&run, 0);
    let of = |kind: &str| tenants_of(&run.stdout, kind);
    assert_eq!(of("tenant_started"), ids, "{}", run.stdout);
    assert_eq!(of("tenant_finished"), ids, "{}", run.stdout);
    assert_eq!(run.stdout.matches("\"step_started\"").count(), 0);
    let report: Value = serde_json::from_str(&std::fs::read_to_string(p.path().join("noop.json")).unwrap()).unwrap();
    assert_eq!(report["summary"]["succeeded"], 40, "{report:#}");
    let run_id = report["run_id"].as_str().unwrap().to_owned();
    let shown = p.run(&["report", &run_id, "--format", "json"]);
    assert_code(&shown, 0);
    let from_ledger = json_of(&shown);
    assert_eq!(from_ledger["summary"]["succeeded"], 40, "{from_ledger:#}");
}

#[test]
fn a_no_op_up_over_sqlite_files_reads_each_without_its_write_lock_and_announces_in_fleet_order() {
    use sqlx::{Connection, Executor};
    let p = Project::new();
    migrations(&p);
    std::fs::create_dir_all(p.path().join("data")).unwrap();
    let ids: Vec<String> = (0..30).rev().map(|i| format!("f{i:02}")).collect();
    let tenants: String = ids.iter().map(|id| format!("  - {{id: {id}}}\n")).collect();
    p.fleet(&format!(
        "defaults: {{url: \"sqlite://data/{{id}}.db\"}}\ntenants:\n{tenants}"
    ));
    assert_code(&p.run(&["up", "-j", "4"]), 0);
    // An application's long read on one file: its shared lock keeps a writer out, not a reader.
    let held = p.path().join("data/f17.db");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut reader = rt
        .block_on(sqlx::SqliteConnection::connect(&format!("sqlite://{}", held.display())))
        .unwrap();
    rt.block_on(reader.execute(sqlx::raw_sql("BEGIN; SELECT count(*) FROM fleetmig_history;")))
        .unwrap();

    let run = p.run(&[
        "up",
        "--format",
        "json",
        "-j",
        "4",
        "--lock-wait",
        "1s",
        "--report",
        "noop.json",
    ]);
    assert_code(&run, 0);
    let of = |kind: &str| tenants_of(&run.stdout, kind);
    assert_eq!(of("tenant_started"), ids, "{}", run.stdout);
    assert_eq!(of("tenant_finished"), ids, "{}", run.stdout);
    let report: Value = serde_json::from_str(&std::fs::read_to_string(p.path().join("noop.json")).unwrap()).unwrap();
    assert_eq!(report["summary"]["succeeded"], 30, "{report:#}");
    let run_id = report["run_id"].as_str().unwrap().to_owned();
    let shown = p.run(&["report", &run_id, "--format", "json"]);
    assert_code(&shown, 0);
    assert_eq!(json_of(&shown)["summary"]["succeeded"], 30);

    // The read really holds writers out: with a step to take, that tenant waits its
    // --lock-wait and is skipped as locked, and the others move on.
    p.migration("0005_five.up.sql", "CREATE TABLE t5 (x INT);\n");
    let run = p.run(&["up", "--format", "json", "-j", "4", "--lock-wait", "1s"]);
    let last: Value = serde_json::from_str(run.stdout.lines().last().unwrap()).unwrap();
    assert_eq!(last["summary"]["succeeded"], 29, "{}", run.stdout);
    assert_eq!(last["summary"]["skipped"], 1, "{}", run.stdout);
    assert!(run.stdout.contains("another runner"), "{}", run.stdout);
    rt.block_on(reader.execute("ROLLBACK")).unwrap();
}
