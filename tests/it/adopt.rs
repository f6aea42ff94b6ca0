//! `fleetmig adopt --from TOOL`: tenants another tool migrated, taken over by recording
//! exactly what its history table says, with the files' checksums, without running SQL;
//! failed, dirty or unknown histories refused by name; `--dry-run` writes nothing.

use serde_json::Value;

use crate::support::{self, Project, sqlite_column, sqlite_exec};

const SQLX_TABLE: &str = "CREATE TABLE _sqlx_migrations (version BIGINT PRIMARY KEY, description TEXT NOT NULL, \
     installed_on TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP, success BOOLEAN NOT NULL, checksum BLOB NOT NULL, \
     execution_time BIGINT NOT NULL);";

fn sqlx_row(v: i64, success: bool) -> String {
    format!(
        "INSERT INTO _sqlx_migrations VALUES ({v}, 'm{v}', CURRENT_TIMESTAMP, {}, x'00', 1);",
        i64::from(success)
    )
}

fn three(p: &Project) {
    for i in 1..=3 {
        p.migration(
            &format!("000{i}_t{i}.up.sql"),
            &format!("CREATE TABLE t{i} (id INTEGER);"),
        );
        p.migration(&format!("000{i}_t{i}.down.sql"), &format!("DROP TABLE t{i};"));
    }
}

#[test]
fn sqlite_tenants_migrated_by_sqlx_are_adopted_and_bad_histories_refused_by_name() {
    let p = Project::new();
    three(&p);
    p.fleet(
        "defaults: { url: \"sqlite://data/{id}.db\" }\ntenants:\n  - { id: acme }\n  - { id: globex }\n  \
         - { id: initech }\n  - { id: hooli }\n",
    );
    std::fs::create_dir_all(p.path().join("data")).unwrap();
    let db = |id: &str| p.db_path(id);
    // acme: sqlx applied 1 and 2; globex: 2 failed; initech: no sqlx table; hooli: a version no file has.
    sqlite_exec(
        &db("acme"),
        &format!(
            "{SQLX_TABLE}{}{}CREATE TABLE t1 (id INTEGER); CREATE TABLE t2 (id INTEGER);",
            sqlx_row(1, true),
            sqlx_row(2, true)
        ),
    );
    sqlite_exec(
        &db("globex"),
        &format!("{SQLX_TABLE}{}{}", sqlx_row(1, true), sqlx_row(2, false)),
    );
    sqlite_exec(&db("initech"), "CREATE TABLE other (id INTEGER);");
    sqlite_exec(
        &db("hooli"),
        &format!("{SQLX_TABLE}{}{}", sqlx_row(1, true), sqlx_row(9, true)),
    );
    let has_history = |id: &str| {
        !sqlite_column(
            &db(id),
            "SELECT name FROM sqlite_master WHERE name = 'fleetmig_history'",
        )
        .is_empty()
    };

    let dry = p.run(&["adopt", "--from", "sqlx", "--dry-run", "--format", "json"]);
    assert_eq!(dry.code, 1, "{}", dry.all());
    let plan: Value = serde_json::from_str(&dry.stdout).unwrap();
    let t = &plan["tenants"];
    assert_eq!(t[0]["record"], serde_json::json!([1, 2]), "{plan}");
    assert!(
        t[1]["refused"].as_str().unwrap().contains("version 2 is marked failed"),
        "{plan}"
    );
    assert!(
        t[2]["refused"]
            .as_str()
            .unwrap()
            .contains("`_sqlx_migrations`: no such table"),
        "{plan}"
    );
    assert!(
        t[3]["refused"].as_str().unwrap().contains("no migration file has: 9"),
        "{plan}"
    );
    assert!(
        ["acme", "globex", "initech", "hooli"].iter().all(|id| !has_history(id)),
        "--dry-run wrote nothing"
    );

    let run = p.run(&["adopt", "--from", "sqlx"]);
    assert_eq!(run.code, 1, "{}", run.all());
    assert!(run.all().contains("version 2 is marked failed"), "{}", run.all());
    let sets = fleetmig::api::load_migrations(p.path().join("migrations")).unwrap();
    let set = sets.single().unwrap();
    let expected: Vec<String> = set
        .iter()
        .take(2)
        .map(|m| format!("{} {}", m.version, m.checksum.to_hex()))
        .collect();
    assert_eq!(
        sqlite_column(
            &db("acme"),
            "SELECT version || ' ' || checksum FROM fleetmig_history ORDER BY version"
        ),
        expected
    );
    for id in ["globex", "hooli"] {
        let rows = sqlite_column(&db(id), "SELECT CAST(count(*) AS TEXT) FROM fleetmig_history");
        assert_eq!(rows, ["0"], "{id}: a refused tenant records nothing");
    }
    // The next migration runs once, on acme alone; adopting again changes nothing.
    let up = p.run(&["up", "--select", "id=acme"]);
    assert_eq!(up.code, 0, "{}", up.all());
    assert_eq!(
        sqlite_column(&db("acme"), "SELECT version FROM fleetmig_history ORDER BY version"),
        ["1", "2", "3"]
    );
    let again = p.run(&["adopt", "--from", "sqlx", "--select", "id=acme"]);
    assert_eq!(again.code, 1, "{}", again.all());
    assert!(
        again.all().contains("already records other migrations"),
        "{}",
        again.all()
    );
}

#[test]
fn postgres_schema_tenants_migrated_by_diesel_are_adopted_and_current() {
    let Some(pg) = support::Pg::create("adopt") else {
        return;
    };
    let p = Project::new();
    let dir = p.path().join("migrations");
    for (folder, sql) in [
        ("00000000000000_diesel_initial_setup", "CREATE TABLE setup (id int);"),
        ("2020-01-01-000000_users", "CREATE TABLE users (id int);"),
    ] {
        std::fs::create_dir_all(dir.join(folder)).unwrap();
        std::fs::write(dir.join(folder).join("up.sql"), sql).unwrap();
    }
    // `public` is on the search path and holds a diesel table of its own: not the tenants'.
    p.fleet(&format!(
        "defaults: {{ url: \"{}\", schema: \"d_{{id}}\", search_path: \"{{schema}}, public\" }}\n\
         tenants:\n  - {{ id: acme }}\n  - {{ id: globex }}\n",
        pg.url()
    ));
    pg.exec(
        "CREATE TABLE public.__diesel_schema_migrations (version VARCHAR(50) PRIMARY KEY); \
         INSERT INTO public.__diesel_schema_migrations VALUES ('00000000000000');",
    );
    for id in ["acme", "globex"] {
        pg.exec(&format!(
            "CREATE SCHEMA d_{id}; CREATE TABLE d_{id}.setup (id int); CREATE TABLE d_{id}.users (id int); \
             CREATE TABLE d_{id}.__diesel_schema_migrations (version VARCHAR(50) PRIMARY KEY, \
             run_on TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP); \
             INSERT INTO d_{id}.__diesel_schema_migrations (version) VALUES ('00000000000000'), ('20200101000000');"
        ));
    }
    let run = p.run(&["adopt", "--from", "diesel"]);
    assert_eq!(run.code, 0, "{}", run.all());
    // A tenant whose schema has no diesel table is not adopted from `public`'s.
    let more = format!(
        "defaults: {{ url: \"{}\", schema: \"d_{{id}}\", search_path: \"{{schema}}, public\" }}\n\
         tenants:\n  - {{ id: acme }}\n  - {{ id: globex }}\n  - {{ id: initech }}\n",
        pg.url()
    );
    std::fs::write(p.path().join("tenants.yaml"), &more).unwrap();
    pg.exec("CREATE SCHEMA d_initech;");
    let refused = p.run(&["adopt", "--from", "diesel", "--select", "id=initech"]);
    assert_eq!(refused.code, 1, "{}", refused.all());
    assert!(refused.all().contains("no such table here"), "{}", refused.all());
    std::fs::write(p.path().join("tenants.yaml"), more.replace("  - { id: initech }\n", "")).unwrap();
    let status = p.run(&["status", "--format", "json"]);
    assert_eq!(status.code, 0, "{}", status.all());
    let s: Value = serde_json::from_str(&status.stdout).unwrap();
    assert_eq!(s["counts"]["current"], 2, "{s}");
    let up = p.run(&["up"]);
    assert_eq!(up.code, 0, "{}", up.all());
    assert!(up.all().contains("Nothing to do"), "{}", up.all());
    // diesel's own table is left as it was.
    assert_eq!(
        pg.column("SELECT count(*)::text FROM d_acme.__diesel_schema_migrations"),
        ["2"]
    );
}

#[test]
fn mariadb_tenants_migrated_by_golang_migrate_take_every_version_up_to_its_one_row() {
    let Some(my) = support::My::create("adopt") else {
        return;
    };
    let p = Project::new();
    three(&p);
    p.fleet(&format!(
        "defaults: {{ url: \"{}\", database: \"{}_{{id}}\" }}\ntenants:\n  - {{ id: acme }}\n  - {{ id: globex }}\n",
        support::MYSQL_ADMIN,
        my.prefix
    ));
    for (id, dirty) in [("acme", 0), ("globex", 1)] {
        let db = format!("`{}_{id}`", my.prefix);
        my.exec(&format!(
            "CREATE DATABASE {db}; CREATE TABLE {db}.t1 (id int); CREATE TABLE {db}.t2 (id int); \
             CREATE TABLE {db}.schema_migrations (version BIGINT NOT NULL PRIMARY KEY, dirty BOOLEAN NOT NULL); \
             INSERT INTO {db}.schema_migrations VALUES (2, {dirty});"
        ));
    }
    let run = p.run(&["adopt", "--from", "golang-migrate"]);
    assert_eq!(run.code, 1, "{}", run.all());
    assert!(run.all().contains("version 2 is marked dirty"), "{}", run.all());
    let history = |id: &str| {
        my.column(&format!(
            "SELECT version FROM `{}_{id}`.fleetmig_history ORDER BY CAST(version AS UNSIGNED)",
            my.prefix
        ))
    };
    assert_eq!(history("acme"), ["1", "2"]);
    let up = p.run(&["up", "--select", "id=acme"]);
    assert_eq!(up.code, 0, "{}", up.all());
    assert_eq!(history("acme"), ["1", "2", "3"]);
}
