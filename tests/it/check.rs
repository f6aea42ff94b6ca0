//! `fleetmig check`: every migration, its down and its up again, on an empty scratch target:
//! a temporary SQLite file with no server, a temporary PostgreSQL database made and dropped
//! on the scratch server. Fixture sets under tests/fixtures/check/ each break one way.

use std::path::{Path, PathBuf};

use crate::support::{MYSQL_ADMIN, My, PG_ADMIN, Pg, Project};

fn fixture(set: &str) -> String {
    let dir: PathBuf = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/check")
        .join(set);
    dir.display().to_string()
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// `check --format json` of fixture `set` on `engine`: the exit code and the document.
fn check(p: &Project, set: &str, engine: &str, extra: &[&str]) -> (i32, serde_json::Value) {
    let dir = fixture(set);
    let mut args = vec!["check", "--engine", engine, "--migrations", &dir, "--format", "json"];
    args.extend(extra);
    let run = p.run(&args);
    assert!(run.code == 0 || run.code == 1, "{}", run.all());
    (run.code, json(&run.stdout))
}

/// Each migration's (label, verdict) of the report's only engine.
fn verdicts(doc: &serde_json::Value) -> Vec<(String, String)> {
    let engine = &doc["engines"][0];
    assert!(engine["error"].is_null(), "{doc}");
    engine["migrations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["label"].as_str().unwrap().to_owned(),
                m["verdict"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn pairs(expected: &[(&str, &str)]) -> Vec<(String, String)> {
    expected
        .iter()
        .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
        .collect()
}

/// The diff lines of migration `i`, as text: `"extra index users_email_idx"`.
fn diff(doc: &serde_json::Value, i: usize) -> Vec<String> {
    doc["engines"][0]["migrations"][i]["diff"]
        .as_array()
        .unwrap_or_else(|| panic!("no diff for migration {i}: {doc}"))
        .iter()
        .map(|d| {
            let mut line = format!(
                "{} {} {}",
                d["change"].as_str().unwrap(),
                d["kind"].as_str().unwrap(),
                d["name"].as_str().unwrap()
            );
            if let Some(attr) = d["attr"].as_str() {
                line.push_str(&format!(": {attr} {}, expected {}", d["actual"], d["expected"]));
            }
            line
        })
        .collect()
}

/// The demo set of the repository passes on SQLite, with no server and no fleet file but
/// the demo's own, text and JSON alike.
#[test]
fn the_demo_set_passes_on_sqlite_with_no_server() {
    let p = Project::new();
    let demo = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("migrations")
        .display()
        .to_string();
    p.fleet("defaults: { url: \"sqlite://data/{id}.db\" }\ntenants:\n  - { id: acme }\n");
    let run = p.run(&["check", "--migrations", &demo]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert!(run.stdout.starts_with("sqlite (temporary file)\n"), "{}", run.stdout);
    assert!(
        run.stdout
            .ends_with("check passed: 7 migration(s) on 1 engine(s): 7 ok\n"),
        "{}",
        run.stdout
    );
    assert!(!p.path().join("data").exists(), "check touched no tenant");
    let run = p.run(&["check", "--migrations", &demo, "--format", "json"]);
    let doc = json(&run.stdout);
    assert_eq!(doc["passed"], true, "{doc}");
    assert_eq!(verdicts(&doc).len(), 7);
    assert!(doc["engines"][0]["migrations"][0]["duration_ms"].is_u64(), "{doc}");
}

#[test]
fn sqlite_a_down_that_forgets_an_index_is_down_incomplete() {
    let p = Project::new();
    let (code, doc) = check(&p, "forgotten_index", "sqlite", &[]);
    assert_eq!(code, 1);
    assert_eq!(
        verdicts(&doc),
        pairs(&[
            ("0001_users", "ok"),
            ("0002_audit", "down-incomplete"),
            ("0003_user_name", "not-checked")
        ])
    );
    assert_eq!(diff(&doc, 1), ["extra index users_email_idx"]);
    let text = p.run(&[
        "check",
        "--engine",
        "sqlite",
        "--migrations",
        &fixture("forgotten_index"),
    ]);
    assert_eq!(text.code, 1);
    assert!(
        text.stdout
            .contains("  0002_audit:\n    - index users_email_idx left behind\n"),
        "{}",
        text.stdout
    );
}

#[test]
fn sqlite_an_up_that_fails_when_run_again_is_redo_fails_and_irreversible_passes_unless_strict() {
    let p = Project::new();
    let (code, doc) = check(&p, "redo_fails", "sqlite", &[]);
    assert_eq!(code, 1);
    assert_eq!(
        verdicts(&doc),
        pairs(&[("0001_settings", "ok"), ("0002_features", "redo-fails")])
    );
    let error = doc["engines"][0]["migrations"][1]["error"].as_str().unwrap();
    assert!(
        error.contains("0002_features.up.sql") && error.contains("UNIQUE constraint failed"),
        "{error}"
    );

    let (code, doc) = check(&p, "irreversible", "sqlite", &[]);
    assert_eq!(code, 0, "{doc}");
    assert_eq!(
        verdicts(&doc),
        pairs(&[
            ("0001_events", "irreversible"),
            ("0002_archive", "irreversible"),
            ("0003_tags", "ok")
        ])
    );
    assert_eq!(doc["engines"][0]["migrations"][1]["empty_down"], true);
    let (code, doc) = check(&p, "irreversible", "sqlite", &["--strict"]);
    assert_eq!(code, 1, "{doc}");
    assert_eq!(doc["passed"], false);
}

/// `--from` applies the migrations up to it unchecked; `--to` stops early.
#[test]
fn sqlite_from_and_to_bound_the_walk() {
    let p = Project::new();
    let (code, doc) = check(&p, "forgotten_index", "sqlite", &["--to", "1"]);
    assert_eq!(code, 0, "{doc}");
    assert_eq!(verdicts(&doc), pairs(&[("0001_users", "ok")]));
    let (code, doc) = check(&p, "irreversible", "sqlite", &["--from", "2"]);
    assert_eq!(code, 0, "{doc}");
    assert_eq!(verdicts(&doc), pairs(&[("0003_tags", "ok")]));
}

/// The scratch database is made on the server and gone afterwards, whatever the verdicts.
fn scratch_dropped(pg: &Pg, doc: &serde_json::Value) {
    let scratch = doc["engines"][0]["scratch"].as_str().unwrap();
    let name = scratch.rsplit(' ').next().unwrap();
    assert!(name.starts_with("fleetmig_check_"), "{scratch}");
    let left = pg.column(&format!(
        "SELECT count(*)::text FROM pg_database WHERE datname = '{name}'"
    ));
    assert_eq!(left, ["0"], "scratch database {name} left behind");
}

#[test]
fn postgres_fixtures_get_their_verdicts_and_diffs() {
    let Some(pg) = Pg::create("check") else { return };
    let p = Project::new();
    let scratch = ["--scratch", PG_ADMIN];
    let (code, doc) = check(&p, "postgres_diffs", "postgres", &scratch);
    assert_eq!(code, 1);
    assert_eq!(
        verdicts(&doc),
        pairs(&[
            ("0001_users", "ok"),
            ("0002_plan_as_text", "down-incomplete"),
            ("0003_accounts", "down-incomplete")
        ])
    );
    assert_eq!(
        diff(&doc, 1),
        ["changed column users.plan: type \"text\", expected \"character varying(20)\""]
    );
    assert_eq!(diff(&doc, 2), ["extra enum-type plan_kind"]);
    scratch_dropped(&pg, &doc);

    let (code, doc) = check(&p, "forgotten_index", "postgres", &scratch);
    assert_eq!(code, 1);
    assert_eq!(
        verdicts(&doc)[1],
        ("0002_audit".to_owned(), "down-incomplete".to_owned())
    );
    assert_eq!(diff(&doc, 1), ["extra index users_email_idx"]);
    scratch_dropped(&pg, &doc);

    let (code, doc) = check(&p, "redo_fails", "postgres", &scratch);
    assert_eq!(code, 1);
    assert_eq!(
        verdicts(&doc),
        pairs(&[("0001_settings", "ok"), ("0002_features", "redo-fails")])
    );
    let error = doc["engines"][0]["migrations"][1]["error"].as_str().unwrap();
    assert!(error.contains("23505"), "{error}");

    let (code, doc) = check(&p, "irreversible", "postgres", &scratch);
    assert_eq!(code, 0, "{doc}");
    assert_eq!(verdicts(&doc)[2], ("0003_tags".to_owned(), "ok".to_owned()));
    scratch_dropped(&pg, &doc);

    // The demo set as written for PostgreSQL passes.
    let demo = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/postgres/migrations");
    let demo = demo.display().to_string();
    let run = p.run(&[
        "check",
        "--engine",
        "postgres",
        "--migrations",
        &demo,
        "--scratch",
        PG_ADMIN,
    ]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert!(
        run.stdout
            .ends_with("check passed: 7 migration(s) on 1 engine(s): 7 ok\n"),
        "{}",
        run.stdout
    );
}

/// The fleet file's `scratch:` names a host; a schema-tenant fleet is checked in a scratch
/// schema of that name, and the tenants themselves are not touched.
#[test]
fn postgres_scratch_from_the_fleet_file_with_the_fleets_schema() {
    let Some(pg) = Pg::create("check_fleet") else { return };
    let p = Project::new();
    p.fleet(&format!(
        "hosts:\n  main: {{ url: \"{}\" }}\nscratch: main\ndefaults: {{ host: main, schema: \"t_{{id}}\" }}\ntenants:\n  - {{ id: acme }}\n",
        pg.url()
    ));
    p.migration(
        "0001_a.up.sql",
        "CREATE TABLE a (id serial PRIMARY KEY, n int REFERENCES a (id));\nCREATE VIEW a_ids AS SELECT id FROM a;\n",
    );
    p.migration("0001_a.down.sql", "DROP VIEW a_ids;\nDROP TABLE a;\n");
    p.migration(
        "0002_f.up.sql",
        "CREATE FUNCTION one() RETURNS int LANGUAGE sql AS 'SELECT 1';\nCREATE TYPE kind AS ENUM ('a', 'b');\n",
    );
    p.migration("0002_f.down.sql", "DROP FUNCTION one();\nDROP TYPE kind;\n");
    // Honoured as by `up`: run outside a transaction, which a concurrent build needs.
    p.migration(
        "0003_i.up.sql",
        "-- fleetmig: no-transaction\nCREATE INDEX CONCURRENTLY a_n_idx ON a (n);\n",
    );
    p.migration(
        "0003_i.down.sql",
        "-- fleetmig: no-transaction\nDROP INDEX CONCURRENTLY a_n_idx;\n",
    );
    let run = p.run(&["check", "--format", "json"]);
    let doc = json(&run.stdout);
    assert_eq!(run.code, 0, "{doc}\n{}", run.stderr);
    assert_eq!(
        verdicts(&doc),
        pairs(&[("0001_a", "ok"), ("0002_f", "ok"), ("0003_i", "ok")])
    );
    let schemas = pg.column("SELECT count(*)::text FROM pg_namespace WHERE nspname = 't_acme'");
    assert_eq!(schemas, ["0"], "check touched a tenant");
    scratch_dropped(&pg, &doc);
}

#[test]
fn mariadb_fixtures_get_their_verdicts_and_diffs() {
    let Some(my) = My::create("check") else { return };
    let p = Project::new();
    let scratch = ["--scratch", MYSQL_ADMIN];
    let (code, doc) = check(&p, "forgotten_index", "mysql", &scratch);
    assert_eq!(code, 1);
    assert_eq!(
        verdicts(&doc),
        pairs(&[
            ("0001_users", "ok"),
            ("0002_audit", "down-incomplete"),
            ("0003_user_name", "not-checked")
        ])
    );
    assert_eq!(diff(&doc, 1), ["extra index users.users_email_idx"]);
    let (code, doc) = check(&p, "redo_fails", "mysql", &scratch);
    assert_eq!(code, 1);
    assert_eq!(
        verdicts(&doc),
        pairs(&[("0001_settings", "ok"), ("0002_features", "redo-fails")])
    );
    let (code, doc) = check(&p, "irreversible", "mysql", &scratch);
    assert_eq!(code, 0, "{doc}");
    assert_eq!(verdicts(&doc)[2], ("0003_tags".to_owned(), "ok".to_owned()));
    let name = doc["engines"][0]["scratch"]
        .as_str()
        .unwrap()
        .rsplit(' ')
        .next()
        .unwrap()
        .to_owned();
    let left = my.column(&format!(
        "SELECT CAST(count(*) AS CHAR) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = '{name}'"
    ));
    assert_eq!(left, ["0"], "scratch database {name} left behind");
}

/// `up --check-migrations` (or `rollout: check_migrations: true`) checks the pending
/// migrations first and refuses a set with a broken down before any tenant is touched.
#[test]
fn up_check_migrations_refuses_a_broken_down_before_any_tenant_is_touched() {
    let p = Project::new();
    for entry in std::fs::read_dir(fixture("forgotten_index")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_owned();
        p.migration(&name, &std::fs::read_to_string(&path).unwrap());
    }
    let fleet = "defaults: { url: \"sqlite://data/{id}.db\" }\ntenants:\n  - { id: acme }\n";
    p.fleet(fleet);
    let run = p.run(&["up", "--check-migrations"]);
    assert_eq!(run.code, 2, "{}", run.all());
    assert!(
        run.stderr
            .contains("sqlite 0002_audit: down-incomplete (index users_email_idx left behind)"),
        "{}",
        run.stderr
    );
    assert!(!p.db_path("acme").exists(), "a tenant was touched");

    let run = p.run(&["up", "--check-migrations", "--to", "1"]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert_eq!(
        crate::support::sqlite_column(&p.db_path("acme"), "SELECT version FROM fleetmig_history"),
        ["1"]
    );

    // From the fleet file, over what is pending: 0002 on.
    p.fleet(&format!("{fleet}rollout: {{ check_migrations: true }}\n"));
    let run = p.run(&["up"]);
    assert_eq!(run.code, 2, "{}", run.all());
    assert!(run.stderr.contains("0002_audit: down-incomplete"), "{}", run.stderr);
    assert!(!run.stderr.contains("0001_users"), "{}", run.stderr);
    assert_eq!(
        crate::support::sqlite_column(&p.db_path("acme"), "SELECT version FROM fleetmig_history"),
        ["1"]
    );
}

/// A down script that fails is `down-fails`, naming the down file; the walk stops there.
#[test]
fn sqlite_a_failing_down_is_down_fails() {
    let p = Project::new();
    p.migration("0001_a.up.sql", "CREATE TABLE a (id INTEGER PRIMARY KEY);\n");
    p.migration("0001_a.down.sql", "DROP TABLE no_such_table;\n");
    p.migration("0002_b.up.sql", "CREATE TABLE b (id INTEGER PRIMARY KEY);\n");
    p.migration("0002_b.down.sql", "DROP TABLE b;\n");
    let run = p.run(&["check", "--engine", "sqlite", "--format", "json"]);
    assert_eq!(run.code, 1, "{}", run.all());
    let doc = json(&run.stdout);
    assert_eq!(
        verdicts(&doc),
        pairs(&[("0001_a", "down-fails"), ("0002_b", "not-checked")])
    );
    let error = doc["engines"][0]["migrations"][0]["error"].as_str().unwrap();
    assert!(
        error.contains("0001_a.down.sql") && error.contains("no such table"),
        "{error}"
    );
}

/// SQLite keeps CHECK constraints and column collations only in a table's CREATE text: a
/// rebuild in a down script that forgets them (or keeps one it should drop) is seen.
#[test]
fn sqlite_checks_and_collations_are_in_the_snapshot() {
    let p = Project::new();
    p.migration(
        "0001_users.up.sql",
        "CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT NOT NULL COLLATE NOCASE, age INTEGER CHECK (age >= 0));\n",
    );
    p.migration("0001_users.down.sql", "DROP TABLE users;\n");
    p.migration(
        "0002_email_len.up.sql",
        "CREATE TABLE users_new (id INTEGER PRIMARY KEY, email TEXT NOT NULL COLLATE NOCASE, \
         age INTEGER CHECK (age >= 0), CONSTRAINT email_len CHECK (length(email) > 3));\n\
         INSERT INTO users_new SELECT id, email, age FROM users;\nDROP TABLE users;\n\
         ALTER TABLE users_new RENAME TO users;\nPRAGMA foreign_key_check;\n",
    );
    // The way back keeps the new CHECK and loses the column's collation and the old CHECK.
    p.migration(
        "0002_email_len.down.sql",
        "CREATE TABLE users_old (id INTEGER PRIMARY KEY, email TEXT NOT NULL, age INTEGER, \
         CONSTRAINT email_len CHECK (length(email) > 3));\n\
         INSERT INTO users_old SELECT id, email, age FROM users;\nDROP TABLE users;\n\
         ALTER TABLE users_old RENAME TO users;\n",
    );
    let run = p.run(&["check", "--engine", "sqlite", "--format", "json"]);
    assert_eq!(run.code, 1, "{}", run.all());
    let doc = json(&run.stdout);
    assert_eq!(
        verdicts(&doc),
        pairs(&[("0001_users", "ok"), ("0002_email_len", "down-incomplete")])
    );
    assert_eq!(
        diff(&doc, 1),
        [
            "changed column users.email: collation null, expected \"NOCASE\"",
            "missing constraint users.check (age >= 0)",
            "extra constraint users.email_len"
        ]
    );
}

/// MariaDB's CHECK clauses are compared, each on its own table even when two tables'
/// column checks share a name.
#[test]
fn mariadb_check_clauses_are_in_the_snapshot() {
    let Some(_my) = My::create("check_clauses") else { return };
    let p = Project::new();
    p.migration(
        "0001_t.up.sql",
        "CREATE TABLE t (x INT CHECK (x > 0), y INT, CONSTRAINT y_pos CHECK (y > 0));\n\
         CREATE TABLE u (x INT CHECK (x < 5));\n",
    );
    p.migration("0001_t.down.sql", "DROP TABLE u;\nDROP TABLE t;\n");
    p.migration(
        "0002_y.up.sql",
        "ALTER TABLE t DROP CONSTRAINT y_pos;\nALTER TABLE t ADD CONSTRAINT y_pos CHECK (y > 10);\n",
    );
    p.migration(
        "0002_y.down.sql",
        "ALTER TABLE t DROP CONSTRAINT y_pos;\nALTER TABLE t ADD CONSTRAINT y_pos CHECK (y >= 0);\n",
    );
    let run = p.run(&[
        "check",
        "--engine",
        "mysql",
        "--scratch",
        MYSQL_ADMIN,
        "--format",
        "json",
    ]);
    assert_eq!(run.code, 1, "{}", run.all());
    let doc = json(&run.stdout);
    assert_eq!(
        verdicts(&doc),
        pairs(&[("0001_t", "ok"), ("0002_y", "down-incomplete")])
    );
    assert_eq!(
        diff(&doc, 1),
        ["changed constraint t.y_pos: check \"`y` >= 0\", expected \"`y` > 0\""]
    );
}

/// An up that makes a different schema the second time (here: it looks at rows its down
/// left) is `redo-differs`, with the diff against the first up's schema.
#[test]
fn postgres_an_up_that_differs_when_run_again_is_redo_differs() {
    let Some(_pg) = Pg::create("check_redo") else { return };
    let p = Project::new();
    p.migration(
        "0001_flags.up.sql",
        "CREATE TABLE flags (n int);\nINSERT INTO flags VALUES (1);\n",
    );
    p.migration("0001_flags.down.sql", "DROP TABLE flags;\n");
    p.migration(
        "0002_more.up.sql",
        "DO $$ BEGIN IF (SELECT count(*) FROM flags) > 1 THEN CREATE INDEX flags_n ON flags (n); END IF; END $$;\n\
         INSERT INTO flags VALUES (2);\n",
    );
    p.migration("0002_more.down.sql", "-- the rows stay\nSELECT 1;\n");
    let run = p.run(&[
        "check",
        "--engine",
        "postgres",
        "--scratch",
        PG_ADMIN,
        "--format",
        "json",
    ]);
    assert_eq!(run.code, 1, "{}", run.all());
    let doc = json(&run.stdout);
    assert_eq!(
        verdicts(&doc),
        pairs(&[("0001_flags", "ok"), ("0002_more", "redo-differs")])
    );
    assert_eq!(diff(&doc, 1), ["extra index flags_n"]);
}

/// The demo set as written for MariaDB (examples/mysql) passes on a MariaDB scratch.
#[test]
fn mariadb_the_demo_set_passes() {
    let Some(_my) = My::create("check_demo") else { return };
    let p = Project::new();
    let demo = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/mysql/migrations");
    let demo = demo.display().to_string();
    let run = p.run(&[
        "check",
        "--engine",
        "mysql",
        "--migrations",
        &demo,
        "--scratch",
        MYSQL_ADMIN,
    ]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert!(
        run.stdout
            .ends_with("check passed: 8 migration(s) on 1 engine(s): 8 ok\n"),
        "{}",
        run.stdout
    );
}

/// SIGTERM while a migration runs on the scratch database: the walk stops, the scratch
/// database is still dropped, and the report says the check was interrupted.
#[test]
fn sigterm_during_a_check_drops_the_scratch_database() {
    use std::time::{Duration, Instant};
    let Some(pg) = Pg::create("check_term") else { return };
    let p = Project::new();
    p.migration("0001_slow.up.sql", "CREATE TABLE a (id int);\nSELECT pg_sleep(60);\n");
    p.migration("0001_slow.down.sql", "DROP TABLE a;\n");
    let run = crate::support::Spawned::new(p.command(&[
        "check",
        "--engine",
        "postgres",
        "--scratch",
        PG_ADMIN,
        "--format",
        "json",
    ]));
    let prefix = format!("fleetmig_check_{}_", run.pid());
    let sleeping = format!(
        "SELECT count(*)::text FROM pg_stat_activity WHERE datname LIKE '{prefix}%' AND query LIKE '%pg_sleep(60)%'"
    );
    let bound = Duration::from_secs(60);
    let until = Instant::now() + bound;
    while pg.column(&sleeping)[0] == "0" {
        assert!(Instant::now() < until, "the check never reached its migration");
        std::thread::sleep(Duration::from_millis(20));
    }
    run.signal("TERM");
    let (code, lines, stderr) = run.finish(bound);
    assert_eq!(code, Some(1), "{stderr}");
    let doc = json(&lines.join("\n"));
    assert!(
        doc["engines"][0]["error"].as_str().unwrap().starts_with("interrupted"),
        "{doc}"
    );
    let left = pg.column(&format!(
        "SELECT count(*)::text FROM pg_database WHERE datname LIKE '{prefix}%'"
    ));
    assert_eq!(left, ["0"], "scratch database left behind");
}

/// A check killed with `kill -9` cannot drop its scratch database; the next check on the
/// server drops those older than a day with no session on them, and leaves the rest.
#[test]
fn a_check_drops_scratch_databases_a_killed_check_left_a_day_ago_and_no_others() {
    use sqlx::Connection;
    let Some(pg) = Pg::create("check_sweep") else { return };
    let Some(my) = My::create("check_sweep") else { return };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let pid = std::process::id();
    let named = |ago: u64, tag: &str| format!("fleetmig_check_{pid}_{}_{tag}", now - ago);
    let (stale, fresh, busy) = (named(2 * 86_400, "aa"), named(60, "bb"), named(3 * 86_400, "cc"));
    for name in [&stale, &fresh, &busy] {
        pg.exec(&format!("CREATE DATABASE \"{name}\""));
        my.exec(&format!("CREATE DATABASE `{name}`"));
    }
    // A session on `busy` (an operator looking at what the check left): it stays.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let pg_session = rt
        .block_on(sqlx::PgConnection::connect(&format!(
            "postgres://postgres@127.0.0.1:5432/{busy}"
        )))
        .unwrap();
    let my_session = rt
        .block_on(sqlx::MySqlConnection::connect(&format!(
            "mysql://root@127.0.0.1:3306/{busy}"
        )))
        .unwrap();

    let p = Project::new();
    for (engine, admin) in [("postgres", PG_ADMIN), ("mysql", MYSQL_ADMIN)] {
        let (code, doc) = check(&p, "forgotten_index", engine, &["--scratch", admin, "--to", "1"]);
        assert_eq!(code, 0, "{doc}");
    }
    let pg_left = |name: &str| {
        pg.column(&format!(
            "SELECT count(*)::text FROM pg_database WHERE datname = '{name}'"
        ))
    };
    let my_left = |name: &str| {
        my.column(&format!(
            "SELECT CAST(count(*) AS CHAR) FROM information_schema.schemata WHERE schema_name = '{name}'"
        ))
    };
    for (name, want) in [(&stale, "0"), (&fresh, "1"), (&busy, "1")] {
        assert_eq!(pg_left(name), [want], "PostgreSQL: {name}");
        assert_eq!(my_left(name), [want], "MariaDB: {name}");
    }
    rt.block_on(pg_session.close()).unwrap();
    rt.block_on(my_session.close()).unwrap();
    for name in [&fresh, &busy] {
        pg.exec(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"));
        my.exec(&format!("DROP DATABASE IF EXISTS `{name}`"));
    }
}
