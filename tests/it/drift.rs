//! `fleetmig drift`: every tenant's real catalog held to the one its version should have
//! (the scratch target's, `--reference`'s, or, with neither, the majority's, said so), on a
//! 300-tenant PostgreSQL schema fleet, a MariaDB fleet and a SQLite fleet, each with
//! tenants edited by hand; and `status --drift`.

use std::path::Path;

use crate::support::{MYSQL_ADMIN, My, Pg, Project, sqlite_exec};

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// Each outlier group of the report: (its tenants, its changes as the text shows them).
fn outliers(doc: &serde_json::Value) -> Vec<(Vec<String>, Vec<String>)> {
    let strings = |v: &serde_json::Value| -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap().to_owned())
            .collect()
    };
    let mut out: Vec<(Vec<String>, Vec<String>)> = doc["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["outliers"].as_array().unwrap().iter())
        .map(|o| (strings(&o["tenants"]), strings(&o["changes"])))
        .collect();
    out.sort();
    out
}

fn names(ids: &[&str]) -> Vec<String> {
    ids.iter().map(|s| (*s).to_owned()).collect()
}

/// 300 schema-tenants (and one whose id holds a dot, in a schema that must be quoted)
/// brought to head by `up`; three edited by hand. `drift` names exactly those three with
/// their diffs, in text and JSON, and exits 1; before the edits it exits 0. The scratch
/// reference comes from the fleet file's `scratch:`.
#[test]
fn postgres_300_schema_tenants_three_edited_are_named_with_their_diffs() {
    let Some(pg) = Pg::create("drift") else { return };
    let p = Project::new();
    let set = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/drift/postgres");
    let mut yaml = format!(
        "hosts:\n  main: {{ url: \"{}\", max_connections: 4 }}\nscratch: main\nmigrations: \"{}\"\n\
         defaults: {{ host: main, schema: \"t_{{id}}\" }}\ntenants:\n  - {{ id: acme.eu, schema: \"Acme-EU\" }}\n",
        pg.url(),
        set.display()
    );
    for i in 0..300 {
        yaml.push_str(&format!("  - {{ id: t{i:03} }}\n"));
    }
    p.fleet(&yaml);
    let run = p.run(&["up", "--concurrency", "8"]);
    assert_eq!(run.code, 0, "{}", run.all());
    // A tenant added since: no schema, no history, listed and not compared.
    p.fleet(&format!("{yaml}  - {{ id: late }}\n"));

    let run = p.run(&["drift"]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert!(
        run.stdout
            .contains("postgres at 2: 301 tenant(s), reference: scratch ("),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("  301 match\n"), "{}", run.stdout);
    assert!(
        run.stdout
            .contains("  late: no history (version 0): nothing to compare\n"),
        "{}",
        run.stdout
    );

    pg.exec(
        "CREATE INDEX users_email_idx ON t_t007.users (email);\n\
         ALTER TABLE t_t123.users ALTER COLUMN email TYPE varchar(200);\n\
         ALTER TABLE t_t250.users DROP CONSTRAINT users_email_key;\n",
    );
    let run = p.run(&["drift", "--format", "json"]);
    assert_eq!(run.code, 1, "{}", run.all());
    let doc = json(&run.stdout);
    assert_eq!(doc["outcome"], "drift", "{doc}");
    assert_eq!(doc["groups"][0]["reference"]["kind"], "scratch", "{doc}");
    assert_eq!(doc["groups"][0]["matching"], 298, "{doc}");
    assert_eq!(
        outliers(&doc),
        [
            (names(&["t007"]), names(&["extra index users_email_idx"])),
            (
                names(&["t123"]),
                names(&["column users.email: type character varying(200), expected text"])
            ),
            (
                names(&["t250"]),
                names(&[
                    "missing constraint users.users_email_key",
                    "missing index users_email_key"
                ])
            ),
        ]
    );
    assert_eq!(
        doc["unchecked"],
        serde_json::json!([{"tenant": "late", "reason": "no-history"}])
    );

    let run = p.run(&["drift"]);
    assert_eq!(run.code, 1, "{}", run.all());
    for line in [
        "  298 match\n",
        "  1 tenant(s): extra index users_email_idx\n    t007\n",
        "  1 tenant(s): missing constraint users.users_email_key; missing index users_email_key\n    t250\n",
        "drift: DRIFT: 3 of 301 compared tenant(s) differ from their version's reference, 1 not compared\n",
    ] {
        assert!(run.stdout.contains(line), "{line:?} in:\n{}", run.stdout);
    }

    // The edited tenant's catalog as the truth: every other tenant differs from it.
    let run = p.run(&["drift", "--reference", "t007", "--format", "json"]);
    assert_eq!(run.code, 1, "{}", run.all());
    let doc = json(&run.stdout);
    assert_eq!(doc["groups"][0]["reference"]["kind"], "tenant", "{doc}");
    assert_eq!(doc["groups"][0]["matching"], 1, "{doc}");
    let big = &doc["groups"][0]["outliers"][0];
    assert_eq!(big["tenants"].as_array().unwrap().len(), 298, "{doc}");
    assert_eq!(big["changes"], serde_json::json!(["missing index users_email_idx"]));

    // A selection narrows it; a clean selection exits 0.
    let run = p.run(&["drift", "--select", "id=t00*", "--reference", "t001"]);
    assert_eq!(run.code, 1, "{}", run.all());
    assert!(
        run.stdout.contains("reference: tenant t001 (--reference)"),
        "{}",
        run.stdout
    );
    let run = p.run(&["drift", "--select", "id=t01*"]);
    assert_eq!(run.code, 0, "{}", run.all());

    let run = p.run(&["status", "--drift", "--format", "json"]);
    assert_eq!(run.code, 1, "{}", run.all());
    let doc = json(&run.stdout);
    assert_eq!(doc["counts"]["schema_drift"], 3, "{doc}");
    assert_eq!(doc["counts"]["current"], 298, "{doc}");
    assert_eq!(doc["counts"]["behind"], 1, "{doc}");
    let run = p.run(&["status", "--drift", "--lagging"]);
    assert_eq!(run.code, 1, "{}", run.all());
    assert!(run.stdout.contains("schema_drift"), "{}", run.stdout);
    assert!(run.stdout.contains("3 schema_drift"), "{}", run.stdout);
    let run = p.run(&["status", "--format", "json"]);
    assert_eq!(run.code, 1, "`late` is behind: {}", run.all());
    let doc = json(&run.stdout);
    assert!(
        doc["counts"].get("schema_drift").is_none(),
        "plain status reads no catalog: {doc}"
    );
    assert_eq!(doc["counts"]["current"], 301, "{doc}");
}

/// A MariaDB fleet: one tenant's column changed by hand is named; the scratch database is
/// made on --scratch.
#[test]
fn mariadb_an_edited_tenant_is_named() {
    let Some(my) = My::create("drift") else { return };
    let p = Project::new();
    p.fleet(&format!(
        "defaults: {{ url: \"{MYSQL_ADMIN}\", database: \"{}_{{id}}\" }}\ntenants:\n  - {{ id: acme }}\n  - {{ id: globex }}\n  - {{ id: initech }}\n",
        my.prefix
    ));
    p.migration(
        "0001_users.up.sql",
        "CREATE TABLE users (id BIGINT PRIMARY KEY, email VARCHAR(100) NOT NULL);\n",
    );
    p.migration("0001_users.down.sql", "DROP TABLE users;\n");
    let run = p.run(&["up"]);
    assert_eq!(run.code, 0, "{}", run.all());
    let run = p.run(&["drift", "--scratch", MYSQL_ADMIN]);
    assert_eq!(run.code, 0, "{}", run.all());
    my.exec(&format!(
        "ALTER TABLE `{}_globex`.users MODIFY email VARCHAR(200) NOT NULL",
        my.prefix
    ));
    let run = p.run(&["drift", "--scratch", MYSQL_ADMIN, "--format", "json"]);
    assert_eq!(run.code, 1, "{}", run.all());
    let doc = json(&run.stdout);
    assert_eq!(
        outliers(&doc),
        [(
            names(&["globex"]),
            names(&["column users.email: type varchar(200), expected varchar(100)"])
        )]
    );
    // No scratch server: the majority, said to be a guess.
    let run = p.run(&["drift"]);
    assert_eq!(run.code, 1, "{}", run.all());
    assert!(
        run.stdout.contains("reference: majority, 2 of 3 (no scratch server"),
        "{}",
        run.stdout
    );
}

/// A SQLite fleet on the demo set: a tenant with a table added by hand is named, a tenant
/// never migrated is listed as such and not as drift, and a clean fleet exits 0.
#[test]
fn sqlite_an_edited_tenant_is_named_and_a_new_one_is_not_drift() {
    let p = Project::new();
    let demo = Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
    p.fleet(&format!(
        "migrations: \"{}\"\ndefaults: {{ url: \"sqlite://data/{{id}}.db\" }}\ntenants:\n  - {{ id: acme }}\n  - {{ id: globex }}\n  - {{ id: initech }}\n",
        demo.display()
    ));
    let run = p.run(&["up", "--select", "id=acme", "--select", "id=globex"]);
    assert_eq!(run.code, 0, "{}", run.all());
    let run = p.run(&["drift", "--select", "id=acme", "--select", "id=globex"]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert!(
        run.stdout.contains("reference: scratch (temporary file)"),
        "{}",
        run.stdout
    );
    sqlite_exec(&p.db_path("globex"), "CREATE TABLE notes (id INTEGER PRIMARY KEY)");
    let run = p.run(&["up", "--to", "3", "--select", "id=initech"]);
    assert_eq!(run.code, 0, "{}", run.all());
    let run = p.run(&["drift", "--format", "json"]);
    assert_eq!(run.code, 1, "{}", run.all());
    let doc = json(&run.stdout);
    let notes = ["extra table notes", "extra column notes.id"];
    assert_eq!(outliers(&doc), [(names(&["globex"]), names(&notes))], "{doc}");
    assert_eq!(
        doc["groups"].as_array().unwrap().len(),
        2,
        "acme and globex at 7, initech at 3: {doc}"
    );
}

/// A tenant with no history is listed, not compared, and is not drift.
#[test]
fn sqlite_a_tenant_at_version_0_is_reported_as_such() {
    let p = Project::new();
    p.fleet("defaults: { url: \"sqlite://data/{id}.db\" }\ntenants:\n  - { id: acme }\n  - { id: fresh }\n");
    p.migration("0001_a.up.sql", "CREATE TABLE a (id INTEGER PRIMARY KEY);\n");
    let run = p.run(&["up", "--select", "id=acme"]);
    assert_eq!(run.code, 0, "{}", run.all());
    std::fs::create_dir_all(p.path().join("data")).unwrap();
    sqlite_exec(&p.db_path("fresh"), "CREATE TABLE hand_made (id INTEGER)");
    let run = p.run(&["drift"]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert!(
        run.stdout
            .contains("  fresh: no history (version 0): nothing to compare\n"),
        "{}",
        run.stdout
    );
}

/// With `history_compat: sqlx`, the `_sqlx_migrations` table fleetmig keeps in step is
/// bookkeeping, not drift: the scratch target has none.
#[test]
fn sqlite_another_tools_history_table_is_not_drift() {
    let p = Project::new();
    p.fleet(
        "defaults: { url: \"sqlite://data/{id}.db\", history_compat: sqlx }\ntenants:\n  - { id: acme }\n  - { id: globex }\n",
    );
    p.migration("0001_a.up.sql", "CREATE TABLE a (id INTEGER PRIMARY KEY);\n");
    p.migration("0001_a.down.sql", "DROP TABLE a;\n");
    let run = p.run(&["up"]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert_eq!(
        crate::support::sqlite_column(
            &p.db_path("acme"),
            "SELECT CAST(count(*) AS TEXT) FROM _sqlx_migrations"
        ),
        ["1"]
    );
    let run = p.run(&["drift"]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert!(run.stdout.contains("  2 match\n"), "{}", run.stdout);
}
