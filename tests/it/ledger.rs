//! The ledger: runs recorded as they happen, `runs` and `report`, and `up --resume` after
//! the runner is killed at random moments.

use std::io::{BufRead, BufReader};
use std::process::Stdio;

use serde_json::Value;

use crate::support::{Project, Spawned, sqlite_column, sqlite_rows};

fn fleet(n: usize) -> Project {
    let p = Project::new();
    for i in 1..=3 {
        p.migration(
            &format!("000{i}_t{i}.up.sql"),
            &format!("CREATE TABLE t{i} (id INTEGER);"),
        );
        p.migration(&format!("000{i}_t{i}.down.sql"), &format!("DROP TABLE t{i};"));
    }
    let tenants: String = (0..n)
        .map(|i| format!("  - {{ id: x{i:03}{} }}\n", if i < 3 { ", canary: true" } else { "" }))
        .collect();
    // `synchronous=OFF` keeps the many small commits fast; a killed process loses nothing
    // the OS already has, which is all a kill -9 test needs.
    p.fleet(&format!(
        "defaults: {{ url: \"sqlite://data/{{id}}.db?synchronous=OFF\" }}\ntenants:\n{tenants}"
    ));
    p
}

/// Versions in a tenant's history, as text, oldest first.
fn history(p: &Project, id: &str) -> Vec<String> {
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

/// (tenant, state, final version) rows of a run, straight from the ledger file.
fn ledger_rows(p: &Project, run: &str) -> Vec<(String, String, Option<i64>)> {
    sqlite_rows(
        &p.path().join("tenants.ledger.db"),
        &format!("SELECT tenant, state, CAST(final_version AS TEXT) FROM fleetmig_run_tenants WHERE run_id = '{run}'"),
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

/// A small deterministic pseudo-random sequence, so a failure can be replayed.
fn lcg(seed: &mut u64) -> u64 {
    *seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    *seed >> 33
}

#[test]
fn kill_9_at_random_moments_then_resume_reaches_the_target_every_time() {
    let mut seed = 20261122;
    for round in 0..20 {
        let n = 300;
        let p = fleet(n);
        let mut child = p
            .command(&["up", "--format", "json", "-j", "4"])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let kill_after = (lcg(&mut seed) % n as u64) as usize;
        let mut run_id = String::new();
        let mut finished = 0;
        for line in lines {
            let event: Value = serde_json::from_str(&line.unwrap()).unwrap();
            match event["event"].as_str().unwrap() {
                "run_started" => run_id = event["run_id"].as_str().unwrap().to_owned(),
                "tenant_finished" => finished += 1,
                _ => {}
            }
            if finished >= kill_after && !run_id.is_empty() {
                break;
            }
        }
        std::process::Command::new("kill")
            .args(["-9", &child.id().to_string()])
            .status()
            .unwrap();
        let _ = child.wait();

        // Never "done" for work that is not in the database.
        for (tenant, state, _) in ledger_rows(&p, &run_id) {
            if state == "succeeded" {
                assert_eq!(
                    history(&p, &tenant),
                    ["1", "2", "3"],
                    "round {round}: ledger says {tenant} is done"
                );
            }
        }

        // By its id: a kill that landed after the run's end leaves nothing unfinished, and
        // resuming a finished run is harmless.
        let resumed = p.run(&["up", "--resume", &run_id]);
        assert_eq!(resumed.code, 0, "round {round}: {}", resumed.all());
        let report: Value = serde_json::from_str(&p.run(&["report", &run_id, "--format", "json"]).stdout).unwrap();
        assert_eq!(report["stop_reason"]["kind"], "completed", "round {round}");
        let tenants = report["tenants"].as_array().unwrap();
        assert_eq!(tenants.len(), n, "round {round}: every tenant once");
        for t in tenants {
            let id = t["id"].as_str().unwrap();
            assert_eq!(
                history(&p, id),
                ["1", "2", "3"],
                "round {round}: {id} (a duplicate would show twice)"
            );
            assert_eq!(t["final_version"], 3, "round {round}: {id}");
        }
        for (tenant, state, version) in ledger_rows(&p, &run_id) {
            assert_eq!(
                (state.as_str(), version),
                ("succeeded", Some(3)),
                "round {round}: ledger row of {tenant}"
            );
        }
    }
}

#[test]
fn runs_and_report_read_the_ledger() {
    let p = fleet(6);
    let first = p.run(&["up", "--to", "1"]);
    assert_eq!(first.code, 0, "{}", first.all());
    assert!(
        p.path().join("tenants.ledger.db").exists(),
        "the default ledger sits beside the fleet file"
    );
    let second = p.run(&["up", "--pause-after", "1"]);
    assert_eq!(second.code, 0, "{}", second.all());
    let runs: Value = serde_json::from_str(&p.run(&["runs", "--format", "json"]).stdout).unwrap();
    let runs = runs["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 2);
    assert_eq!(runs[0]["target"], 3, "newest first");
    assert!(runs[0]["stop_reason"].as_str().unwrap().starts_with("paused"));
    assert_eq!(runs[1]["succeeded"], 6);
    let text = p.run(&["runs"]);
    assert!(text.stdout.contains("paused after wave 1"), "{}", text.stdout);
    let id = runs[0]["run_id"].as_str().unwrap();
    let report = p.run(&["report", id]);
    assert!(report.stdout.contains("not_started"), "{}", report.stdout);
    assert!(
        report.stdout.contains("stop reason: paused after wave 1"),
        "{}",
        report.stdout
    );
    let missing = p.run(&["report", "nope"]);
    assert_eq!(missing.code, 2);
    assert!(missing.stderr.contains("no finished run `nope`"), "{}", missing.stderr);

    let resumed = p.run(&["up", "--resume", id]);
    assert_eq!(resumed.code, 0, "{}", resumed.all());
    for i in 0..6 {
        assert_eq!(history(&p, &format!("x{i:03}")), ["1", "2", "3"]);
    }
    let nothing = p.run(&["up", "--resume"]);
    assert_eq!(nothing.code, 2, "{}", nothing.all());
    assert!(nothing.stderr.contains("no unfinished run"), "{}", nothing.stderr);
}

#[test]
fn a_postgres_ledger_is_shared_by_whoever_points_at_it() {
    let Some(pg) = crate::support::Pg::create("ledger") else {
        return;
    };
    let p = fleet(4);
    let url = pg.url();
    let run = p.run(&["up", "--ledger", &url, "--report", "report.md"]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert!(
        !p.path().join("tenants.ledger.db").exists(),
        "no SQLite ledger when a URL is given"
    );
    let md = std::fs::read_to_string(p.path().join("report.md")).unwrap();
    assert!(md.contains("| x000 | 1 | succeeded | 0 | 3 |"), "{md}");
    let rows = pg.column("SELECT state FROM fleetmig_run_tenants ORDER BY tenant");
    assert_eq!(rows, ["succeeded"; 4]);
    let other = Project::new();
    other.fleet(&format!("ledger: \"{url}\"\ntenants: []\n"));
    let runs = other.run(&["runs", "--format", "json"]);
    let runs: Value = serde_json::from_str(&runs.stdout).unwrap_or_else(|e| panic!("{e}: {}", runs.all()));
    assert_eq!(
        runs["runs"].as_array().unwrap().len(),
        1,
        "the fleet file's `ledger:` finds the same runs"
    );
}

/// (tenant, wave, state, final version) of every row of the one run in a ledger, as text.
const RUN_ROWS: &str = "SELECT tenant, CAST(wave AS TEXT), state, CAST(final_version AS TEXT) \
                        FROM fleetmig_run_tenants ORDER BY tenant";

/// More tenants than one ledger statement writes, ending two ways: every tenant still
/// has its own row, wave and end, in a SQLite ledger and in a PostgreSQL one.
#[test]
fn a_run_of_hundreds_of_tenants_keeps_one_row_each() {
    let n = 250;
    let pg = crate::support::Pg::create("ledger_rows");
    let ledgers: Vec<Option<String>> = std::iter::once(None)
        .chain(pg.as_ref().map(|pg| Some(pg.url())))
        .collect();
    for ledger in ledgers {
        let p = fleet(n);
        let mut args = vec!["up", "--pause-after", "1"];
        if let Some(url) = &ledger {
            args.extend(["--ledger", url]);
        }
        let run = p.run(&args);
        assert_eq!(run.code, 0, "{}", run.all());
        let rows = match &ledger {
            None => sqlite_rows(&p.path().join("tenants.ledger.db"), RUN_ROWS),
            Some(_) => pg.as_ref().unwrap().rows(RUN_ROWS),
        };
        assert_eq!(rows.len(), n, "{ledger:?}: one row per tenant");
        for (i, row) in rows.iter().enumerate() {
            let id = format!("x{i:03}");
            // The report reads where a tenant that never started stands: at 0.
            let (wave, state, version) = if i < 3 {
                ("1", "succeeded", Some("3"))
            } else {
                ("2", "not_started", Some("0"))
            };
            assert_eq!(row[0].as_deref(), Some(id.as_str()), "{ledger:?}");
            assert_eq!(row[1].as_deref(), Some(wave), "{ledger:?}: {id}");
            assert_eq!(row[2].as_deref(), Some(state), "{ledger:?}: {id}");
            assert_eq!(row[3].as_deref(), version, "{ledger:?}: {id}");
        }
    }
}

/// A fleet whose migrations include two that run outside a transaction (safe to re-run,
/// as an operator marks an `IF NOT EXISTS` statement), each with its down script.
fn fleet_with_no_transaction_steps(n: usize) -> Project {
    let p = Project::new();
    let steps = [
        ("0001_t1", "CREATE TABLE t1 (id INTEGER);", "DROP TABLE t1;"),
        (
            "0002_i1",
            "-- fleetmig: no-transaction, rerun-if-dirty\nCREATE INDEX IF NOT EXISTS i1 ON t1 (id);",
            "-- fleetmig: no-transaction\nDROP INDEX IF EXISTS i1;",
        ),
        ("0003_t3", "CREATE TABLE t3 (id INTEGER);", "DROP TABLE t3;"),
        (
            "0004_t4",
            "-- fleetmig: no-transaction, rerun-if-dirty\nCREATE TABLE IF NOT EXISTS t4 (id INTEGER);",
            "-- fleetmig: no-transaction\nDROP TABLE IF EXISTS t4;",
        ),
    ];
    for (name, up, down) in steps {
        p.migration(&format!("{name}.up.sql"), up);
        p.migration(&format!("{name}.down.sql"), down);
    }
    let tenants: String = (0..n)
        .map(|i| format!("  - {{ id: x{i:03}{} }}\n", if i < 2 { ", canary: true" } else { "" }))
        .collect();
    p.fleet(&format!(
        "defaults: {{ url: \"sqlite://data/{{id}}.db?synchronous=OFF\" }}\ntenants:\n{tenants}"
    ));
    p
}

/// (clean versions, dirty versions) in a tenant's history, as numbers.
type Marks = (Vec<i64>, Vec<i64>);

fn history_marks(p: &Project, id: &str) -> Marks {
    let path = p.db_path(id);
    if !path.exists()
        || sqlite_column(&path, "SELECT name FROM sqlite_master WHERE name = 'fleetmig_history'").is_empty()
    {
        return (vec![], vec![]);
    }
    let rows = sqlite_rows(
        &path,
        "SELECT CAST(version AS TEXT), CAST(dirty AS TEXT) FROM fleetmig_history ORDER BY version",
    );
    let mut clean = vec![];
    let mut dirty = vec![];
    for r in rows {
        let v: i64 = r[0].as_deref().unwrap().parse().unwrap();
        if r[1].as_deref() == Some("1") {
            dirty.push(v);
        } else {
            clean.push(v);
        }
    }
    (clean, dirty)
}

/// SIGTERM, or two interrupts, at random moments of runs with no-transaction steps (and
/// the rollback an interrupt starts): after each, the report, the ledger and every
/// tenant's history agree, and `up --resume` takes the fleet to the target.
#[test]
fn sigterm_and_two_interrupts_at_random_moments_leave_the_truth_and_resume_finishes() {
    let n = 60;
    signal_rounds(10, n, 20261201, &|_| fleet_with_no_transaction_steps(n), &history_marks);
}

/// The same on PostgreSQL schema-tenants, where an abandoned transaction goes on to
/// commit on the server, and the no-transaction steps are `CREATE INDEX CONCURRENTLY`.
#[test]
fn sigterm_and_two_interrupts_on_postgres_leave_the_truth_and_resume_finishes() {
    let Some(pg) = crate::support::Pg::create("sigloop") else {
        return;
    };
    let n = 12;
    let make = |round: usize| {
        let p = Project::new();
        let steps = [
            (
                "0001_t1",
                "CREATE TABLE t1 (id int); SELECT pg_sleep(0.05);",
                "DROP TABLE t1;",
            ),
            (
                "0002_i1",
                "-- fleetmig: no-transaction, rerun-if-dirty\nCREATE INDEX CONCURRENTLY IF NOT EXISTS i1 ON t1 (id)",
                "-- fleetmig: no-transaction\nDROP INDEX CONCURRENTLY IF EXISTS i1",
            ),
            (
                "0003_t3",
                "CREATE TABLE t3 (id int); SELECT pg_sleep(0.05);",
                "DROP TABLE t3;",
            ),
            (
                "0004_i3",
                "-- fleetmig: no-transaction, rerun-if-dirty\nCREATE INDEX CONCURRENTLY IF NOT EXISTS i3 ON t3 (id)",
                "-- fleetmig: no-transaction\nDROP INDEX CONCURRENTLY IF EXISTS i3",
            ),
        ];
        for (name, up, down) in steps {
            p.migration(&format!("{name}.up.sql"), up);
            p.migration(&format!("{name}.down.sql"), down);
        }
        let tenants: String = (0..n).map(|i| format!("  - {{ id: x{i:03} }}\n")).collect();
        p.fleet(&format!(
            "hosts: {{ pg: {{ url: \"{}\", max_connections: 4 }} }}\ndefaults: {{ host: pg, schema: \"r{round}_{{id}}\" }}\ntenants:\n{tenants}",
            pg.url()
        ));
        p
    };
    let marks = |schema: &str| -> Marks {
        let exists = pg.column(&format!(
            "SELECT (to_regclass('{schema}.fleetmig_history') IS NOT NULL)::text"
        ))[0]
            == "true";
        if !exists {
            return (vec![], vec![]);
        }
        let rows = pg.rows(&format!(
            "SELECT version::text, dirty::text FROM {schema}.fleetmig_history ORDER BY version"
        ));
        let (mut clean, mut dirty) = (vec![], vec![]);
        for r in rows {
            let v: i64 = r[0].as_deref().unwrap().parse().unwrap();
            if r[1].as_deref() == Some("true") {
                dirty.push(v);
            } else {
                clean.push(v);
            }
        }
        (clean, dirty)
    };
    // Schemas are `r<round>_<id>`: the rounds share one database.
    let rounds = std::cell::Cell::new(0usize);
    signal_rounds(
        4,
        n,
        20261202,
        &|round| {
            rounds.set(round);
            make(round)
        },
        &|_, id| marks(&format!("r{}_{id}", rounds.get())),
    );
}

/// Runs `rounds` rounds, alternately SIGTERM and two interrupts, each at a random moment
/// of an `up` over a fresh project of `n` tenants (`x000..`), and checks the truth after
/// each; `marks` gives a tenant's (clean, dirty) history versions.
fn signal_rounds(
    rounds: usize,
    n: usize,
    mut seed: u64,
    project: &dyn Fn(usize) -> Project,
    marks: &dyn Fn(&Project, &str) -> Marks,
) {
    use std::time::Duration;
    let wait = Duration::from_secs(60);
    for round in 0..rounds {
        let twice = round % 2 == 1;
        let p = project(round);
        let mut run = Spawned::new(p.command(&["up", "--format", "json", "-j", "4", "--max-failures", "all"]));
        let signal_after = (lcg(&mut seed) % n as u64) as usize;
        let mut run_id = String::new();
        let mut finished = 0;
        while let Some(event) = run.next_event(wait) {
            match event["event"].as_str().unwrap() {
                "run_started" => run_id = event["run_id"].as_str().unwrap().to_owned(),
                "tenant_finished" => finished += 1,
                _ => {}
            }
            if finished >= signal_after && !run_id.is_empty() {
                break;
            }
        }
        if twice {
            run.try_signal("INT");
            // The second lands a random few events after the first was taken in: in the
            // tenants still in flight, or in the rollback the first one started.
            let mut after = lcg(&mut seed) % 4;
            let mut stopping = false;
            while let Some(event) = run.next_event(wait) {
                stopping |= event["event"] == "stopping";
                if stopping {
                    if after == 0 {
                        break;
                    }
                    after -= 1;
                }
            }
            run.try_signal("INT");
        } else {
            run.try_signal("TERM");
        }
        let (code, _, stderr) = run.finish(wait);
        assert!(matches!(code, Some(0 | 1)), "round {round}: exit {code:?}\n{stderr}");

        let report = p.run(&["report", &run_id, "--format", "json"]);
        assert_eq!(
            report.code,
            code.unwrap(),
            "round {round}: {}\nthe run's stderr:\n{stderr}",
            report.all()
        );
        let report: Value = serde_json::from_str(&report.stdout).unwrap();
        let tenants = report["tenants"].as_array().unwrap();
        assert_eq!(tenants.len(), n, "round {round}: every tenant once");
        let ledger = ledger_rows(&p, &run_id);
        for t in tenants {
            let id = t["id"].as_str().unwrap();
            let (clean, dirty) = marks(&p, id);
            if !twice {
                assert!(dirty.is_empty(), "round {round}: SIGTERM left {id} dirty: {t}");
            }
            if t["final_version"].is_null() {
                let error = t["error"].as_str().unwrap_or_default();
                assert!(error.contains("unknown"), "round {round}: {id}: {t}");
            } else {
                assert_eq!(
                    t["final_version"],
                    clean.last().copied().unwrap_or(0),
                    "round {round}: {id}: report and history disagree: {t}"
                );
            }
            assert_eq!(
                t["dirty"].as_i64(),
                dirty.first().copied(),
                "round {round}: {id}: the dirty mark, report and history: {t}"
            );
            let row = ledger.iter().find(|(tenant, ..)| tenant == id).unwrap();
            assert_eq!(
                row.1,
                t["status"].as_str().unwrap(),
                "round {round}: {id}: ledger state"
            );
            assert_eq!(
                row.2,
                t["final_version"].as_i64(),
                "round {round}: {id}: ledger version"
            );
        }

        if report["stop_reason"]["kind"] != "completed" {
            let resumed = p.run(&["up", "--resume"]);
            assert_eq!(resumed.code, 0, "round {round}: {}", resumed.all());
        }
        for i in 0..n {
            let id = format!("x{i:03}");
            assert_eq!(
                marks(&p, &id),
                (vec![1, 2, 3, 4], vec![]),
                "round {round}: {id} after resume"
            );
        }
    }
}

/// The ledger's tables as the fleetmig before schema versions made them, with one
/// finished run of tenants `x000` (at 3) and `x001` (failed).
const OLD_TABLES: &str = "\
CREATE TABLE fleetmig_runs (
    run_id TEXT PRIMARY KEY, command TEXT NOT NULL, target BIGINT, runner TEXT NOT NULL, fleet TEXT NOT NULL,
    started_ms BIGINT NOT NULL, finished_ms BIGINT, stop_reason TEXT, plan TEXT NOT NULL, report TEXT
);
CREATE TABLE fleetmig_run_tenants (
    run_id TEXT NOT NULL, tenant TEXT NOT NULL, wave BIGINT NOT NULL, state TEXT NOT NULL, start_version BIGINT,
    final_version BIGINT, steps TEXT, error TEXT, updated_ms BIGINT NOT NULL, PRIMARY KEY (run_id, tenant)
);
INSERT INTO fleetmig_runs VALUES ('old-run', 'up', 3, 'me@here pid 1', 'tenants.yaml', 1000, 2000, 'completed',
    '{\"command\":\"up\",\"target\":3,\"waves\":[[\"x000\",\"x001\"]],\"canary_waves\":[]}', NULL);
INSERT INTO fleetmig_run_tenants VALUES ('old-run', 'x000', 1, 'succeeded', 0, 3, '[]', NULL, 2000);
INSERT INTO fleetmig_run_tenants VALUES ('old-run', 'x001', 1, 'failed', 0, 1, '[]', 'boom', 2000);";

/// After a ledger made by an older fleetmig is opened: its old run reads back, a new run
/// is recorded, and its tables are at the current version with the shared-run columns.
fn check_upgraded(p: &Project, ledger: &[&str], version: &dyn Fn(&str) -> Vec<String>) {
    let runs = |p: &Project| {
        let mut args = vec!["runs", "--format", "json"];
        args.extend_from_slice(ledger);
        let runs = p.run(&args);
        assert_eq!(runs.code, 0, "{}", runs.all());
        serde_json::from_str::<Value>(&runs.stdout).unwrap()
    };
    let old = runs(p);
    assert_eq!(old["runs"][0]["run_id"], "old-run", "{old}");
    // Its integer target reads back as the number it was (versions are text since ledger 3).
    assert_eq!(old["runs"][0]["target"], 3, "{old}");
    assert_eq!(
        (old["runs"][0]["succeeded"].as_i64(), old["runs"][0]["failed"].as_i64()),
        (Some(1), Some(1))
    );
    let mut up = vec!["up"];
    up.extend_from_slice(ledger);
    let run = p.run(&up);
    assert_eq!(run.code, 0, "{}", run.all());
    assert_eq!(runs(p)["runs"].as_array().unwrap().len(), 2);
    assert_eq!(
        version("SELECT CAST(MAX(version) AS TEXT) FROM fleetmig_ledger_version"),
        ["3"]
    );
    assert_eq!(
        version("SELECT CAST(COUNT(*) AS TEXT) FROM fleetmig_ledger_version"),
        ["3"],
        "each upgrade once"
    );
}

/// A SQLite ledger made before the ledger kept a schema version is upgraded when opened.
#[test]
fn a_sqlite_ledger_from_before_schema_versions_is_upgraded() {
    let p = fleet(2);
    let path = p.path().join("tenants.ledger.db");
    crate::support::sqlite_exec(&path, OLD_TABLES);
    check_upgraded(&p, &[], &|sql| sqlite_column(&path, sql));
    let columns = sqlite_column(
        &path,
        "SELECT name FROM pragma_table_info('fleetmig_run_tenants') WHERE name IN ('owner', 'failure') ORDER BY name",
    );
    assert_eq!(columns, ["failure", "owner"]);
}

/// The same for a PostgreSQL ledger, one that ran a shared run before the `failure` column
/// was kept (so it holds some of the shared-run columns already).
#[test]
fn a_postgres_ledger_from_before_schema_versions_is_upgraded() {
    let Some(pg) = crate::support::Pg::create("oldledger") else {
        return;
    };
    pg.exec(OLD_TABLES);
    pg.exec(
        "ALTER TABLE fleetmig_runs ADD COLUMN shared TEXT, ADD COLUMN shared_stop TEXT; \
         ALTER TABLE fleetmig_run_tenants ADD COLUMN owner TEXT, ADD COLUMN lease_until_ms BIGINT, \
         ADD COLUMN claimed_ms BIGINT;",
    );
    let p = fleet(2);
    let url = pg.url();
    check_upgraded(&p, &["--ledger", &url], &|sql| pg.column(sql));
    let columns = pg.column(
        "SELECT column_name::text FROM information_schema.columns WHERE table_schema = current_schema() \
         AND table_name = 'fleetmig_run_tenants' AND column_name IN ('owner', 'failure') ORDER BY 1",
    );
    assert_eq!(columns, ["failure", "owner"]);
    assert!(!p.path().join("tenants.ledger.db").exists());
}

/// The ledger keeps, per run, the migration set's fingerprint and the git commit of its
/// folder (with a mark when the folder had uncommitted changes); `runs` and `report` show
/// them.
#[test]
fn runs_record_the_sets_fingerprint_and_git_commit() {
    let p = crate::support::Project::new();
    p.fleet("defaults: { url: \"sqlite://data/{id}.db\" }\ntenants:\n  - { id: a }\n");
    p.migration("0001_a.up.sql", "CREATE TABLE a (id INTEGER PRIMARY KEY);\n");
    let git = |args: &[&str]| {
        let out = std::process::Command::new("git")
            .current_dir(p.path())
            .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    };
    git(&["init", "-q"]);
    git(&["add", "migrations"]);
    git(&["commit", "-q", "-m", "one"]);
    let commit = git(&["rev-parse", "HEAD"]);
    let run = p.run(&["up"]);
    assert_eq!(run.code, 0, "{}", run.all());
    let runs = |p: &crate::support::Project| -> serde_json::Value {
        let run = p.run(&["runs", "--format", "json"]);
        assert_eq!(run.code, 0, "{}", run.all());
        serde_json::from_str(&run.stdout).unwrap()
    };
    let doc = runs(&p);
    let first = &doc["runs"][0];
    assert_eq!(first["source"]["git_commit"], commit.as_str(), "{doc}");
    assert!(first["source"].get("git_dirty").is_none(), "{doc}");
    let fingerprint = first["source"]["fingerprint"].as_str().unwrap().to_owned();
    assert_eq!(fingerprint.len(), 64);
    let text = p.run(&["runs"]);
    assert!(
        text.stdout
            .contains(&format!("{} git:{}", &fingerprint[..12], &commit[..10])),
        "{}",
        text.stdout
    );
    let run_id = first["run_id"].as_str().unwrap();
    let report = p.run(&["report", run_id]);
    assert!(
        report.stdout.contains(&format!(
            "migrations: set {}, git commit {commit}\n",
            &fingerprint[..12]
        )),
        "{}",
        report.stdout
    );
    let report = p.run(&["report", run_id, "--format", "json"]);
    let doc: serde_json::Value = serde_json::from_str(&report.stdout).unwrap();
    assert_eq!(doc["source"]["fingerprint"], fingerprint.as_str());

    // A new migration, not committed: another fingerprint, the same commit, marked dirty.
    p.migration("0002_b.up.sql", "CREATE TABLE b (id INTEGER PRIMARY KEY);\n");
    let run = p.run(&["up"]);
    assert_eq!(run.code, 0, "{}", run.all());
    let doc = runs(&p);
    let second = &doc["runs"][0]["source"];
    assert_ne!(second["fingerprint"], fingerprint.as_str());
    assert_eq!(second["git_commit"], commit.as_str());
    assert_eq!(second["git_dirty"], true);
    // The same files give the same fingerprint, wherever they are.
    let again = crate::support::Project::new();
    again.fleet("defaults: { url: \"sqlite://data/{id}.db\" }\ntenants:\n  - { id: a }\n");
    again.migration("0001_a.up.sql", "CREATE TABLE a (id INTEGER PRIMARY KEY);\n");
    assert_eq!(again.run(&["up"]).code, 0);
    let doc = runs(&again);
    assert_eq!(doc["runs"][0]["source"]["fingerprint"], fingerprint.as_str());
    assert!(doc["runs"][0]["source"].get("git_commit").is_none(), "{doc}");
}
