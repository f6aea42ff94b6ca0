//! A folder of migrations per engine (`migrations/postgres/`, `migrations/mysql/`,
//! `migrations/sqlite/`, or a map in the fleet file): each tenant uses its engine's set,
//! with its own versions and head, and one `up`, one `status` and one report cover the
//! whole mixed fleet.

use std::path::{Path, PathBuf};

use crate::support::{self, My, Pg, Project, sqlite_column, tenant_line};

fn fixture(layout: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/layouts")
        .join(layout)
}

fn write(p: &Project, file: &str, sql: &str) {
    let path = p.path().join("migrations").join(file);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, sql).unwrap();
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// Two engines' folders found in `migrations/`; a fleet of SQLite tenants uses `sqlite/`
/// alone, whatever `postgres/` holds.
#[test]
fn engine_folders_are_found_and_each_tenant_uses_its_engines() {
    let p = Project::new();
    write(&p, "sqlite/0001_a.up.sql", "CREATE TABLE a (id INTEGER PRIMARY KEY);\n");
    write(&p, "sqlite/0001_a.down.sql", "DROP TABLE a;\n");
    write(&p, "sqlite/0002_b.up.sql", "CREATE TABLE b (id INTEGER PRIMARY KEY);\n");
    write(&p, "sqlite/0002_b.down.sql", "DROP TABLE b;\n");
    // Would fail on SQLite, and has a head of its own.
    write(
        &p,
        "postgres/0001_a.up.sql",
        "CREATE TABLE a (id SERIAL PRIMARY KEY, doc JSONB);\n",
    );
    write(&p, "postgres/0009_z.up.sql", "CREATE EXTENSION IF NOT EXISTS citext;\n");
    write(&p, "README.md", "Per-engine migrations.\n");
    p.fleet("defaults: { url: \"sqlite://data/{id}.db\" }\ntenants:\n  - { id: acme }\n  - { id: globex }\n");
    std::fs::create_dir_all(p.path().join("data")).unwrap();

    let run = p.run(&["up"]);
    assert_eq!(run.code, 0, "{}", run.all());
    for id in ["acme", "globex"] {
        assert_eq!(
            sqlite_column(&p.db_path(id), "SELECT version FROM fleetmig_history ORDER BY 1"),
            ["1", "2"]
        );
    }
    let status = p.run(&["status", "--format", "json"]);
    assert_eq!(status.code, 0, "{}", status.all());
    let doc = json(&status.stdout);
    assert_eq!(doc["head"], "head", "{doc}");
    // The heads of the engines the fleet has.
    assert_eq!(doc["heads"], serde_json::json!({"sqlite": 2}), "{doc}");
    assert_eq!(doc["tenants"][0]["engine"], "sqlite", "{doc}");
    assert_eq!(doc["tenants"][0]["head"], 2, "{doc}");
    assert_eq!(doc["histograms"], serde_json::json!({"sqlite": {"2": 2}}), "{doc}");
    let text = p.run(&["status"]);
    assert!(
        text.stdout.contains("sqlite tenants by version (target 2, head 2)"),
        "{}",
        text.all()
    );
    assert!(
        tenant_line(&text.stdout, "acme").contains("2 (sqlite, head 2)"),
        "{}",
        text.all()
    );

    // `--to` must be a version of every engine's set; `head` and 0 always are.
    let bad = p.run(&["up", "--to", "9"]);
    assert_eq!(bad.code, 2, "{}", bad.all());
    assert!(
        bad.stderr.contains("sqlite (head 2) has no migration 9"),
        "{}",
        bad.all()
    );
    // The sets of the selected tenants' engines alone count: postgres's one-way
    // migration 1 does not stand in the way of SQLite tenants.
    let down = p.run(&["down", "--to", "0", "--yes"]);
    assert_eq!(down.code, 0, "{}", down.all());
    assert!(sqlite_column(&p.db_path("acme"), "SELECT version FROM fleetmig_history").is_empty());
    let again = p.run(&["up", "--to", "head"]);
    assert_eq!(again.code, 0, "{}", again.all());

    // `history` lists each engine's folder under its name.
    let history = p.run(&["history"]);
    assert_eq!(history.code, 0, "{}", history.all());
    let (pg_part, lite_part) = history
        .stdout
        .split_once("sqlite (")
        .unwrap_or_else(|| panic!("{}", history.all()));
    assert!(
        pg_part.starts_with("postgres (") && pg_part.contains("9") && pg_part.contains("z"),
        "{}",
        history.all()
    );
    assert!(
        lite_part.contains("b") && !lite_part.contains(" z "),
        "{}",
        history.all()
    );
    let doc = json(&p.run(&["history", "--format", "json"]).stdout);
    assert_eq!(
        doc["engines"]["sqlite"]["migrations"].as_array().unwrap().len(),
        2,
        "{doc}"
    );
    assert_eq!(doc["engines"]["postgres"]["migrations"][1]["version"], 9, "{doc}");

    // `new` works on one folder: it says so, and writes nothing.
    let new = p.run(&["new", "c"]);
    assert_eq!(new.code, 2, "{}", new.all());
    assert!(new.stderr.contains("has a folder per engine"), "{}", new.all());
    let sql = p.run(&["sql", "--engine", "sqlite"]);
    assert_eq!(sql.code, 0, "{}", sql.all());
    assert!(sql.stdout.contains("CREATE TABLE b"), "{}", sql.all());
    assert!(!sql.stdout.contains("JSONB"), "{}", sql.all());
}

/// A tenant whose engine has no folder stops the command before anything runs, naming it.
#[test]
fn a_tenant_whose_engine_has_no_folder_is_refused_before_anything_runs() {
    let p = Project::new();
    write(
        &p,
        "postgres/0001_a.up.sql",
        "CREATE TABLE a (id SERIAL PRIMARY KEY);\n",
    );
    write(
        &p,
        "mysql/0001_a.up.sql",
        "CREATE TABLE a (id INT AUTO_INCREMENT PRIMARY KEY);\n",
    );
    p.fleet("defaults: { url: \"sqlite://data/{id}.db\" }\ntenants:\n  - { id: acme }\n");
    std::fs::create_dir_all(p.path().join("data")).unwrap();
    for args in [&["up"][..], &["status"], &["plan"]] {
        let run = p.run(args);
        assert_eq!(run.code, 2, "{args:?}: {}", run.all());
        assert!(
            run.stderr.contains("tenant `acme` is a sqlite tenant, and the migrations have no sqlite folder (they have: postgres, mysql)"),
            "{args:?}: {}",
            run.all()
        );
    }
    assert!(!p.db_path("acme").exists(), "nothing ran");

    // Migrations beside engine folders: for whom? Refused, naming them.
    write(&p, "0002_b.up.sql", "SELECT 1;\n");
    let run = p.run(&["status"]);
    assert_eq!(run.code, 2, "{}", run.all());
    assert!(
        run.stderr.contains("migrations beside them (0002_b.up.sql)"),
        "{}",
        run.all()
    );
}

/// `migrations:` in the fleet file as a map of engine to folder, each with its layout;
/// a malformed map names the key.
#[test]
fn the_fleet_file_maps_each_engine_to_its_folder() {
    let p = Project::new();
    std::fs::create_dir_all(p.path().join("data")).unwrap();
    let fleet = |migrations: &str| {
        format!(
            "migrations: {migrations}\ndefaults: {{ url: \"sqlite://data/{{id}}.db\" }}\ntenants:\n  - {{ id: acme }}\n"
        )
    };
    p.fleet(&fleet(&format!(
        "{{ sqlite: {{ path: \"{}\", layout: flyway }}, postgres: \"{}\" }}",
        fixture("flyway").display(),
        fixture("diesel").display()
    )));
    let run = p.run(&["up"]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert_eq!(
        sqlite_column(
            &p.db_path("acme"),
            "SELECT version FROM fleetmig_history ORDER BY version"
        ),
        ["1", "1.1", "1.10", "1.2"]
    );
    let doc = json(&p.run(&["status", "--format", "json"]).stdout);
    assert_eq!(doc["heads"], serde_json::json!({"sqlite": "1.10"}), "{doc}");
    assert_eq!(doc["counts"], serde_json::json!({"current": 1}), "{doc}");

    for (bad, says) in [
        ("{ path: migrations, sqlite: migrations }", "not both"),
        ("{ out_of_order: true }", "a folder per engine with `postgres:`"),
        ("{ sqlite: \"\" }", "migrations.sqlite"),
        ("{ sqlite: { path: x, layout: nope } }", "migrations.sqlite.layout"),
        ("{ oracle: x }", "migrations"),
    ] {
        p.fleet(&fleet(bad));
        let run = p.run(&["status"]);
        assert_eq!(run.code, 2, "{bad}: {}", run.all());
        assert!(run.stderr.contains(says), "{bad}: {}", run.all());
    }
}

/// The mixed fleet of the issue: PostgreSQL schema and database tenants on diesel's set,
/// MariaDB on Flyway's, SQLite on sqlx's one-way files. One `up`, one `status`, one report.
#[test]
fn a_mixed_fleet_runs_in_one_up_one_status_and_one_report() {
    let Some(pg) = Pg::create("mixed") else { return };
    let Some(my) = My::create("mixed") else { return };
    let _db_tenant = Pg {
        name: format!("{}_dbt", pg.name),
    };
    let p = Project::new();
    std::fs::create_dir_all(p.path().join("data")).unwrap();
    p.fleet(&format!(
        "migrations:\n  postgres: {{ path: \"{}\", layout: diesel }}\n  mysql: \"{}\"\n  sqlite: \"{}\"\n\
         hosts:\n  pg: {{ url: \"{}\" }}\n\
         tenants:\n\
         \x20 - {{ id: schema1, host: pg, schema: mixed_schema1 }}\n\
         \x20 - {{ id: dbt, host: pg, database: \"{}_dbt\", create_database: true }}\n\
         \x20 - {{ id: maria, url: \"{}\", database: \"{}_maria\" }}\n\
         \x20 - {{ id: lite, url: \"sqlite://data/lite.db\" }}\n",
        fixture("diesel").display(),
        fixture("flyway").display(),
        fixture("sqlx-simple").display(),
        pg.url(),
        pg.name,
        support::MYSQL_ADMIN,
        my.prefix,
    ));
    let run = p.run(&["up", "--report", "run.json"]);
    assert_eq!(run.code, 0, "{}", run.all());
    let report = json(&std::fs::read_to_string(p.path().join("run.json")).unwrap());
    let finals: Vec<(String, serde_json::Value)> = report["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["id"].as_str().unwrap().to_owned(), t["final_version"].clone()))
        .collect();
    assert_eq!(
        finals,
        [
            ("schema1".to_owned(), serde_json::json!("20210304050607")),
            ("dbt".to_owned(), serde_json::json!("20210304050607")),
            ("maria".to_owned(), serde_json::json!("1.10")),
            ("lite".to_owned(), serde_json::json!(20220102000000i64)),
        ],
        "{report}"
    );

    let status = p.run(&["status", "--format", "json"]);
    assert_eq!(status.code, 0, "{}", status.all());
    let doc = json(&status.stdout);
    assert_eq!(doc["counts"], serde_json::json!({"current": 4}), "{doc}");
    assert_eq!(
        doc["heads"],
        serde_json::json!({"postgres": "20210304050607", "mysql": "1.10", "sqlite": 20220102000000i64}),
        "{doc}"
    );
    let engines: Vec<&str> = doc["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["engine"].as_str().unwrap())
        .collect();
    assert_eq!(engines, ["postgres", "postgres", "mysql", "sqlite"], "{doc}");

    // The real schemas are each engine's own set's.
    assert!(
        pg.column(
            "SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'mixed_schema1' ORDER BY 1"
        )
        .contains(&"notes".to_owned())
    );
    assert_eq!(
        my.column(&format!(
            "SELECT CAST(version AS CHAR) FROM `{}_maria`.fleetmig_history ORDER BY version",
            my.prefix
        )),
        ["1", "1.1", "1.10", "1.2"]
    );
    assert_eq!(
        sqlite_column(&p.db_path("lite"), "SELECT version FROM fleetmig_history ORDER BY 1").len(),
        2
    );

    // A no-op over the whole fleet, and `down` where each set can go.
    let noop = p.run(&["up"]);
    assert!(noop.stdout.contains("Nothing to do"), "{}", noop.all());
    // diesel's first migration and sqlx's files are one-way: a down to 0 over the whole
    // fleet is refused before anything runs, naming it; MariaDB's set goes down alone,
    // and the PostgreSQL tenants to a version only their set has.
    let refused = p.run(&["down", "--to", "0", "--yes"]);
    assert_eq!(refused.code, 2, "{}", refused.all());
    assert!(
        refused
            .stderr
            .contains("migration 00000000000000 has an empty down script"),
        "{}",
        refused.all()
    );
    let down = p.run(&["down", "--to", "1.1", "--select", "id=maria"]);
    assert_eq!(down.code, 0, "{}", down.all());
    let down = p.run(&["down", "--to", "20170101", "--select", "id=schema1"]);
    assert_eq!(down.code, 0, "{}", down.all());
    let doc = json(&p.run(&["status", "--format", "json"]).stdout);
    assert_eq!(doc["counts"], serde_json::json!({"behind": 2, "current": 2}), "{doc}");
    assert_eq!(doc["histograms"]["mysql"], serde_json::json!({"1.1": 1}), "{doc}");
    assert_eq!(
        doc["histograms"]["postgres"],
        serde_json::json!({"20170101": 1, "20210304050607": 1}),
        "{doc}"
    );
}
