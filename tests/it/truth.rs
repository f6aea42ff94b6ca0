//! Reports that tell the truth: one count everywhere, skipped tenants that stop a rollout,
//! dirty marks, output errors after work was done, and refusals that name their cause.

use serde_json::Value;

use crate::support::{Pg, Project, Run, sqlite_column, sqlite_fleet};

/// A tenant's applied versions, none when it has no history table.
fn version(p: &Project, id: &str) -> i64 {
    let path = p.db_path(id);
    if !path.exists()
        || sqlite_column(&path, "SELECT name FROM sqlite_master WHERE name = 'fleetmig_history'").is_empty()
    {
        return 0;
    }
    sqlite_column(
        &path,
        "SELECT CAST(COALESCE(MAX(CAST(version AS INTEGER)), 0) AS TEXT) FROM fleetmig_history",
    )[0]
    .parse()
    .unwrap()
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}):\n{text}"))
}

fn file_json(p: &Project, name: &str) -> Value {
    json(&std::fs::read_to_string(p.path().join(name)).unwrap())
}

/// The JSON Lines event of that kind (the last one).
fn event(run: &Run, kind: &str) -> Value {
    run.stdout
        .lines()
        .rev()
        .map(json)
        .find(|e| e["event"] == kind)
        .unwrap_or_else(|| panic!("no `{kind}` event in:\n{}", run.all()))
}

fn tenant<'a>(report: &'a Value, id: &str) -> &'a Value {
    report["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == id)
        .unwrap_or_else(|| panic!("no tenant `{id}` in {report}"))
}

const COUNTS: &[&str] = &[
    "tenants",
    "succeeded",
    "failed",
    "rolled_back",
    "rollback_failed",
    "skipped",
    "not_started",
    "stopped",
];

#[test]
fn rolled_back_tenants_are_counted_once_and_alike_in_every_report() {
    // Wave 2 holds a1 (succeeds) and a2 (fails): `--rollback wave` brings both back.
    let p = sqlite_fleet(&[("c1", true), ("a1", false), ("a2", false), ("a3", false)], &["a2"]);
    let run = p.run(&[
        "up",
        "--format",
        "json",
        "--waves",
        "2",
        "-j",
        "1",
        "--rollback",
        "wave",
        "--report",
        "report.json",
    ]);
    assert_eq!(run.code, 1, "{}", run.all());
    let finished = event(&run, "run_finished");
    let summary = &finished["summary"];
    assert_eq!(
        summary["succeeded"], 1,
        "only the canary stays at the target: {summary}"
    );
    assert_eq!(summary["rolled_back"], 2, "{summary}");
    assert_eq!(summary["failed"], 0, "{summary}");
    assert_eq!(summary["not_started"], 1, "{summary}");
    assert_eq!(version(&p, "a1"), 0);
    assert_eq!(version(&p, "a2"), 0);

    let file = file_json(&p, "report.json");
    let id = finished["summary"].clone();
    let run_id = file["run_id"].as_str().unwrap().to_owned();
    let stored = p.run(&["report", &run_id, "--format", "json"]);
    let stored = json(&stored.stdout);
    let runs = json(&p.run(&["runs", "--format", "json"]).stdout);
    let row = &runs["runs"][0];
    assert_eq!(row["run_id"], run_id.as_str());
    for key in COUNTS {
        assert_eq!(file["summary"][key], id[key], "--report's {key}");
        assert_eq!(stored["summary"][key], id[key], "report RUN's {key}");
        assert_eq!(row[key], id[key], "runs' {key}");
    }
    let text = p.run(&["runs"]);
    assert!(text.stdout.contains("2 rolled_back, 1 not_started"), "{}", text.stdout);
}

#[test]
fn a_dirty_tenant_reads_the_same_version_and_dirty_mark_in_run_report_and_status() {
    let p = Project::new();
    p.migration("0001_a.up.sql", "CREATE TABLE a (id INTEGER);")
        .migration(
            "0002_b.up.sql",
            "-- fleetmig: no-transaction\nCREATE TABLE b (id INTEGER);\nINSERT INTO nope VALUES (1);\n",
        )
        .fleet("tenants:\n  - { id: d1, url: \"sqlite://data/d1.db\" }\n");
    std::fs::create_dir_all(p.path().join("data")).unwrap();
    let run = p.run(&["up", "--report", "report.json"]);
    assert_eq!(run.code, 1, "{}", run.all());
    assert!(run.stdout.contains("left at 1, dirty at migration 2"), "{}", run.stdout);
    assert!(run.stdout.contains("1 (dirty at 2)"), "final report:\n{}", run.stdout);
    let file = file_json(&p, "report.json");
    assert_eq!(tenant(&file, "d1")["final_version"], 1, "{file}");
    assert_eq!(tenant(&file, "d1")["dirty"], 2, "{file}");

    let run_id = file["run_id"].as_str().unwrap();
    let stored = json(&p.run(&["report", run_id, "--format", "json"]).stdout);
    assert_eq!(tenant(&stored, "d1")["final_version"], 1, "{stored}");
    assert_eq!(tenant(&stored, "d1")["dirty"], 2, "{stored}");
    let stored_text = p.run(&["report", run_id]);
    assert!(stored_text.stdout.contains("1 (dirty at 2)"), "{}", stored_text.stdout);

    let status = p.run(&["status", "--format", "json"]);
    let status = json(&status.stdout);
    assert_eq!(status["tenants"][0]["state"], "dirty", "{status}");
    assert_eq!(status["tenants"][0]["version"], 1, "{status}");
    assert_eq!(status["tenants"][0]["dirty"], 2, "{status}");
    let status_text = p.run(&["status"]);
    assert!(status_text.stdout.contains("1 (dirty at 2)"), "{}", status_text.stdout);

    // The next run refuses it, and says the same.
    let again = p.run(&["up", "--report", "again.json"]);
    assert_eq!(again.code, 1, "{}", again.all());
    let again = file_json(&p, "again.json");
    assert_eq!(tenant(&again, "d1")["status"], "skipped", "{again}");
    assert_eq!(tenant(&again, "d1")["start_version"], 1, "{again}");
    assert_eq!(tenant(&again, "d1")["final_version"], 1, "{again}");
    assert_eq!(tenant(&again, "d1")["dirty"], 2, "{again}");
}

/// Six tenants, canaries c1 and c2; the canaries applied migration 1, whose file was then
/// edited, so both are drifted.
fn drifted_canaries() -> Project {
    let p = sqlite_fleet(
        &[
            ("c1", true),
            ("c2", true),
            ("a1", false),
            ("a2", false),
            ("a3", false),
            ("a4", false),
        ],
        &[],
    );
    let first = p.run(&["up", "--to", "1", "--select", "canary=true"]);
    assert_eq!(first.code, 0, "{}", first.all());
    p.migration("0001_t1.up.sql", "CREATE TABLE t1 (id INTEGER, edited INTEGER);");
    p
}

#[test]
fn skipped_canaries_stop_the_rollout_by_default() {
    let p = drifted_canaries();
    let run = p.run(&["up", "-j", "1", "--report", "report.json"]);
    assert_eq!(run.code, 1, "{}", run.all());
    let r = file_json(&p, "report.json");
    assert_eq!(r["stop_reason"]["kind"], "canary_skipped", "{}", r["stop_reason"]);
    assert!(run.stdout.contains("a skipped canary stops the run"), "{}", run.stdout);
    for id in ["a1", "a2", "a3", "a4"] {
        assert_eq!(tenant(&r, id)["status"], "not_started", "{id}");
        assert_eq!(version(&p, id), 0, "{id} was touched");
    }
    let runs = json(&p.run(&["runs", "--format", "json"]).stdout);
    assert!(
        runs["runs"][0]["stop_reason"]
            .as_str()
            .unwrap()
            .starts_with("canary `c1` was skipped"),
        "{runs}"
    );
}

#[test]
fn max_skipped_all_goes_on_and_the_run_ends_incomplete_not_completed() {
    let p = drifted_canaries();
    let run = p.run(&["up", "--max-skipped", "all", "--report", "report.json"]);
    assert_eq!(run.code, 1, "{}", run.all());
    let r = file_json(&p, "report.json");
    assert_eq!(r["stop_reason"]["kind"], "incomplete", "{}", r["stop_reason"]);
    assert_eq!(r["stop_reason"]["skipped"], 2);
    for id in ["a1", "a2", "a3", "a4"] {
        assert_eq!(version(&p, id), 4, "{id}");
    }
    assert!(
        run.stdout
            .contains("stop reason: incomplete: every wave ran, but 2 tenant(s) did not reach the target (2 skipped)"),
        "{}",
        run.stdout
    );
    let runs = json(&p.run(&["runs", "--format", "json"]).stdout);
    assert!(
        runs["runs"][0]["stop_reason"]
            .as_str()
            .unwrap()
            .starts_with("incomplete"),
        "{runs}"
    );

    // A count: the second skipped tenant stops the run, canaries or not.
    let p = drifted_canaries();
    p.fleet(&format!(
        "{}rollout:\n  max_skipped: 2\n",
        std::fs::read_to_string(p.path().join("tenants.yaml")).unwrap()
    ));
    let run = p.run(&["up", "-j", "1", "--report", "report.json"]);
    assert_eq!(run.code, 1, "{}", run.all());
    let r = file_json(&p, "report.json");
    assert_eq!(r["stop_reason"]["kind"], "max_skipped", "{}", r["stop_reason"]);
    assert_eq!(r["stop_reason"]["limit"], 2);
    assert_eq!(tenant(&r, "a1")["status"], "not_started");
    let run = p.run(&["up", "--max-skipped", "3", "--report", "report.json"]);
    assert_eq!(run.code, 1, "{}", run.all());
    assert_eq!(file_json(&p, "report.json")["stop_reason"]["kind"], "incomplete");

    let bad = p.run(&["up", "--max-skipped", "0"]);
    assert_eq!(bad.code, 2, "{}", bad.all());
    assert!(bad.stderr.contains("not a skip limit"), "{}", bad.stderr);
}

#[test]
fn a_fleet_where_every_tenant_is_unreachable_ends_incomplete() {
    let p = Project::new();
    p.migration("0001_a.up.sql", "CREATE TABLE a (id INTEGER);").fleet(
        "defaults: { url: \"postgres://postgres@127.0.0.1:1/nowhere\" }\n\
         tenants:\n  - { id: u1 }\n  - { id: u2 }\n",
    );
    let run = p.run(&["up", "--retries", "0", "--format", "json"]);
    assert_eq!(run.code, 1, "{}", run.all());
    let finished = event(&run, "run_finished");
    assert_eq!(finished["stop_reason"]["kind"], "incomplete", "{finished}");
    assert_eq!(finished["stop_reason"]["short"], 2, "{finished}");
    assert_eq!(finished["summary"]["skipped"], 2, "{finished}");
    let runs = json(&p.run(&["runs", "--format", "json"]).stdout);
    let row = &runs["runs"][0];
    assert!(row["stop_reason"].as_str().unwrap().starts_with("incomplete"), "{row}");
    assert_eq!(row["skipped"], 2, "{row}");
    assert_eq!(row["succeeded"], 0, "{row}");
}

#[test]
fn a_closed_stdout_after_the_work_is_an_output_error_not_nothing_touched() {
    let p = sqlite_fleet(&[("a1", false), ("a2", false)], &[]);
    let mut cmd = p.command(&["up"]);
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The reader goes away before fleetmig writes anything: every write to stdout fails.
    drop(child.stdout.take());
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let Ok(output) = rx.recv_timeout(std::time::Duration::from_secs(120)) else {
        let _ = std::process::Command::new("kill")
            .args(["-9", &pid.to_string()])
            .status();
        panic!("fleetmig up with a closed stdout hung");
    };
    let run: Run = output.unwrap().into();
    for id in ["a1", "a2"] {
        assert_eq!(version(&p, id), 4, "{id}: the work was done");
    }
    assert_eq!(run.code, 3, "an output error, not a usage error: {}", run.all());
    assert!(!run.stderr.contains("nothing was"), "{}", run.stderr);
    assert!(
        run.stderr.contains("ran (stop reason: completed;")
            && run.stderr.contains("could not be written to standard output")
            && run.stderr.contains("fleetmig report "),
        "{}",
        run.stderr
    );
}

#[test]
fn an_unwritable_report_path_is_refused_before_anything_runs() {
    let p = sqlite_fleet(&[("a1", false)], &[]);
    let run = p.run(&["up", "--report", "no/such/folder/report.json"]);
    assert_eq!(run.code, 2, "{}", run.all());
    assert!(
        run.stderr.contains("--report `no/such/folder/report.json`"),
        "{}",
        run.stderr
    );
    assert_eq!(version(&p, "a1"), 0, "nothing ran");
    let runs = p.run(&["runs", "--format", "json"]);
    assert_eq!(json(&runs.stdout)["runs"], serde_json::json!([]), "no run was recorded");

    // A writable path checked for a run refused later leaves no stray file behind.
    let refused = p.run(&["up", "--report", "report.json", "--pause-after", "9"]);
    assert_eq!(refused.code, 2, "{}", refused.all());
    assert!(
        !p.path().join("report.json").exists(),
        "a refused run left an empty report file"
    );
    // A named pipe would wait for a reader before anything ran.
    let fifo = p.path().join("pipe.json");
    assert!(
        std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let piped = p.run(&["up", "--report", "pipe.json"]);
    assert_eq!(piped.code, 2, "{}", piped.all());
    assert!(piped.stderr.contains("not a regular file"), "{}", piped.stderr);
    assert_eq!(version(&p, "a1"), 0, "nothing ran");

    let ok = p.run(&["up", "--report", "report.json"]);
    assert_eq!(ok.code, 0, "{}", ok.all());
    assert_eq!(file_json(&p, "report.json")["stop_reason"]["kind"], "completed");
}

#[test]
fn down_refuses_a_rollback_policy_it_cannot_honour() {
    let p = sqlite_fleet(&[("a1", false)], &[]);
    assert_eq!(p.run(&["up"]).code, 0);
    for policy in ["failed", "wave", "run"] {
        let run = p.run(&["down", "--steps", "1", "--rollback", policy]);
        assert_eq!(run.code, 2, "{policy}: {}", run.all());
        assert!(
            run.stderr
                .contains(&format!("down --rollback {policy}: only `up` rolls back")),
            "{}",
            run.stderr
        );
        assert_eq!(version(&p, "a1"), 4, "{policy}: nothing ran");
    }
    let runs = json(&p.run(&["runs", "--format", "json"]).stdout);
    assert_eq!(
        runs["runs"].as_array().unwrap().len(),
        1,
        "only the up was recorded: {runs}"
    );
    let none = p.run(&["down", "--steps", "1", "--rollback", "none"]);
    assert_eq!(none.code, 0, "`none` is what a down does: {}", none.all());
    assert_eq!(version(&p, "a1"), 3);
}

/// The versions a PostgreSQL schema's history holds, none without a history table.
fn pg_versions(pg: &Pg, schema: &str) -> Vec<String> {
    let has = pg.column(&format!(
        "SELECT (to_regclass('{schema}.fleetmig_history') IS NOT NULL)::text"
    ));
    if has[0] != "true" {
        return vec![];
    }
    pg.column(&format!(
        "SELECT version::text FROM {schema}.fleetmig_history ORDER BY version"
    ))
}

#[test]
fn per_tenant_tx_minds_only_the_no_transaction_steps_still_to_run() {
    let Some(pg) = Pg::create("pertx") else { return };
    let p = Project::new();
    p.migration("0001_t.up.sql", "CREATE TABLE t (id int);")
        .migration(
            "0002_idx.up.sql",
            "-- fleetmig: no-transaction\nCREATE INDEX CONCURRENTLY t_id ON t (id);\n",
        )
        .migration("0003_u.up.sql", "CREATE TABLE u (id int);")
        .migration("0004_v.up.sql", "CREATE TABLE v (id int);")
        .fleet(&format!(
            "hosts: {{ pg: {{ url: \"{}\" }} }}\ndefaults: {{ host: pg, schema: \"s_{{id}}\" }}\n\
             tenants:\n  - {{ id: old1 }}\n  - {{ id: old2 }}\n  - {{ id: fresh }}\n",
            pg.url()
        ));
    let first = p.run(&["up", "--to", "2", "--select", "id=old*"]);
    assert_eq!(first.code, 0, "{}", first.all());

    // `fresh` would run the no-transaction migration 2: refused, naming it, before anything.
    let refused = p.run(&["up", "--tx", "per-tenant", "--to", "3"]);
    assert_eq!(refused.code, 2, "{}", refused.all());
    assert!(
        refused.stderr.contains("tenant `fresh` would run migration 2 (`")
            && refused.stderr.contains("0002_idx.up.sql"),
        "{}",
        refused.stderr
    );
    assert_eq!(pg_versions(&pg, "s_old1"), ["1", "2"], "nothing ran");
    assert!(pg_versions(&pg, "s_fresh").is_empty(), "nothing ran");

    // The tenants that applied it long ago go through in one transaction each.
    let run = p.run(&["up", "--tx", "per-tenant", "--select", "id=old*"]);
    assert_eq!(run.code, 0, "{}", run.all());
    for schema in ["s_old1", "s_old2"] {
        assert_eq!(pg_versions(&pg, schema), ["1", "2", "3", "4"], "{schema}");
    }
}
