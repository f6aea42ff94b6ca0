//! Rollouts: canary waves, the failure limit, rollback policies, gates and the report,
//! checked against every tenant's real history table.

use serde_json::Value;

use crate::support::{My, Pg, Project, sqlite_column, sqlite_fleet};

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
            "SELECT coalesce(max(version::int), 0)::text FROM s_{id}.fleetmig_history"
        ));
        assert_eq!(status_of(&r, id)["final_version"].to_string(), v[0], "{id}");
    }
    assert_eq!(status_of(&r, "d")["status"], "not_started");
    assert!(pg.column("SELECT count(*)::text FROM pg_namespace WHERE nspname = 's_d'")[0] == "0");
}

/// A gate query on PostgreSQL may answer with a boolean or a number (non-zero is true).
#[test]
fn gate_checks_on_postgres_read_booleans_and_numbers() {
    for (tag, check, passes) in [
        (
            "gate_count",
            "SELECT count(*) FROM fleetmig_history WHERE version = '3'",
            true,
        ),
        ("gate_false", "SELECT 2 + 2 = 5", false),
    ] {
        let Some(pg) = Pg::create(tag) else { return };
        let p = pg_fleet(&pg, 4, 2, "0");
        let run = p.run(&["up", "--waves", "1,1,100%", "--check", check, "--report", "report.json"]);
        let r = report(&p);
        if passes {
            assert_eq!(run.code, 0, "{check}: {}", run.all());
            assert_eq!(r["stop_reason"]["kind"], "completed", "{check}");
            assert_eq!(pg_state(&pg, "s_x03").1, ["1", "2", "3"], "{check}");
        } else {
            assert_eq!(run.code, 1, "{check}: {}", run.all());
            assert_eq!(r["stop_reason"]["kind"], "gate_failed", "{check}");
            assert_eq!(pg_state(&pg, "s_x00").1, ["1", "2", "3"], "{check}");
            assert_eq!(status_of(&r, "x01")["status"], "not_started", "{check}");
            assert_eq!(pg_state(&pg, "s_x01"), (vec![], vec![]), "{check}: untouched");
        }
    }
}

/// A PostgreSQL fleet of `n` schema-tenants on one host; each migration sleeps a little so
/// that tenants overlap and a run lasts long enough to watch.
fn pg_fleet(pg: &Pg, n: usize, cap: u32, sleep: &str) -> Project {
    let p = Project::new();
    for i in 1..=3 {
        p.migration(
            &format!("000{i}_t{i}.up.sql"),
            &format!("CREATE TABLE t{i} (id int); SELECT pg_sleep({sleep});"),
        );
        p.migration(&format!("000{i}_t{i}.down.sql"), &format!("DROP TABLE t{i};"));
    }
    let tenants: String = (0..n).map(|i| format!("  - {{ id: x{i:02} }}\n")).collect();
    p.fleet(&format!(
        "hosts: {{ pg: {{ url: \"{}\", max_connections: {cap} }} }}\ndefaults: {{ host: pg, schema: \"s_{{id}}\" }}\ntenants:\n{tenants}",
        pg.url()
    ));
    p
}

/// Tables `t1..` in a schema, and the versions its history holds.
fn pg_state(pg: &Pg, schema: &str) -> (Vec<String>, Vec<String>) {
    let tables = pg.column(&format!(
        "SELECT substr(table_name, 2) FROM information_schema.tables WHERE table_schema = '{schema}' AND table_name LIKE 't_' ORDER BY 1"
    ));
    let has_history = pg.column(&format!(
        "SELECT (to_regclass('{schema}.fleetmig_history') IS NOT NULL)::text"
    ))[0]
        == "true";
    let history = if has_history {
        pg.column(&format!(
            "SELECT version::text FROM {schema}.fleetmig_history WHERE NOT dirty ORDER BY version"
        ))
    } else {
        vec![]
    };
    (tables, history)
}

#[test]
fn the_host_cap_holds_whatever_concurrency_says() {
    let Some(pg) = Pg::create("hostcap") else { return };
    let p = pg_fleet(&pg, 12, 2, "0.05");
    let mut child = p
        .command(&["up", "-j", "8"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut peak = 0;
    let sql = format!(
        "SELECT count(*)::text FROM pg_stat_activity WHERE application_name = 'fleetmig' AND datname = '{}'",
        pg.name
    );
    while child.try_wait().unwrap().is_none() {
        peak = peak.max(pg.column(&sql)[0].parse::<usize>().unwrap());
    }
    assert!(child.wait().unwrap().success());
    assert!(peak >= 1, "no fleetmig session was ever seen");
    assert!(peak <= 2, "{peak} sessions at once on a host with max_connections 2");
    for i in 0..12 {
        assert_eq!(pg_state(&pg, &format!("s_x{i:02}")).1, ["1", "2", "3"]);
    }
}

/// Database-per-tenant on one MySQL host: each tenant has a connection of its own (no
/// pool), so only the start order's per-host count keeps to `max_connections`.
#[test]
fn the_host_cap_holds_for_tenants_with_connections_of_their_own() {
    let Some(my) = My::create("hostcapmy") else { return };
    let p = Project::new();
    p.migration("0001_a.up.sql", "CREATE TABLE t1 (id INT); SELECT SLEEP(0.2);");
    p.migration("0002_b.up.sql", "CREATE TABLE t2 (id INT); SELECT SLEEP(0.2);");
    let tenants: String = (0..10).map(|i| format!("  - {{ id: x{i:02} }}\n")).collect();
    p.fleet(&format!(
        "hosts: {{ my: {{ url: \"mysql://root@127.0.0.1:3306/\", max_connections: 3 }} }}\n\
         defaults: {{ host: my, database: \"{}_{{id}}\" }}\ntenants:\n{tenants}",
        my.prefix
    ));
    let mut child = p
        .command(&["up", "-j", "8"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let sql = format!(
        "SELECT CAST(COUNT(*) AS CHAR) FROM information_schema.PROCESSLIST WHERE DB LIKE '{}\\_%'",
        my.prefix
    );
    let mut peak = 0;
    while child.try_wait().unwrap().is_none() {
        peak = peak.max(my.column(&sql)[0].parse::<usize>().unwrap());
    }
    assert!(child.wait().unwrap().success());
    assert!(
        peak >= 2,
        "at most {peak} session(s) seen at once: the test saw no concurrency"
    );
    assert!(peak <= 3, "{peak} sessions at once on a host with max_connections 3");
}

#[test]
fn ctrl_c_stops_at_safe_points_and_reports_every_tenant() {
    let Some(pg) = Pg::create("sigint") else { return };
    let p = pg_fleet(&pg, 16, 2, "0.2");
    let mut child = p
        .command(&[
            "up",
            "-j",
            "2",
            "--format",
            "json",
            "--rollback",
            "none",
            "--report",
            "report.json",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(stdout));
    // Interrupt once the first tenant has finished: the run is then well under way.
    for line in lines.by_ref() {
        if line.unwrap().contains("\"event\":\"tenant_finished\"") {
            break;
        }
    }
    std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    let rest: Vec<String> = lines.map(Result::unwrap).collect();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(1), "{rest:?}");
    assert!(
        rest.iter()
            .any(|l| l.contains("\"event\":\"stopping\"") && l.contains("interrupted")),
        "{rest:?}"
    );
    let r = report(&p);
    assert_eq!(r["stop_reason"]["kind"], "interrupted");
    let tenants = r["tenants"].as_array().unwrap();
    assert_eq!(tenants.len(), 16);
    let mut not_started = 0;
    for t in tenants {
        let id = t["id"].as_str().unwrap();
        let (tables, history) = pg_state(&pg, &format!("s_{id}"));
        assert_eq!(
            tables, history,
            "tenant {id}: every applied migration whole, nothing half-applied"
        );
        let final_version = history.last().map_or(0, |v| v.parse::<i64>().unwrap());
        assert_eq!(
            t["final_version"], final_version,
            "tenant {id}: report and history disagree"
        );
        match t["status"].as_str().unwrap() {
            "succeeded" => assert_eq!(final_version, 3, "{id}"),
            "not_started" => {
                not_started += 1;
                assert_eq!(final_version, 0, "{id}");
            }
            "stopped" => assert!((1..3).contains(&final_version), "{id}"),
            other => panic!("tenant {id}: unexpected status {other}"),
        }
    }
    assert!(
        not_started > 0,
        "the interrupt came too late to leave any tenant unstarted"
    );
}

#[test]
fn per_tenant_transactions_leave_a_failed_tenant_at_its_start() {
    let p = sqlite_fleet(SIX, &["a2"]);
    let run = p.run(&[
        "up",
        "--tx",
        "per-tenant",
        "--max-failures",
        "all",
        "--report",
        "report.json",
    ]);
    assert_eq!(run.code, 1, "{}", run.all());
    let r = report(&p);
    assert_eq!(status_of(&r, "a2")["status"], "failed");
    assert_eq!(status_of(&r, "a2")["final_version"], 0);
    assert!(
        history(&p, "a2").is_empty(),
        "nothing of the failed tenant's transaction stays"
    );
    let tables = sqlite_column(
        &p.db_path("a2"),
        "SELECT name FROM sqlite_master WHERE name IN ('t1', 't2') ORDER BY 1",
    );
    assert!(tables.is_empty(), "{tables:?}");
    for id in ["c1", "a1", "a3", "a4", "a5"] {
        assert_eq!(version(&p, id), 4, "{id}");
    }
}

/// On PostgreSQL a tenant's steps travel in one round trip; the failing one is still named,
/// and each history row keeps its own step's duration.
#[test]
fn per_tenant_transactions_on_postgres_name_the_failing_migration() {
    let Some(pg) = Pg::create("pertenant") else { return };
    let p = Project::new();
    for i in 1..=4 {
        let fail = if i == 1 {
            "SELECT pg_sleep(CASE WHEN current_schema() = 's_x00' THEN 0.3 ELSE 0 END);"
        } else if i == 3 {
            "DO $$ BEGIN IF current_schema() = 's_x01' THEN RAISE EXCEPTION 'no room for t3'; END IF; END $$;"
        } else {
            ""
        };
        p.migration(
            &format!("000{i}_t{i}.up.sql"),
            &format!("CREATE TABLE t{i} (id int);\nSELECT 'a row the migration returns';\n{fail}"),
        );
        p.migration(&format!("000{i}_t{i}.down.sql"), &format!("DROP TABLE t{i};"));
    }
    p.fleet(&format!(
        "hosts: {{ pg: {{ url: \"{}\", max_connections: 2 }} }}\ndefaults: {{ host: pg, schema: \"s_{{id}}\" }}\ntenants:\n  - {{ id: x00 }}\n  - {{ id: x01 }}\n  - {{ id: x02 }}\n",
        pg.url()
    ));
    let run = p.run(&[
        "up",
        "--tx",
        "per-tenant",
        "--max-failures",
        "all",
        "--report",
        "report.json",
        "--format",
        "json",
    ]);
    assert_eq!(run.code, 1, "{}", run.all());
    let r = report(&p);
    let bad = status_of(&r, "x01");
    assert_eq!(bad["status"], "failed", "{bad}");
    assert_eq!(bad["failed_migration"], 3, "{bad}");
    assert_eq!(bad["final_version"], 0, "{bad}");
    assert!(bad["error"].as_str().unwrap().contains("no room for t3"), "{bad}");
    assert_eq!(
        pg_state(&pg, "s_x01"),
        (vec![], vec![]),
        "nothing of the transaction stays"
    );
    for id in ["x00", "x02"] {
        assert_eq!(status_of(&r, id)["status"], "succeeded", "{id}");
        assert_eq!(status_of(&r, id)["final_version"], 4, "{id}");
        let (tables, history) = pg_state(&pg, &format!("s_{id}"));
        assert_eq!(tables, ["1", "2", "3", "4"], "{id}");
        assert_eq!(history, ["1", "2", "3", "4"], "{id}");
    }
    let finished = run.stdout.lines().filter(|l| l.contains("\"step_finished\"")).count();
    assert_eq!(finished, 8, "a step event per committed step:\n{}", run.stdout);
    // Durations are the steps' own, not the time since the transaction began: the first
    // step sleeps, the second does not.
    let durations: Vec<i64> = pg
        .column("SELECT duration_ms::text FROM s_x00.fleetmig_history ORDER BY version")
        .iter()
        .map(|d| d.parse().unwrap())
        .collect();
    assert!(durations[0] >= 300 && durations[1] < durations[0], "{durations:?}");

    // Down travels the same way.
    let run = p.run(&["down", "--to", "1", "--tx", "per-tenant", "--select", "id=x00"]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert_eq!(pg_state(&pg, "s_x00"), (vec!["1".to_owned()], vec!["1".to_owned()]));
}

#[test]
fn per_tenant_transactions_are_refused_where_they_cannot_hold() {
    let p = Project::new();
    p.migration("0001_a.up.sql", "CREATE TABLE a (id int);");
    p.fleet("tenants:\n  - { id: m, url: \"mysql://root@127.0.0.1:1/x\" }\n");
    let run = p.run(&["up", "--tx", "per-tenant"]);
    assert_eq!(run.code, 2, "{}", run.all());
    assert!(run.stderr.contains("tenant `m` is on MySQL"), "{}", run.stderr);

    let p = sqlite_fleet(&[("a", false)], &[]);
    p.migration(
        "0005_idx.up.sql",
        "-- fleetmig: no-transaction\nCREATE INDEX i ON t1 (id);",
    );
    let run = p.run(&["up", "--tx", "per-tenant"]);
    assert_eq!(run.code, 2, "{}", run.all());
    assert!(
        run.stderr.contains("tenant `a` would run migration 5 (`"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains("0005_idx.up.sql`), which is marked `-- fleetmig: no-transaction`"),
        "{}",
        run.stderr
    );
    assert!(history(&p, "a").is_empty(), "refused before anything ran");
}

#[test]
fn the_fleet_files_rollout_section_sets_the_defaults() {
    let p = sqlite_fleet(SIX, &["a1", "a2"]);
    let yaml = std::fs::read_to_string(p.path().join("tenants.yaml")).unwrap();
    p.fleet(&format!(
        "rollout:\n  waves: [1, 2]\n  max_failures: 2\n  rollback: none\n{yaml}"
    ));
    let run = p.run(&["up", "-j", "1", "--report", "report.json"]);
    assert_eq!(run.code, 1, "{}", run.all());
    let r = report(&p);
    assert_eq!(r["stop_reason"]["limit"], 2, "max_failures from the file");
    assert_eq!(
        r["waves"].as_array().unwrap().len(),
        4,
        "canary, then waves 1, 2 and the rest"
    );
    assert_eq!(version(&p, "a1"), 2, "rollback none from the file");
    let run = p.run(&["plan"]);
    assert!(run.stdout.contains("WAVE"), "{}", run.stdout);

    let p = sqlite_fleet(SIX, &[]);
    p.fleet("rollout: { rollback: sometimes }\ntenants: []\n");
    let run = p.run(&["up"]);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("rollout rollback: `sometimes` is not one of"),
        "{}",
        run.stderr
    );
}

#[test]
fn confirm_without_a_terminal_is_refused_unless_yes() {
    let p = sqlite_fleet(SIX, &[]);
    let run = p.run(&["up", "--confirm"]);
    assert_eq!(run.code, 2, "{}", run.all());
    assert!(run.stderr.contains("--confirm needs a terminal"), "{}", run.stderr);
    assert!(history(&p, "c1").is_empty());
    let run = p.run(&["up", "--confirm", "--yes"]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert_eq!(version(&p, "a5"), 4);
}
