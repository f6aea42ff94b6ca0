//! `fleetmig lint`: every rule fires on its fixture and not on the safe rewrite
//! (tests/fixtures/lint/<engine>/<rule-id>/{bad,good}.sql, with `before.sql` as the set's
//! earlier migration when the rule needs one); suppressions; the output formats; the
//! fleet's counts; and `plan` and `up`, which lint before anything runs.

use std::path::{Path, PathBuf};

use fleetmig::internal::lint::{Context, Source, lint_file};
use fleetmig::model::fleet::Engine;
use fleetmig::model::lint::{Finding, Rule};
use fleetmig::model::migration::Script;

use crate::support::{Pg, Project};

const ENGINES: [(Engine, &str); 3] = [
    (Engine::Postgres, "postgres"),
    (Engine::MySql, "mysql"),
    (Engine::Sqlite, "sqlite"),
];

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/lint")
}

/// The findings of `file`, after `before` (the set's earlier migration), if any.
fn lint_fixture(engine: Engine, dir: &Path, file: &str) -> Vec<Finding> {
    let mut context = Context::default();
    let before = dir.join("before.sql");
    if before.exists() {
        let text = std::fs::read_to_string(&before).unwrap();
        let source = Source {
            path: &before,
            version: None,
            text: &text,
            transactional: true,
        };
        lint_file(engine, &source, &mut context);
    }
    let path = dir.join(file);
    let script = Script::new(std::fs::read_to_string(&path).unwrap());
    let source = Source {
        path: &path,
        version: None,
        text: &script.sql,
        transactional: script.transactional,
    };
    lint_file(engine, &source, &mut context)
}

/// Each rule, on each engine it applies to, has a `bad.sql` it fires on and a `good.sql`
/// (the safe pattern) it stays quiet on; no fixture folder names a rule or engine that
/// does not exist. A new rule without fixtures fails here.
#[test]
fn every_rule_fires_on_its_fixture_and_not_on_the_safe_rewrite() {
    let mut problems = Vec::new();
    for rule in Rule::ALL {
        for (engine, name) in ENGINES.into_iter().filter(|(e, _)| rule.applies_to(*e)) {
            let dir = fixtures().join(name).join(rule.id());
            if !dir.join("bad.sql").exists() || !dir.join("good.sql").exists() {
                problems.push(format!("{name}/{}: no bad.sql and good.sql", rule.id()));
                continue;
            }
            let bad = lint_fixture(engine, &dir, "bad.sql");
            if !bad.iter().any(|f| f.rule == rule && f.is_live()) {
                problems.push(format!("{name}/{}/bad.sql: not found; found {bad:#?}", rule.id()));
            }
            let good = lint_fixture(engine, &dir, "good.sql");
            if let Some(f) = good.iter().find(|f| f.rule == rule && f.is_live()) {
                problems.push(format!("{name}/{}/good.sql: found {f:#?}", rule.id()));
            }
        }
    }
    for (engine, name) in ENGINES {
        for entry in std::fs::read_dir(fixtures().join(name)).unwrap() {
            let id = entry.unwrap().file_name().to_string_lossy().into_owned();
            if !Rule::from_id(&id).is_some_and(|r| r.applies_to(engine)) {
                problems.push(format!("{name}/{id}: no such rule for {name}"));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// A file with `name` and `sql` in the project, for `lint FILES`.
fn file(p: &Project, name: &str, sql: &str) -> String {
    std::fs::write(p.path().join(name), sql).unwrap();
    name.to_owned()
}

#[test]
fn a_suppression_needs_a_reason_and_one_with_a_reason_shows_in_json() {
    let p = Project::new();
    let f = file(
        &p,
        "drop.sql",
        "-- fleetmig: allow drop-table\nDROP TABLE a;\n\
         -- fleetmig: allow drop-table nothing has read b since 2.0\nDROP TABLE b;\n",
    );
    let run = p.run(&["lint", "--engine", "sqlite", &f, "--format", "json"]);
    assert_eq!(run.code, 0, "warnings only: {}", run.all());
    let doc = json(&run.stdout);
    let found: Vec<(String, u64, bool, serde_json::Value)> = doc["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["rule"].as_str().unwrap().to_owned(),
                f["line"].as_u64().unwrap(),
                f["suppressed"].as_bool().unwrap(),
                f["reason"].clone(),
            )
        })
        .collect();
    assert_eq!(
        found,
        [
            ("bad-suppression".to_owned(), 1, false, serde_json::Value::Null),
            ("drop-table".to_owned(), 2, false, serde_json::Value::Null),
            ("drop-table".to_owned(), 4, true, "nothing has read b since 2.0".into()),
        ],
        "{doc}"
    );
    assert_eq!((doc["warnings"].as_u64(), doc["allowed"].as_u64()), (Some(2), Some(1)));
    let reach = &doc["findings"][0]["reach"];
    assert_eq!(reach["kind"], "unknown", "no fleet was surveyed: {reach}");
    // --deny-warnings makes the two live warnings fail.
    assert_eq!(p.run(&["lint", "--engine", "sqlite", &f, "--deny-warnings"]).code, 1);
}

#[test]
fn text_and_github_formats_and_the_exit_code_of_an_error() {
    let p = Project::new();
    let f = file(
        &p,
        "idx.sql",
        "SET lock_timeout = '2s';\nCREATE INDEX CONCURRENTLY i ON users (email);\n",
    );
    let run = p.run(&["lint", "--engine", "postgres", &f]);
    assert_eq!(run.code, 1, "an error fails the lint: {}", run.all());
    assert!(
        run.stdout.starts_with(
            "idx.sql:2:1: error concurrently-in-transaction: CONCURRENTLY in a migration that runs in a transaction"
        ),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains("    | CREATE INDEX CONCURRENTLY i ON users (email);\n"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains("    safe: put `-- fleetmig: no-transaction` on the first line"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains("    runs on: unknown (no fleet file: the fleet was not surveyed)"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.ends_with("lint: 1 file(s), 1 error(s), 0 warning(s)\n"),
        "{}",
        run.stdout
    );
    let run = p.run(&["lint", "--engine", "postgres", &f, "--format", "github"]);
    assert_eq!(run.code, 1);
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines.len(), 1, "{}", run.stdout);
    assert!(
        lines[0].starts_with(
            "::error file=idx.sql,line=2,col=1,title=concurrently-in-transaction::CONCURRENTLY in a migration"
        ),
        "{}",
        lines[0]
    );
    assert!(
        lines[0].contains("%0Asafe: put `-- fleetmig: no-transaction`"),
        "{}",
        lines[0]
    );
    // The marker makes it safe.
    let f = file(
        &p,
        "ok.sql",
        "-- fleetmig: no-transaction\nSET lock_timeout = '2s';\nCREATE INDEX CONCURRENTLY i ON users (email);\n",
    );
    let run = p.run(&["lint", "--engine", "postgres", &f, "--format", "github"]);
    assert_eq!((run.code, run.stdout.as_str()), (0, ""), "{}", run.all());
    // Other commands do not take github.
    assert_eq!(p.run(&["history", "--format", "github"]).code, 2);
}

#[test]
fn files_without_engine_or_fleet_ask_for_the_engine() {
    let p = Project::new();
    let f = file(&p, "a.sql", "DROP TABLE a;\n");
    let run = p.run(&["lint", &f]);
    assert_eq!(run.code, 2, "{}", run.all());
    assert!(
        run.stderr.contains("give --engine postgres, mysql or sqlite"),
        "{}",
        run.stderr
    );
    // With a fleet of one engine, that engine.
    p.fleet("defaults: { url: \"sqlite://data/{id}.db\" }\ntenants:\n  - { id: acme }\n");
    let run = p.run(&["lint", &f]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert!(
        run.stdout.starts_with("a.sql:1:1: warning drop-table: drops table a\n"),
        "{}",
        run.stdout
    );
}

/// A SQLite fleet whose second migration drops a table: `lint` counts the tenants that
/// lack it, `up --lint deny` (and `rollout: lint: deny`) refuses before any tenant is
/// touched, `up` warns and goes on.
#[test]
fn up_lint_deny_refuses_before_touching_anything_and_warn_goes_on() {
    let p = Project::new();
    let fleet = "defaults: { url: \"sqlite://data/{id}.db\" }\ntenants:\n  - { id: a }\n  - { id: b }\n";
    p.fleet(fleet)
        .migration(
            "0001_users.up.sql",
            "CREATE TABLE users (id INTEGER PRIMARY KEY);\nCREATE TABLE old (id INTEGER);\n",
        )
        .migration("0002_drop_old.up.sql", "DROP TABLE old;\n");
    let run = p.run(&["lint", "--format", "json"]);
    assert_eq!(run.code, 0, "{}", run.all());
    let doc = json(&run.stdout);
    assert_eq!(doc["findings"][0]["rule"], "drop-table", "{doc}");
    assert_eq!(doc["findings"][0]["reach"]["tenants"], 2, "{doc}");
    // `plan` shows them; as JSON under `lint`.
    let run = p.run(&["plan"]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert!(
        run.stdout.contains("0002_drop_old.up.sql:1:1: warning drop-table"),
        "{}",
        run.stdout
    );
    let doc = json(&p.run(&["plan", "--format", "json"]).stdout);
    assert_eq!(doc["lint"]["findings"][0]["rule"], "drop-table", "{doc}");
    // A migration named as a file is counted like a pending one.
    let run = p.run(&["lint", "migrations/0002_drop_old.up.sql", "--format", "json"]);
    let doc = json(&run.stdout);
    assert_eq!(doc["findings"][0]["reach"]["tenants"], 2, "{doc}");
    assert_eq!(doc["findings"].as_array().unwrap().len(), 1, "{doc}");
    let run = p.run(&["up", "--lint", "deny"]);
    assert_eq!(run.code, 2, "{}", run.all());
    assert!(
        run.stderr.contains("up --lint deny: 1 lint finding(s) not allowed"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("0002_drop_old.up.sql:1:1: warning drop-table"),
        "{}",
        run.stderr
    );
    assert!(
        !p.db_path("a").exists() && !p.db_path("b").exists(),
        "no tenant touched"
    );
    p.fleet(&format!("{fleet}rollout: {{ lint: deny }}\n"));
    assert_eq!(p.run(&["up"]).code, 2);
    assert!(!p.db_path("a").exists(), "no tenant touched");
    let run = p.run(&["up", "--lint", "warn"]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert!(run.stderr.contains("warning drop-table"), "{}", run.stderr);
    assert!(
        !run.stdout.contains("drop-table"),
        "stdout is the run's: {}",
        run.stdout
    );
    // Nothing pending: nothing to lint.
    let run = p.run(&["lint"]);
    assert_eq!(
        (run.code, run.stdout.as_str()),
        (0, "lint: 0 file(s), 0 error(s), 0 warning(s)\n")
    );
    // --from lints what the tenants have too.
    assert!(p.run(&["lint", "--from", "1"]).stdout.contains("warning drop-table"));
}

/// A tenant whose history cannot be read: everything up to the target is linted for it,
/// and the output says the counts may be short rather than printing wrong ones.
#[test]
fn an_unreachable_tenant_is_said_not_counted() {
    let p = Project::new();
    p.fleet("tenants:\n  - { id: gone, url: \"postgres://postgres@127.0.0.1:1/x\" }\n")
        .migration("0001_t.up.sql", "CREATE TABLE t (id bigint PRIMARY KEY);\n")
        .migration("0002_drop.up.sql", "SET lock_timeout = '2s';\nDROP TABLE t;\n");
    let run = p.run(&["lint", "--format", "json"]);
    assert_eq!(run.code, 0, "{}", run.all());
    let doc = json(&run.stdout);
    assert_eq!(
        (doc["files"].as_u64(), doc["unsurveyed"].as_u64()),
        (Some(2), Some(1)),
        "{doc}"
    );
    assert_eq!(
        doc["findings"][0]["reach"],
        serde_json::json!({ "kind": "surveyed", "tenants": 0, "unreachable": 1, "hosts": [] }),
        "{doc}"
    );
    let run = p.run(&["lint"]);
    assert!(
        run.stdout
            .contains("runs on: 0 tenant(s); 1 more could not be surveyed, so it may run on more"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .ends_with("; 1 tenant(s) could not be surveyed: every migration up to the target was linted for them\n"),
        "{}",
        run.stdout
    );
}

/// PostgreSQL schema tenants on two named hosts of one server: a migration with
/// CONCURRENTLY and no marker refuses `plan` and `up` before anything runs (no tenant's
/// schema appears), whatever `--lint` says; with the marker, `lint` counts per host.
#[test]
fn pg_concurrently_without_the_marker_refuses_plan_and_up_and_counts_per_host() {
    let Some(pg) = Pg::create("lint_hosts") else { return };
    let p = Project::new();
    let url = pg.url();
    p.fleet(&format!(
        "hosts:\n  east: {{ url: \"{url}\", max_connections: 2 }}\n  west: {{ url: \"{url}\", max_connections: 1 }}\n\
         defaults: {{ schema: \"t_{{id}}\" }}\ntenants:\n\
         \x20 - {{ id: e1, host: east }}\n  - {{ id: e2, host: east }}\n  - {{ id: e3, host: east }}\n\
         \x20 - {{ id: w1, host: west }}\n  - {{ id: w2, host: west }}\n"
    ))
    .migration(
        "0001_users.up.sql",
        "CREATE TABLE users (id bigint PRIMARY KEY, email text);\n",
    )
    .migration(
        "0002_idx.up.sql",
        "CREATE INDEX CONCURRENTLY users_email_idx ON users (email);\n",
    );
    let schemas = || pg.column("SELECT count(*)::text FROM pg_namespace WHERE nspname LIKE 't\\_%'");
    for args in [&["plan"][..], &["up"], &["up", "--lint", "off"]] {
        let run = p.run(args);
        assert_eq!(run.code, 2, "{args:?}: {}", run.all());
        assert!(
            run.stderr.contains("lint error(s) that would fail on every tenant: migrations/0002_idx.up.sql:1: concurrently-in-transaction"),
            "{args:?}: {}",
            run.stderr
        );
        assert_eq!(schemas(), ["0"], "{args:?} touched no tenant");
    }
    // Allowed (with a reason), it no longer refuses.
    p.migration(
        "0002_idx.up.sql",
        "-- fleetmig: allow concurrently-in-transaction tested by hand\nCREATE INDEX CONCURRENTLY users_email_idx ON users (email);\n",
    );
    let run = p.run(&["plan"]);
    assert_eq!(run.code, 0, "{}", run.all());
    p.migration(
        "0002_idx.up.sql",
        "-- fleetmig: no-transaction\nCREATE INDEX CONCURRENTLY users_email_idx ON users (email);\n",
    );
    p.migration("0003_rename.up.sql", "ALTER TABLE users RENAME COLUMN email TO mail;\n");
    let run = p.run(&["up", "--to", "1"]);
    assert_eq!(run.code, 0, "{}", run.all());
    let run = p.run(&["lint", "--format", "json"]);
    assert_eq!(run.code, 0, "{}", run.all());
    let doc = json(&run.stdout);
    let finding = doc["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["rule"] == "rename-column")
        .unwrap_or_else(|| panic!("{doc}"));
    assert_eq!(
        finding["reach"],
        serde_json::json!({
            "kind": "surveyed", "tenants": 5, "unreachable": 0,
            "hosts": [
                { "host": "east", "tenants": 3, "at_once": 2 },
                { "host": "west", "tenants": 2, "at_once": 1 },
            ],
        }),
        "{doc}"
    );
    let run = p.run(&["-j", "1", "lint"]);
    assert!(
        run.stdout
            .contains("runs on: 5 tenant(s) (east: 3, 1 at once; west: 2, 1 at once)"),
        "{}",
        run.stdout
    );
}

/// The README's `lint` samples are what the binary prints on the demo fleet.
#[test]
fn the_readmes_lint_samples_are_real_output() {
    use crate::cli::{demo_project, readme_sample};
    let p = demo_project();
    for command in ["lint --select tier=free", "lint --format github --select id=acme"] {
        let run = p.run(&command.split(' ').collect::<Vec<_>>());
        assert_eq!(run.code, 0, "{command}: {}", run.all());
        assert_eq!(readme_sample(command), run.stdout, "{command}");
    }
    file(
        &p,
        "change.sql",
        "-- fleetmig: allow drop-table audit_log has been unused since 3.0\nDROP TABLE audit_log;\nALTER TABLE users ADD COLUMN plan TEXT NOT NULL;\n",
    );
    let run = p.run(&["lint", "--engine", "sqlite", "change.sql"]);
    assert_eq!(readme_sample("lint --engine sqlite change.sql"), run.stdout);
}
