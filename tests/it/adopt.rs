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

/// `alembic_version` as Alembic creates it, and its one row per head.
const ALEMBIC_TABLE: &str = "CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL, \
     CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num));";

fn alembic_rows(revisions: &[&str]) -> String {
    revisions
        .iter()
        .map(|r| format!("INSERT INTO alembic_version (version_num) VALUES ('{r}');"))
        .collect()
}

/// The map of the three revisions of [`three`], and one whose version no file has.
fn alembic_map(p: &Project) {
    std::fs::write(
        p.path().join("revisions.yaml"),
        "# alembic revision: fleetmig version\n1975ea83b712: 1\nae1027a6acf0: 2\n27c6a30d7c24: 3\nd0d0d0d0d0d0: 9\n",
    )
    .unwrap();
}

fn refusal_of<'a>(plan: &'a Value, id: &str) -> &'a str {
    let t = plan["tenants"].as_array().unwrap().iter().find(|t| t["id"] == id);
    t.and_then(|t| t["refused"].as_str())
        .unwrap_or_else(|| panic!("{id} is not refused: {plan}"))
}

/// Alembic keeps only its head revision: the map gives its version, and every migration up
/// to it is recorded. An empty `alembic_version` is nothing applied. Two heads, a revision
/// the map lacks and a version no file has are refused by name; `--map` is checked first.
#[test]
fn sqlite_tenants_migrated_by_alembic_are_adopted_through_the_revision_map() {
    let p = Project::new();
    three(&p);
    alembic_map(&p);
    p.fleet(
        "defaults: { url: \"sqlite://data/{id}.db\" }\ntenants:\n  - { id: acme }\n  - { id: globex }\n  \
         - { id: initech }\n  - { id: hooli }\n  - { id: umbrella }\n  - { id: vandelay }\n",
    );
    std::fs::create_dir_all(p.path().join("data")).unwrap();
    let db = |id: &str| p.db_path(id);
    let tables = "CREATE TABLE t1 (id INTEGER); CREATE TABLE t2 (id INTEGER); CREATE TABLE t3 (id INTEGER);";
    for (id, heads, sql) in [
        ("acme", &["27c6a30d7c24"][..], tables),
        ("globex", &["1975ea83b712"], "CREATE TABLE t1 (id INTEGER);"),
        ("initech", &[], ""),
        ("hooli", &["ae1027a6acf0", "1975ea83b712"], ""),
        ("umbrella", &["3f2e1d0c9b8a"], ""),
        ("vandelay", &["d0d0d0d0d0d0"], ""),
    ] {
        sqlite_exec(&db(id), &format!("{ALEMBIC_TABLE}{}{sql}", alembic_rows(heads)));
    }

    let dry = p.run(&[
        "adopt",
        "--from",
        "alembic",
        "--map",
        "revisions.yaml",
        "--dry-run",
        "--format",
        "json",
    ]);
    assert_eq!(dry.code, 1, "{}", dry.all());
    let plan: Value = serde_json::from_str(&dry.stdout).unwrap();
    assert_eq!(plan["from"], "alembic", "{plan}");
    assert_eq!(plan["tenants"][0]["record"], serde_json::json!([1, 2, 3]), "{plan}");
    assert_eq!(plan["tenants"][1]["record"], serde_json::json!([1]), "{plan}");
    assert_eq!(plan["tenants"][2]["record"], serde_json::json!([]), "{plan}");
    assert_eq!(plan["tenants"][2]["at"], 0, "{plan}");
    for (id, says) in [
        (
            "hooli",
            "alembic's `alembic_version`: 2 heads (1975ea83b712, ae1027a6acf0)",
        ),
        ("umbrella", "revision 3f2e1d0c9b8a is not in the map `revisions.yaml`"),
        (
            "vandelay",
            "revision d0d0d0d0d0d0 maps to version 9 in `revisions.yaml`, which no migration file has",
        ),
    ] {
        assert!(refusal_of(&plan, id).contains(says), "{id}: {plan}");
    }
    let written = "SELECT name FROM sqlite_master WHERE name = 'fleetmig_history'";
    assert!(
        sqlite_column(&db("acme"), written).is_empty(),
        "--dry-run wrote nothing"
    );

    let run = p.run(&["adopt", "--from", "alembic", "--map", "revisions.yaml"]);
    assert_eq!(run.code, 1, "{}", run.all());
    for says in [
        "2 heads (1975ea83b712, ae1027a6acf0)",
        "revision 3f2e1d0c9b8a is not in the map",
    ] {
        assert!(run.all().contains(says), "{}", run.all());
    }
    let recorded = |id: &str| sqlite_column(&db(id), "SELECT version FROM fleetmig_history ORDER BY version");
    assert_eq!(recorded("acme"), ["1", "2", "3"]);
    assert_eq!(recorded("globex"), ["1"]);
    for id in ["initech", "hooli", "umbrella", "vandelay"] {
        assert!(recorded(id).is_empty(), "{id} records nothing");
    }
    // Alembic's own table is left as it was.
    assert_eq!(
        sqlite_column(&db("acme"), "SELECT version_num FROM alembic_version"),
        ["27c6a30d7c24"]
    );

    let status = p.run(&["status", "--select", "id=acme", "--format", "json"]);
    assert_eq!(status.code, 0, "{}", status.all());
    let s: Value = serde_json::from_str(&status.stdout).unwrap();
    assert_eq!(s["tenants"][0]["state"], "current", "{s}");
    let up = p.run(&["up", "--select", "id=acme"]);
    assert_eq!(up.code, 0, "{}", up.all());
    assert!(up.all().contains("Nothing to do"), "{}", up.all());
    // globex runs only what Alembic had not applied.
    let up = p.run(&["up", "--select", "id=globex"]);
    assert_eq!(up.code, 0, "{}", up.all());
    assert_eq!(recorded("globex"), ["1", "2", "3"]);
}

#[test]
fn adopt_map_is_required_by_alembic_only_and_a_bad_map_is_named_with_its_line() {
    let p = Project::new();
    three(&p);
    p.fleet("defaults: { url: \"sqlite://data/{id}.db\" }\ntenants:\n  - { id: acme }\n");
    std::fs::create_dir_all(p.path().join("data")).unwrap();
    std::fs::write(p.path().join("bad.yaml"), "1975ea83b712: 1\nae1027a6acf0: [2]\n").unwrap();
    std::fs::write(p.path().join("twice.yaml"), "1975ea83b712: 1\n1975ea83b712: 2\n").unwrap();
    std::fs::write(p.path().join("dotted.yaml"), "1975ea83b712: 1.2\n").unwrap();
    alembic_map(&p);
    for (args, says) in [
        (&["adopt", "--from", "alembic"][..], "--from alembic needs --map FILE"),
        (
            &["adopt", "--from", "alembic", "--dry-run"],
            "--from alembic needs --map FILE",
        ),
        (
            &["adopt", "--from", "sqlx", "--map", "revisions.yaml"],
            "--map is for --from alembic only: sqlx keeps versions in its table",
        ),
        (
            &["adopt", "--from", "alembic", "--map", "missing.yaml"],
            "reading revision map `missing.yaml`",
        ),
        (
            &["adopt", "--from", "alembic", "--map", "bad.yaml"],
            "revision map `bad.yaml`: ae1027a6acf0: invalid type: sequence, expected a string at line 2",
        ),
        (
            &["adopt", "--from", "alembic", "--map", "twice.yaml", "--dry-run"],
            "revision map `twice.yaml`: revision `1975ea83b712` is mapped twice (lines 1 and 2)",
        ),
        (
            &["adopt", "--from", "alembic", "--map", "dotted.yaml"],
            "revision map `dotted.yaml`: revision `1975ea83b712`: `1.2` is not a migration version",
        ),
    ] {
        let run = p.run(args);
        assert_eq!(run.code, 2, "{args:?}: {}", run.all());
        assert!(run.stderr.contains(says), "{args:?}: {}", run.stderr);
    }
    assert!(!p.db_path("acme").exists(), "no tenant was touched");
}

#[test]
fn postgres_schema_tenants_migrated_by_alembic_are_read_in_their_own_schema() {
    let Some(pg) = support::Pg::create("alembic") else {
        return;
    };
    let p = Project::new();
    three(&p);
    alembic_map(&p);
    // `public` is on the search path and holds an alembic_version of its own: not the tenants'.
    p.fleet(&format!(
        "defaults: {{ url: \"{}\", schema: \"a_{{id}}\", search_path: \"{{schema}}, public\" }}\n\
         tenants:\n  - {{ id: acme }}\n  - {{ id: globex }}\n  - {{ id: initech }}\n",
        pg.url()
    ));
    pg.exec(&format!("{ALEMBIC_TABLE}{}", alembic_rows(&["1975ea83b712"])));
    for (id, heads) in [
        ("acme", &["27c6a30d7c24"][..]),
        ("globex", &["ae1027a6acf0", "1975ea83b712"]),
    ] {
        pg.exec(&format!(
            "CREATE SCHEMA a_{id}; SET search_path TO a_{id}; {ALEMBIC_TABLE}{} \
             CREATE TABLE t1 (id int); CREATE TABLE t2 (id int); CREATE TABLE t3 (id int);",
            alembic_rows(heads)
        ));
    }
    pg.exec("CREATE SCHEMA a_initech;");
    let run = p.run(&["adopt", "--from", "alembic", "--map", "revisions.yaml"]);
    assert_eq!(run.code, 1, "{}", run.all());
    assert!(
        run.all().contains("2 heads (1975ea83b712, ae1027a6acf0)"),
        "{}",
        run.all()
    );
    assert!(
        run.all().contains("no such table here"),
        "initech is not adopted from public's: {}",
        run.all()
    );
    assert_eq!(
        pg.column("SELECT version FROM a_acme.fleetmig_history ORDER BY version"),
        ["1", "2", "3"]
    );
    for id in ["globex", "initech"] {
        let has = pg.column(&format!(
            "SELECT count(*)::text FROM pg_tables WHERE schemaname = 'a_{id}' AND tablename = 'fleetmig_history'"
        ));
        let rows = if has == ["1"] {
            pg.column(&format!("SELECT count(*)::text FROM a_{id}.fleetmig_history"))
        } else {
            vec!["0".into()]
        };
        assert_eq!(rows, ["0"], "{id}: a refused tenant records nothing");
    }
    let status = p.run(&["status", "--select", "id=acme", "--format", "json"]);
    assert_eq!(status.code, 0, "{}", status.all());
    let s: Value = serde_json::from_str(&status.stdout).unwrap();
    assert_eq!(s["counts"]["current"], 1, "{s}");
    let up = p.run(&["up", "--select", "id=acme"]);
    assert_eq!(up.code, 0, "{}", up.all());
    assert!(up.all().contains("Nothing to do"), "{}", up.all());
}

#[test]
fn mariadb_tenants_migrated_by_alembic_are_adopted_and_an_unmapped_revision_refused() {
    let Some(my) = support::My::create("alembic") else {
        return;
    };
    let p = Project::new();
    three(&p);
    alembic_map(&p);
    p.fleet(&format!(
        "defaults: {{ url: \"{}\", database: \"{}_{{id}}\" }}\ntenants:\n  - {{ id: acme }}\n  - {{ id: globex }}\n",
        support::MYSQL_ADMIN,
        my.prefix
    ));
    for (id, head) in [("acme", "ae1027a6acf0"), ("globex", "3f2e1d0c9b8a")] {
        let db = format!("`{}_{id}`", my.prefix);
        my.exec(&format!(
            "CREATE DATABASE {db}; USE {db}; CREATE TABLE t1 (id int); CREATE TABLE t2 (id int); {ALEMBIC_TABLE}{}",
            alembic_rows(&[head])
        ));
    }
    let run = p.run(&["adopt", "--from", "alembic", "--map", "revisions.yaml"]);
    assert_eq!(run.code, 1, "{}", run.all());
    assert!(
        run.all()
            .contains("revision 3f2e1d0c9b8a is not in the map `revisions.yaml`"),
        "{}",
        run.all()
    );
    let history = |id: &str| {
        my.column(&format!(
            "SELECT version FROM `{}_{id}`.fleetmig_history ORDER BY CAST(version AS UNSIGNED)",
            my.prefix
        ))
    };
    assert_eq!(history("acme"), ["1", "2"]);
    assert!(history("globex").is_empty(), "a refused tenant records nothing");
    let status = p.run(&["status", "--select", "id=acme", "--format", "json"]);
    let s: Value = serde_json::from_str(&status.stdout).unwrap();
    assert_eq!(s["tenants"][0]["state"], "behind", "{s}");
    let up = p.run(&["up", "--select", "id=acme"]);
    assert_eq!(up.code, 0, "{}", up.all());
    assert_eq!(history("acme"), ["1", "2", "3"]);
    let again = p.run(&["up", "--select", "id=acme"]);
    assert!(again.all().contains("Nothing to do"), "{}", again.all());
    let status = p.run(&["status", "--select", "id=acme"]);
    assert_eq!(status.code, 0, "{}", status.all());
}
