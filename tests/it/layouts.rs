//! Other tools' migration folders, read as they are: diesel's folders (text versions),
//! Flyway's scripts (dotted versions, undo scripts), dbmate's two-section files, sqlx's
//! simple files; detection, and a folder of two layouts refused with what it holds.

use std::path::Path;

use serde_json::Value;

use crate::support::{self, Project, sqlite_column};

fn write(root: &Path, rel: &str, text: &str) {
    let path = root.join("migrations").join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

fn sqlite_project() -> Project {
    let p = Project::new();
    p.fleet("defaults: { url: \"sqlite://data/{id}.db\" }\ntenants:\n  - { id: acme }\n  - { id: globex }\n");
    std::fs::create_dir_all(p.path().join("data")).unwrap();
    p
}

fn json(p: &Project, args: &[&str]) -> Value {
    let run = p.run(args);
    assert!(run.code == 0 || run.code == 1, "{}", run.all());
    serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("{e}: {}", run.all()))
}

fn history(db: &Path) -> Vec<String> {
    sqlite_column(db, "SELECT version FROM fleetmig_history ORDER BY applied_at, rowid")
}

/// diesel's folders, versions of 14, 18 and 8 characters and the all-zero first one,
/// each migration reading the table the one before it made: applied in diesel's order
/// (text order), a loose `.sql` and a README beside them ignored and listed.
#[test]
fn a_diesel_folder_runs_in_diesels_order_with_text_versions() {
    let p = sqlite_project();
    let root = p.path();
    write(
        root,
        "00000000000000_diesel_initial_setup/up.sql",
        "CREATE TABLE seq (step TEXT);",
    );
    write(root, "00000000000000_diesel_initial_setup/down.sql", "DROP TABLE seq;");
    write(
        root,
        "2016-01-07-082941_first/up.sql",
        "INSERT INTO seq VALUES ('first');",
    );
    write(
        root,
        "2016-01-07-082941_first/down.sql",
        "DELETE FROM seq WHERE step = 'first';",
    );
    write(
        root,
        "201601070829410000_second/up.sql",
        "INSERT INTO seq SELECT 'second' FROM seq WHERE step = 'first';",
    );
    write(
        root,
        "201601070829410000_second/down.sql",
        "DELETE FROM seq WHERE step = 'second';",
    );
    write(
        root,
        "20170101_third/up.sql",
        "INSERT INTO seq SELECT 'third' FROM seq WHERE step = 'second';",
    );
    write(root, "20170101_third/down.sql", "");
    write(root, "20170101_third/metadata.toml", "run_in_transaction = false\n");
    write(root, "schema.sql", "this is not a migration");
    write(root, "README.md", "notes");
    write(root, ".keep/up.sql", "hidden");

    let h = json(&p, &["history", "--format", "json"]);
    assert_eq!(h["layout"], "diesel", "{h}");
    let versions: Vec<&str> = h["migrations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["version"].as_str().unwrap())
        .collect();
    assert_eq!(
        versions,
        ["00000000000000", "20160107082941", "201601070829410000", "20170101"]
    );
    assert_eq!(h["migrations"][3]["transactional"], false, "metadata.toml says so: {h}");
    assert_eq!(h["migrations"][3]["reversible"], false, "an empty down.sql: {h}");
    assert_eq!(h["migrations"][3]["empty_down"], true, "{h}");
    let ignored: Vec<&str> = h["ignored"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(
        ignored.iter().any(|i| i.ends_with("schema.sql"))
            && ignored.iter().any(|i| i.ends_with("README.md"))
            && ignored.iter().any(|i| i.ends_with(".keep")),
        "{h}"
    );

    let up = p.run(&["up"]);
    assert_eq!(up.code, 0, "{}", up.all());
    let db = p.db_path("acme");
    assert_eq!(
        sqlite_column(&db, "SELECT step FROM seq ORDER BY rowid"),
        ["first", "second", "third"]
    );
    assert_eq!(
        history(&db),
        ["00000000000000", "20160107082941", "201601070829410000", "20170101"]
    );
    let s = json(&p, &["status", "--format", "json"]);
    assert_eq!(s["head"], "20170101", "{s}");
    assert_eq!(s["tenants"][0]["state"], "current", "{s}");

    // Down past the irreversible one is refused by name; to just before it, it is not.
    let refused = p.run(&["down", "--to", "20160107082941"]);
    assert_eq!(refused.code, 2, "{}", refused.all());
    assert!(refused.stderr.contains("20170101"), "{}", refused.stderr);
    std::fs::write(
        root.join("migrations/20170101_third/down.sql"),
        "DELETE FROM seq WHERE step = 'third';",
    )
    .unwrap();
    let down = p.run(&["down", "--to", "20160107082941"]);
    assert_eq!(down.code, 0, "{}", down.all());
    assert_eq!(sqlite_column(&db, "SELECT step FROM seq ORDER BY rowid"), ["first"]);
    assert_eq!(history(&db), ["00000000000000", "20160107082941"]);
    // `--to 00000000000000` is diesel's first version, not "nothing applied".
    let first = p.run(&["down", "--to", "00000000000000"]);
    assert_eq!(first.code, 0, "{}", first.all());
    assert_eq!(history(&db), ["00000000000000"]);
}

/// Flyway's versions are dotted numbers (1.2 before 1.10), its undo scripts are the way
/// down; a repeatable script is refused by name rather than skipped.
#[test]
fn a_flyway_folder_orders_dotted_versions_and_undoes_with_u_scripts() {
    let p = sqlite_project();
    let root = p.path();
    write(root, "V1__init.sql", "CREATE TABLE seq (step TEXT);");
    write(root, "V1_1__a.sql", "INSERT INTO seq VALUES ('1.1');");
    write(
        root,
        "V1_2__b.sql",
        "INSERT INTO seq SELECT '1.2' FROM seq WHERE step = '1.1';",
    );
    write(
        root,
        "V1_10__c.sql",
        "INSERT INTO seq SELECT '1.10' FROM seq WHERE step = '1.2';",
    );
    write(root, "U1_10__c.sql", "DELETE FROM seq WHERE step = '1.10';");
    let up = p.run(&["up", "--to", "1.2"]);
    assert_eq!(up.code, 0, "{}", up.all());
    let db = p.db_path("acme");
    assert_eq!(history(&db), ["1", "1.1", "1.2"]);
    let up = p.run(&["up"]);
    assert_eq!(up.code, 0, "{}", up.all());
    assert_eq!(
        sqlite_column(&db, "SELECT step FROM seq ORDER BY rowid"),
        ["1.1", "1.2", "1.10"]
    );
    let down = p.run(&["down", "--to", "1.2"]);
    assert_eq!(down.code, 0, "{}", down.all());
    assert_eq!(history(&db), ["1", "1.1", "1.2"]);
    assert_eq!(
        sqlite_column(&db, "SELECT step FROM seq ORDER BY rowid"),
        ["1.1", "1.2"]
    );

    // A repeatable migration runs after the versioned ones (see `repeatables`).
    write(root, "R__views.sql", "CREATE VIEW v AS SELECT 'yes' AS one;");
    let up = p.run(&["up"]);
    assert_eq!(up.code, 0, "{}", up.all());
    assert_eq!(sqlite_column(&db, "SELECT one FROM v"), ["yes"]);
    assert_eq!(history(&db), ["1", "1.1", "1.2", "1.10"]);
}

/// dbmate's files: the up and down sections of one file, applied and reverted.
#[test]
fn a_dbmate_folder_runs_its_up_and_down_sections() {
    let p = sqlite_project();
    let root = p.path();
    write(
        root,
        "20151129054053_users.sql",
        "-- migrate:up\nCREATE TABLE users (id INTEGER);\n\n-- migrate:down\nDROP TABLE users;\n",
    );
    write(
        root,
        "20151129054100_posts.sql",
        "-- migrate:up transaction:false\nCREATE TABLE posts (id INTEGER);\n-- migrate:down\nDROP TABLE posts;\n",
    );
    let h = json(&p, &["history", "--format", "json"]);
    assert_eq!(h["layout"], "dbmate", "{h}");
    assert_eq!(h["migrations"][1]["transactional"], false, "{h}");
    let up = p.run(&["up"]);
    assert_eq!(up.code, 0, "{}", up.all());
    let db = p.db_path("globex");
    assert_eq!(history(&db), ["20151129054053", "20151129054100"]);
    let tables = "SELECT name FROM sqlite_master WHERE name IN ('users', 'posts') ORDER BY name";
    assert_eq!(sqlite_column(&db, tables), ["posts", "users"]);
    let down = p.run(&["down", "--to", "0", "--yes"]);
    assert_eq!(down.code, 0, "{}", down.all());
    assert!(sqlite_column(&db, tables).is_empty());
}

/// sqlx's simple files run one way; `down` is refused as irreversible, naming the file.
#[test]
fn sqlx_simple_files_run_up_and_are_irreversible() {
    let p = sqlite_project();
    let root = p.path();
    write(root, "1_users.sql", "CREATE TABLE users (id INTEGER);");
    write(
        root,
        "2_posts.sql",
        "-- no-transaction\nCREATE TABLE posts (id INTEGER);",
    );
    let h = json(&p, &["history", "--format", "json"]);
    assert_eq!(h["layout"], "sqlx-simple", "{h}");
    assert_eq!(h["migrations"][1]["transactional"], false, "{h}");
    let up = p.run(&["up"]);
    assert_eq!(up.code, 0, "{}", up.all());
    assert_eq!(history(&p.db_path("acme")), ["1", "2"]);
    let down = p.run(&["down", "--to", "1"]);
    assert_eq!(down.code, 2, "{}", down.all());
    assert!(down.stderr.contains("2_posts.sql"), "{}", down.stderr);
}

/// Files of two layouts in one folder are an error naming what was found; `--layout`
/// picks one (the other's files are then left alone or misnamed, as that layout says).
#[test]
fn a_folder_of_two_layouts_is_refused_with_what_it_holds() {
    let p = sqlite_project();
    let root = p.path();
    write(root, "0001_users.up.sql", "CREATE TABLE users (id INTEGER);");
    write(root, "V2__posts.sql", "CREATE TABLE posts (id INTEGER);");
    let run = p.run(&["up"]);
    assert_eq!(run.code, 2, "{}", run.all());
    assert!(
        run.stderr.contains("more than one layout")
            && run.stderr.contains("0001_users.up.sql")
            && run.stderr.contains("V2__posts.sql"),
        "{}",
        run.stderr
    );
    assert!(!p.db_path("acme").exists(), "nothing ran");
    let bad = p.run(&["up", "--layout", "liquibase"]);
    assert_eq!(bad.code, 2, "{}", bad.all());
    assert!(
        bad.stderr.contains("liquibase") && bad.stderr.contains("diesel"),
        "{}",
        bad.stderr
    );
    // `new` writes fleetmig's layout only.
    let q = sqlite_project();
    write(q.path(), "2016-01-07-082941_first/up.sql", "SELECT 1;");
    let new = q.run(&["new", "next"]);
    assert_eq!(new.code, 2, "{}", new.all());
    assert!(new.stderr.contains("diesel"), "{}", new.stderr);
}

/// Migrations that cannot run in a transaction (`CREATE INDEX CONCURRENTLY`) run on
/// PostgreSQL when diesel's `metadata.toml` or dbmate's `transaction:false` says so.
#[test]
fn no_transaction_markers_of_diesel_and_dbmate_hold_on_postgres() {
    let Some(pg) = support::Pg::create("layouts") else {
        return;
    };
    for (layout, files) in [
        (
            "diesel",
            vec![
                ("2020-01-01-000000_t/up.sql", "CREATE TABLE t (a int);"),
                ("2020-01-01-000000_t/down.sql", "DROP TABLE t;"),
                ("2020-01-02-000000_i/up.sql", "CREATE INDEX CONCURRENTLY t_a ON t (a);"),
                ("2020-01-02-000000_i/down.sql", "DROP INDEX CONCURRENTLY t_a;"),
                ("2020-01-02-000000_i/metadata.toml", "run_in_transaction = false"),
            ],
        ),
        (
            "dbmate",
            vec![
                (
                    "1_t.sql",
                    "-- migrate:up\nCREATE TABLE t (a int);\n-- migrate:down\nDROP TABLE t;\n",
                ),
                (
                    "2_i.sql",
                    "-- migrate:up transaction:false\nCREATE INDEX CONCURRENTLY t_a ON t (a);\n\
                     -- migrate:down transaction:false\nDROP INDEX CONCURRENTLY t_a;\n",
                ),
            ],
        ),
    ] {
        let p = Project::new();
        for (rel, text) in files {
            write(p.path(), rel, text);
        }
        p.fleet(&format!(
            "defaults: {{ url: \"{}\", schema: \"{layout}_{{id}}\" }}\ntenants:\n  - {{ id: acme }}\n",
            pg.url()
        ));
        let up = p.run(&["up"]);
        assert_eq!(up.code, 0, "{layout}: {}", up.all());
        let index =
            format!("SELECT indexname FROM pg_indexes WHERE schemaname = '{layout}_acme' AND indexname = 't_a'");
        assert_eq!(pg.column(&index), ["t_a"], "{layout}");
        let down = p.run(&["down", "--steps", "1"]);
        assert_eq!(down.code, 0, "{layout}: {}", down.all());
        assert!(pg.column(&index).is_empty(), "{layout}");
    }
}

/// `migrations:` in the fleet file names the folder (relative to the fleet file) and its
/// layout: one line adopts another tool's folder; `--migrations` still wins.
#[test]
fn the_fleet_file_names_the_migrations_folder_and_its_layout() {
    let p = Project::new();
    std::fs::create_dir_all(p.path().join("deploy/data")).unwrap();
    let db = p.path().join("db/diesel/2020-01-01-000000_users");
    std::fs::create_dir_all(&db).unwrap();
    std::fs::write(db.join("up.sql"), "CREATE TABLE users (id INTEGER);").unwrap();
    std::fs::write(db.join("down.sql"), "DROP TABLE users;").unwrap();
    let fleet = "migrations: { path: ../db/diesel, layout: diesel }\n\
                 defaults: { url: \"sqlite://data/{id}.db\" }\ntenants:\n  - { id: acme }\n";
    std::fs::write(p.path().join("deploy/tenants.yaml"), fleet).unwrap();
    let up = p.run(&["--fleet", "deploy/tenants.yaml", "up"]);
    assert_eq!(up.code, 0, "{}", up.all());
    assert_eq!(history(&p.path().join("deploy/data/acme.db")), ["20200101000000"]);
    let h = p.run(&["--fleet", "deploy/tenants.yaml", "history", "--format", "json"]);
    assert!(h.stdout.contains("\"layout\":\"diesel\""), "{}", h.all());
    // `--migrations` names another folder: the fleet file's is not read.
    let other = p.run(&[
        "--fleet",
        "deploy/tenants.yaml",
        "--migrations",
        "migrations",
        "history",
    ]);
    assert_eq!(other.code, 0, "{}", other.all());
    assert!(!other.stdout.contains("users"), "{}", other.all());

    for (entry, says) in [
        (
            "migrations: { path: ../db/diesel, layout: liquibase }",
            "migrations.layout",
        ),
        ("migrations: { path: ../db/diesel, kind: diesel }", "migrations"),
        ("migrations: \"\"", "migrations"),
    ] {
        std::fs::write(
            p.path().join("deploy/tenants.yaml"),
            format!("{entry}\ndefaults: {{ url: \"sqlite://data/{{id}}.db\" }}\ntenants:\n  - {{ id: acme }}\n"),
        )
        .unwrap();
        let bad = p.run(&["--fleet", "deploy/tenants.yaml", "status"]);
        assert_eq!(bad.code, 2, "{entry}: {}", bad.all());
        assert!(
            bad.stderr.contains("tenants.yaml") && bad.stderr.contains(says),
            "{entry}: {}",
            bad.stderr
        );
    }
}

/// Files to write under `migrations/`: path and bytes.
type Files = Vec<(String, Vec<u8>)>;

/// Bad bytes and bad markers in another tool's folder are refused naming the file (exit
/// 2, nothing run), never skipped.
#[test]
fn bad_files_in_other_layouts_are_refused_naming_the_file() {
    let long = format!("{}_long", "1".repeat(60));
    let cases: Vec<(&str, Files, &str)> = vec![
        (
            "diesel NUL byte",
            vec![(
                "2020-01-01-000000_a/up.sql".into(),
                b"CREATE TABLE a (id int);\0".to_vec(),
            )],
            "NUL byte",
        ),
        (
            "diesel not UTF-8",
            vec![(
                "2020-01-01-000000_a/up.sql".into(),
                b"CREATE TABLE \xff (id int);".to_vec(),
            )],
            "not UTF-8",
        ),
        (
            "diesel metadata",
            vec![
                ("2020-01-01-000000_a/up.sql".into(), b"SELECT 1;".to_vec()),
                (
                    "2020-01-01-000000_a/metadata.toml".into(),
                    b"run_in_transaction = \"no\"".to_vec(),
                ),
            ],
            "metadata.toml",
        ),
        (
            "diesel down without up",
            vec![
                ("2020-01-01-000000_a/up.sql".into(), b"SELECT 1;".to_vec()),
                ("2020-01-02-000000_b/down.sql".into(), b"SELECT 1;".to_vec()),
            ],
            "has no up.sql",
        ),
        (
            "diesel version too long",
            vec![(format!("{long}/up.sql"), b"SELECT 1;".to_vec())],
            "is not a migration version",
        ),
        (
            "dbmate section",
            vec![(
                "1_a.sql".into(),
                b"-- migrate:up\nSELECT 1;\n-- migrate:sideways\n".to_vec(),
            )],
            "migrate:sideways",
        ),
        (
            "dbmate no up",
            vec![("1_a.sql".into(), b"-- migrate:down\nSELECT 1;\n".to_vec())],
            "1_a.sql",
        ),
        (
            "flyway conf",
            vec![
                ("V1__a.sql".into(), b"SELECT 1;".to_vec()),
                ("V1__a.sql.conf".into(), b"executeInTransaction=maybe\n".to_vec()),
            ],
            "executeInTransaction is `maybe`",
        ),
        (
            "flyway duplicate",
            vec![
                ("V1_1__a.sql".into(), b"SELECT 1;".to_vec()),
                ("V1.1__b.sql".into(), b"SELECT 2;".to_vec()),
            ],
            "V1_1__a.sql",
        ),
        (
            "flyway blank",
            vec![("V1__a.sql".into(), b"-- nothing yet\n".to_vec())],
            "holds no SQL statement",
        ),
    ];
    for (what, files, says) in cases {
        let p = sqlite_project();
        for (rel, bytes) in files {
            let path = p.path().join("migrations").join(rel);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, bytes).unwrap();
        }
        let run = p.run(&["up"]);
        assert_eq!(run.code, 2, "{what}: {}", run.all());
        assert!(run.stderr.contains(says), "{what}: {}", run.stderr);
        assert!(!p.db_path("acme").exists(), "{what}: nothing ran");
    }
}

/// The diesel fixture's README and loose `schema.sql` are not migrations: plain `history`
/// counts them in one line, `--verbose` lists each path, JSON lists them always; none of
/// them is an error or applied.
#[test]
fn history_counts_ignored_entries_and_lists_them_with_verbose() {
    let p = Project::new();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/layouts/diesel");
    let dir = dir.to_str().unwrap();
    let plain = p.run(&["history", "--migrations", dir]);
    assert_eq!(plain.code, 0, "{}", plain.all());
    assert!(
        plain
            .stdout
            .contains("2 entries ignored (history --verbose lists them)"),
        "{}",
        plain.stdout
    );
    assert!(
        !plain.stdout.contains("README.md") && !plain.stdout.contains("schema.sql"),
        "plain history names no ignored entry: {}",
        plain.stdout
    );
    for flag in ["--verbose", "-v"] {
        let verbose = p.run(&["history", flag, "--migrations", dir]);
        assert_eq!(verbose.code, 0, "{}", verbose.all());
        let listed: Vec<&str> = verbose
            .stdout
            .lines()
            .skip_while(|l| *l != "Not migrations, left alone:")
            .skip(1)
            .collect();
        assert_eq!(
            listed,
            [format!("  {dir}/README.md"), format!("  {dir}/schema.sql")],
            "{}",
            verbose.stdout
        );
        assert!(!verbose.stdout.contains("entries ignored"), "{}", verbose.stdout);
    }
    let h = json(&p, &["history", "--migrations", dir, "--format", "json"]);
    assert_eq!(
        h["ignored"],
        serde_json::json!([format!("{dir}/README.md"), format!("{dir}/schema.sql")]),
        "{h}"
    );
    assert_eq!(h["migrations"].as_array().unwrap().len(), 5, "{h}");

    // fleetmig's own folder: nothing ignored, nothing said; a README is counted, then listed.
    p.migration("0001_t.up.sql", "CREATE TABLE t (id INTEGER);");
    let none = p.run(&["history"]);
    assert_eq!(none.code, 0, "{}", none.all());
    assert!(!none.stdout.contains("ignored"), "{}", none.stdout);
    p.migration("README.md", "notes");
    let one = p.run(&["history"]);
    assert!(
        one.stdout.contains("1 entry ignored (history --verbose lists it)"),
        "{}",
        one.stdout
    );
    let listed = p.run(&["history", "--verbose"]);
    assert!(
        listed
            .stdout
            .ends_with("Not migrations, left alone:\n  migrations/README.md\n"),
        "{}",
        listed.stdout
    );
}
