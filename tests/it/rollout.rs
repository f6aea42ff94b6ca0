//! Rollouts: canary waves, the failure limit, rollback policies, gates and the report,
//! checked against every tenant's real history table.

use serde_json::Value;

use crate::support::{Pg, Project, sqlite_column, sqlite_exec};

/// Four migrations; `bad` tenants already hold a table `t3`, so their migration 3 fails.
fn sqlite_fleet(ids: &[(&str, bool)], bad: &[&str]) -> Project {
    let p = Project::new();
    for i in 1..=4 {
        p.migration(
            &format!("000{i}_t{i}.up.sql"),
            &format!("CREATE TABLE t{i} (id INTEGER);"),
        );
        p.migration(&format!("000{i}_t{i}.down.sql"), &format!("DROP TABLE t{i};"));
    }
    let tenants: String = ids
        .iter()
        .map(|(id, canary)| format!("  - {{ id: {id}, canary: {canary} }}\n"))
        .collect();
    p.fleet(&format!(
        "defaults: {{ url: \"sqlite://data/{{id}}.db\" }}\ntenants:\n{tenants}"
    ));
    std::fs::create_dir_all(p.path().join("data")).unwrap();
    for id in bad {
        sqlite_exec(&p.db_path(id), "CREATE TABLE t3 (x INTEGER);");
    }
    p
}

fn history(p: &Project, id: &str) -> Vec<String> {
    let path = p.db_path(id);
    if !path.exists() {
        return vec![];
    }
    let tables = sqlite_column(&path, "SELECT name FROM sqlite_master WHERE name = 'fleetmig_history'");
    if tables.is_empty() {
        return vec![];
    }
    sqlite_column(
        &path,
        "SELECT CAST(version AS TEXT) FROM fleetmig_history ORDER BY version",
    )
}

fn version(p: &Project, id: &str) -> i64 {
    history(p, id).last().map_or(0, |v| v.parse().unwrap())
}

fn report(p: &Project) -> Value {
    serde_json::from_str(&std::fs::read_to_string(p.path().join("report.json")).unwrap()).unwrap()
}

fn status_of<'a>(report: &'a Value, id: &str) -> &'a Value {
    report["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == id)
        .unwrap()
}

const SIX: &[(&str, bool)] = &[
    ("c1", true),
    ("a1", false),
    ("a2", false),
    ("a3", false),
    ("a4", false),
    ("a5", false),
];

#[test]
fn a_failure_in_wave_two_stops_the_run_and_rolls_the_tenant_back() {
    let p = sqlite_fleet(SIX, &["a2"]);
    let run = p.run(&[
        "up",
        "--waves",
        "2",
        "-j",
        "1",
        "--max-failures",
        "1",
        "--report",
        "report.json",
    ]);
    assert_eq!(run.code, 1, "{}", run.all());
    let r = report(&p);
    assert_eq!(r["stop_reason"]["kind"], "max_failures");
    assert_eq!(status_of(&r, "c1")["status"], "succeeded");
    assert_eq!(status_of(&r, "a1")["status"], "succeeded");
    assert_eq!(status_of(&r, "a2")["status"], "rolled_back");
    assert_eq!(status_of(&r, "a2")["failed_migration"], 3);
    for id in ["a3", "a4", "a5"] {
        assert_eq!(status_of(&r, id)["status"], "not_started", "{id}");
        assert!(history(&p, id).is_empty(), "{id} was touched");
    }
    assert_eq!(r["tenants"].as_array().unwrap().len(), 6, "every tenant exactly once");
    for (id, _) in SIX {
        assert_eq!(
            status_of(&r, id)["final_version"],
            version(&p, id),
            "{id}: report and history disagree"
        );
    }
    assert_eq!(version(&p, "a2"), 0);
    assert!(
        run.stdout.contains("stop reason: 1 tenant(s) failed, limit 1"),
        "{}",
        run.stdout
    );
}

#[test]
fn a_failing_canary_touches_no_other_tenant() {
    let p = sqlite_fleet(SIX, &["c1"]);
    let run = p.run(&["up", "--report", "report.json"]);
    assert_eq!(run.code, 1, "{}", run.all());
    for (id, canary) in SIX.iter().filter(|(_, c)| !c) {
        assert!(!canary);
        assert!(history(&p, id).is_empty(), "{id} was touched");
        assert_eq!(status_of(&report(&p), id)["status"], "not_started");
    }
}

#[test]
fn rollback_run_brings_every_touched_tenant_back() {
    let p = sqlite_fleet(SIX, &["a3"]);
    let run = p.run(&["up", "-j", "1", "--rollback", "run", "--report", "report.json"]);
    assert_eq!(run.code, 1, "{}", run.all());
    let r = report(&p);
    for (id, _) in SIX {
        assert_eq!(version(&p, id), 0, "{id} not back at its start version");
        assert_eq!(status_of(&r, id)["final_version"], 0);
    }
    assert_eq!(status_of(&r, "c1")["status"], "rolled_back");
    assert_eq!(status_of(&r, "a3")["status"], "rolled_back");
}

#[test]
fn failure_limits_count_and_percent_and_rollback_none() {
    let ids: Vec<(String, bool)> = (0..10).map(|i| (format!("t{i}"), false)).collect();
    let refs: Vec<(&str, bool)> = ids.iter().map(|(i, c)| (i.as_str(), *c)).collect();
    let p = sqlite_fleet(&refs, &["t1", "t3", "t5", "t7"]);
    let run = p.run(&[
        "up",
        "-j",
        "1",
        "--max-failures",
        "3",
        "--rollback",
        "none",
        "--report",
        "report.json",
    ]);
    assert_eq!(run.code, 1);
    let r = report(&p);
    assert_eq!(r["stop_reason"]["failed"], 3);
    assert_eq!(status_of(&r, "t5")["status"], "failed");
    assert_eq!(
        version(&p, "t5"),
        2,
        "rollback none leaves a failed tenant where it stopped"
    );
    assert_eq!(version(&p, "t4"), 4, "rollback none leaves succeeded tenants migrated");
    assert_eq!(status_of(&r, "t6")["status"], "not_started");
    assert!(history(&p, "t6").is_empty());

    let p = sqlite_fleet(&refs, &["t1", "t3"]);
    let run = p.run(&["up", "-j", "1", "--max-failures", "20%", "--report", "report.json"]);
    assert_eq!(run.code, 1);
    let r = report(&p);
    assert_eq!(r["stop_reason"]["limit"], 2);
    assert_eq!(status_of(&r, "t3")["status"], "rolled_back");
    assert_eq!(status_of(&r, "t4")["status"], "not_started");
}

#[test]
fn a_false_check_gate_stops_after_its_wave() {
    let p = sqlite_fleet(SIX, &[]);
    let run = p.run(&[
        "up",
        "--check",
        "SELECT count(*) > 0 FROM t1",
        "--report",
        "report.json",
    ]);
    assert_eq!(run.code, 1, "{}", run.all());
    let r = report(&p);
    assert_eq!(r["stop_reason"]["kind"], "gate_failed");
    assert!(r["stop_reason"]["detail"].as_str().unwrap().contains("tenant `c1`"));
    assert_eq!(
        version(&p, "c1"),
        4,
        "a succeeded canary stays migrated under --rollback failed"
    );
    assert!(history(&p, "a1").is_empty(), "no tenant after the gate started");
    assert_eq!(status_of(&r, "a1")["status"], "not_started");
}

#[test]
fn pause_after_stops_cleanly_and_exits_zero() {
    let p = sqlite_fleet(SIX, &[]);
    let run = p.run(&["up", "--pause-after", "1", "--report", "report.json"]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert_eq!(version(&p, "c1"), 4);
    assert!(history(&p, "a1").is_empty());
    assert_eq!(report(&p)["stop_reason"]["kind"], "paused");
}

#[test]
fn the_rate_limit_holds_over_every_second() {
    let ids: Vec<(String, bool)> = (0..30).map(|i| (format!("t{i}"), false)).collect();
    let refs: Vec<(&str, bool)> = ids.iter().map(|(i, c)| (i.as_str(), *c)).collect();
    let p = sqlite_fleet(&refs, &[]);
    let run = p.run(&["up", "--format", "json", "--rate", "20", "--burst", "2", "-j", "8"]);
    assert_eq!(run.code, 0, "{}", run.all());
    let starts: Vec<u64> = run
        .stdout
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|e| e["event"] == "tenant_started")
        .map(|e| e["ts_ms"].as_u64().unwrap())
        .collect();
    assert_eq!(starts.len(), 30);
    for &t0 in &starts {
        let in_window = starts.iter().filter(|&&t| t >= t0 && t < t0 + 1000).count();
        assert!(
            in_window <= 20 + 2,
            "{in_window} starts within one second of {t0}: more than rate + burst"
        );
    }
}

#[test]
fn postgres_schema_rollout_report_matches_history() {
    let Some(pg) = Pg::create("rollout") else { return };
    let p = Project::new();
    for i in 1..=4 {
        p.migration(&format!("000{i}_t{i}.up.sql"), &format!("CREATE TABLE t{i} (id int);"));
        p.migration(&format!("000{i}_t{i}.down.sql"), &format!("DROP TABLE t{i};"));
    }
    pg.exec("CREATE SCHEMA s_b; CREATE TABLE s_b.t3 (x int);");
    p.fleet(&format!(
        "hosts: {{ pg: {{ url: \"{}\", max_connections: 2 }} }}\ndefaults: {{ host: pg, schema: \"s_{{id}}\" }}\ntenants:\n  - {{ id: c, canary: true }}\n  - {{ id: a }}\n  - {{ id: b }}\n  - {{ id: d }}\n",
        pg.url()
    ));
    let run = p.run(&["up", "-j", "1", "--report", "report.json"]);
    assert_eq!(run.code, 1, "{}", run.all());
    let r = report(&p);
    assert_eq!(status_of(&r, "b")["status"], "rolled_back");
    for id in ["c", "a", "b"] {
        let v = pg.column(&format!(
            "SELECT coalesce(max(version), 0)::text FROM s_{id}.fleetmig_history"
        ));
        assert_eq!(status_of(&r, id)["final_version"].to_string(), v[0], "{id}");
    }
    assert_eq!(status_of(&r, "d")["status"], "not_started");
    assert!(pg.column("SELECT count(*)::text FROM pg_namespace WHERE nspname = 's_d'")[0] == "0");
}
