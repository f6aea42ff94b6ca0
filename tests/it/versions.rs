//! Versions as text: history tables of fleets migrated before versions were text are
//! upgraded in place, once, every row kept; other tools' folder layouts are read as they
//! are (diesel's text versions, Flyway's dotted ones, dbmate's sections, sqlx's simple
//! files), and a folder of two layouts is an error that says what it found.

use serde_json::Value;

use crate::support::{self, Project, sqlite_column, sqlite_exec};

/// Three migrations whose checksums the old rows carry.
fn three(p: &Project) {
    for i in 1..=3 {
        p.migration(
            &format!("000{i}_t{i}.up.sql"),
            &format!("CREATE TABLE t{i} (id INTEGER);"),
        );
        p.migration(&format!("000{i}_t{i}.down.sql"), &format!("DROP TABLE t{i};"));
    }
}

/// The checksum `status` would expect for migration `i` of [`three`].
fn checksum(p: &Project, i: usize) -> String {
    let sets = fleetmig::api::load_migrations(p.path().join("migrations")).unwrap();
    sets.single().unwrap().iter().nth(i - 1).unwrap().checksum.to_hex()
}

fn status(p: &Project) -> Value {
    let run = p.run(&["status", "--format", "json"]);
    // 1: some tenant lags behind.
    assert!(run.code == 0 || run.code == 1, "{}", run.all());
    serde_json::from_str(&run.stdout).unwrap()
}

#[test]
fn a_sqlite_history_with_integer_versions_is_upgraded_in_place_and_keeps_every_row() {
    let p = Project::new();
    three(&p);
    p.fleet("defaults: { url: \"sqlite://data/{id}.db\" }\ntenants:\n  - { id: acme }\n");
    std::fs::create_dir_all(p.path().join("data")).unwrap();
    let db = p.db_path("acme");
    // The table as fleetmig made it before versions were text, at version 2.
    sqlite_exec(
        &db,
        &format!(
            "CREATE TABLE fleetmig_history (version INTEGER PRIMARY KEY, name TEXT NOT NULL, checksum TEXT NOT NULL, \
             applied_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')), duration_ms INTEGER NOT NULL DEFAULT 0, \
             run_id TEXT NOT NULL, dirty INTEGER NOT NULL DEFAULT 0); \
             CREATE TABLE t1 (id INTEGER); CREATE TABLE t2 (id INTEGER); \
             INSERT INTO fleetmig_history (version, name, checksum, applied_at, duration_ms, run_id) VALUES \
             (1, 't1', '{}', '2020-01-01T00:00:00.000Z', 5, 'old'), (2, 't2', '{}', '2020-01-02T00:00:00.000Z', 7, 'old');",
            checksum(&p, 1),
            checksum(&p, 2)
        ),
    );
    // Read-only commands read the old table as it is.
    let before = status(&p);
    assert_eq!(before["tenants"][0]["version"], 2, "{before}");
    assert_eq!(before["tenants"][0]["pending"], 1, "{before}");

    let up = p.run(&["up"]);
    assert_eq!(up.code, 0, "{}", up.all());
    assert_eq!(
        sqlite_column(
            &db,
            "SELECT type FROM pragma_table_info('fleetmig_history') WHERE name = 'version'"
        ),
        ["TEXT"]
    );
    assert_eq!(
        sqlite_column(
            &db,
            "SELECT version || ' ' || applied_at || ' ' || duration_ms || ' ' || run_id FROM fleetmig_history \
             ORDER BY CAST(version AS INTEGER) LIMIT 2"
        ),
        ["1 2020-01-01T00:00:00.000Z 5 old", "2 2020-01-02T00:00:00.000Z 7 old"],
        "the old rows are kept as they were"
    );
    let after = status(&p);
    assert_eq!(after["tenants"][0]["version"], 3, "{after}");
    assert_eq!(after["tenants"][0]["state"], "current", "{after}");
    // And down still finds the rows it removes.
    let down = p.run(&["down", "--to", "1"]);
    assert_eq!(down.code, 0, "{}", down.all());
    assert_eq!(sqlite_column(&db, "SELECT version FROM fleetmig_history"), ["1"]);
}

#[test]
fn a_postgres_history_with_bigint_versions_is_upgraded_in_place() {
    let Some(pg) = support::Pg::create("oldhist") else {
        return;
    };
    let p = Project::new();
    three(&p);
    p.fleet(&format!(
        "defaults: {{ url: \"{}\", schema: \"s_{{id}}\" }}\ntenants:\n  - {{ id: acme }}\n  - {{ id: globex }}\n",
        pg.url()
    ));
    for id in ["acme", "globex"] {
        pg.exec(&format!(
            "CREATE SCHEMA s_{id}; CREATE TABLE s_{id}.fleetmig_history (version BIGINT PRIMARY KEY, name TEXT NOT NULL, \
             checksum TEXT NOT NULL, applied_at TIMESTAMPTZ NOT NULL DEFAULT now(), duration_ms BIGINT NOT NULL DEFAULT 0, \
             run_id TEXT NOT NULL, dirty BOOLEAN NOT NULL DEFAULT FALSE); CREATE TABLE s_{id}.t1 (id int); \
             INSERT INTO s_{id}.fleetmig_history (version, name, checksum, duration_ms, run_id) VALUES (1, 't1', '{}', 5, 'old');",
            checksum(&p, 1)
        ));
    }
    let up = p.run(&["up"]);
    assert_eq!(up.code, 0, "{}", up.all());
    for id in ["acme", "globex"] {
        assert_eq!(
            pg.column(&format!(
                "SELECT data_type FROM information_schema.columns WHERE table_schema = 's_{id}' \
                 AND table_name = 'fleetmig_history' AND column_name = 'version'"
            )),
            ["text"]
        );
        assert_eq!(
            pg.column(&format!(
                "SELECT version || ' ' || duration_ms || ' ' || run_id FROM s_{id}.fleetmig_history ORDER BY version::int"
            ))[0],
            "1 5 old"
        );
    }
    let s = status(&p);
    assert_eq!(s["tenants"][0]["version"], 3, "{s}");
    assert_eq!(s["tenants"][1]["version"], 3, "{s}");
}

#[test]
fn a_mariadb_history_with_bigint_versions_is_upgraded_in_place() {
    let Some(my) = support::My::create("oldhist") else {
        return;
    };
    let p = Project::new();
    three(&p);
    p.fleet(&format!(
        "defaults: {{ url: \"{}\", database: \"{}_{{id}}\" }}\ntenants:\n  - {{ id: acme }}\n",
        support::MYSQL_ADMIN,
        my.prefix
    ));
    let db = format!("`{}_acme`", my.prefix);
    my.exec(&format!(
        "CREATE DATABASE {db}; CREATE TABLE {db}.fleetmig_history (version BIGINT NOT NULL PRIMARY KEY, \
         name VARCHAR(255) NOT NULL, checksum CHAR(64) NOT NULL, applied_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3), \
         duration_ms BIGINT NOT NULL DEFAULT 0, run_id VARCHAR(64) NOT NULL, dirty BOOLEAN NOT NULL DEFAULT FALSE); \
         CREATE TABLE {db}.t1 (id int); \
         INSERT INTO {db}.fleetmig_history (version, name, checksum, duration_ms, run_id) VALUES (1, 't1', '{}', 5, 'old');",
        checksum(&p, 1)
    ));
    let up = p.run(&["up"]);
    assert_eq!(up.code, 0, "{}", up.all());
    assert_eq!(
        my.column(&format!(
            "SELECT DATA_TYPE FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = '{}_acme' \
             AND TABLE_NAME = 'fleetmig_history' AND COLUMN_NAME = 'version'",
            my.prefix
        )),
        ["varchar"]
    );
    let rows = my.column(&format!(
        "SELECT CONCAT(version, ' ', duration_ms, ' ', run_id) FROM {db}.fleetmig_history ORDER BY CAST(version AS UNSIGNED)"
    ));
    assert_eq!(rows.len(), 3, "{rows:?}");
    assert_eq!(rows[0], "1 5 old", "the old row is kept as it was");
    let s = status(&p);
    assert_eq!(s["tenants"][0]["version"], 3, "{s}");
}

/// A migration merged from a branch below a tenant's newest: refused by default naming
/// both versions; `--out-of-order` (or `out_of_order: true` in the fleet file's
/// `migrations:`) runs it, and the tenant stays at its newest.
#[test]
fn an_older_pending_migration_is_refused_unless_out_of_order_is_allowed() {
    let p = Project::new();
    p.fleet("defaults: { url: \"sqlite://data/{id}.db\" }\ntenants:\n  - { id: acme }\n  - { id: globex }\n");
    std::fs::create_dir_all(p.path().join("data")).unwrap();
    p.migration("0001_a.up.sql", "CREATE TABLE a (id INTEGER);");
    p.migration("0003_c.up.sql", "CREATE TABLE c (id INTEGER);");
    p.migration("0003_c.down.sql", "DROP TABLE c;");
    let up = p.run(&["up"]);
    assert_eq!(up.code, 0, "{}", up.all());
    p.migration("0002_b.up.sql", "CREATE TABLE b (id INTEGER);");
    p.migration("0002_b.down.sql", "DROP TABLE b;");

    let refused = p.run(&["up"]);
    assert_eq!(refused.code, 1, "{}", refused.all());
    assert!(
        refused.stdout.contains("migration 2") && refused.stdout.contains("applied migration 3"),
        "{}",
        refused.all()
    );
    let db = p.db_path("acme");
    let history = || sqlite_column(&db, "SELECT version FROM fleetmig_history ORDER BY applied_at, rowid");
    assert_eq!(history(), ["1", "3"]);

    let allowed = p.run(&["up", "--out-of-order", "--select", "id=acme"]);
    assert_eq!(allowed.code, 0, "{}", allowed.all());
    assert_eq!(history(), ["1", "3", "2"]);
    // The fleet file says so for the rest.
    p.fleet(
        "migrations: { path: migrations, out_of_order: true }\n\
         defaults: { url: \"sqlite://data/{id}.db\" }\ntenants:\n  - { id: acme }\n  - { id: globex }\n",
    );
    let rest = p.run(&["up"]);
    assert_eq!(rest.code, 0, "{}", rest.all());
    let s = status(&p);
    assert_eq!(s["counts"]["current"], 2, "{s}");
    // Down goes by version: 3, then 2.
    let down = p.run(&["down", "--steps", "2"]);
    assert_eq!(down.code, 0, "{}", down.all());
    assert_eq!(history(), ["1"]);
}

/// A run started with `--out-of-order` and paused (or interrupted) goes on with it when
/// resumed without the flag: its later tenants are not refused.
#[test]
fn a_resumed_run_keeps_out_of_order() {
    let p = Project::new();
    p.fleet("defaults: { url: \"sqlite://data/{id}.db\" }\ntenants:\n  - { id: acme }\n  - { id: globex }\n");
    std::fs::create_dir_all(p.path().join("data")).unwrap();
    p.migration("0001_a.up.sql", "CREATE TABLE a (id INTEGER);");
    p.migration("0003_c.up.sql", "CREATE TABLE c (id INTEGER);");
    assert_eq!(p.run(&["up"]).code, 0);
    p.migration("0002_b.up.sql", "CREATE TABLE b (id INTEGER);");
    let paused = p.run(&["up", "--out-of-order", "--waves", "1,100%", "--pause-after", "1"]);
    assert_eq!(paused.code, 0, "{}", paused.all());
    let history = |id: &str| {
        sqlite_column(
            &p.db_path(id),
            "SELECT version FROM fleetmig_history ORDER BY applied_at, rowid",
        )
    };
    assert_eq!(history("acme"), ["1", "3", "2"]);
    assert_eq!(history("globex"), ["1", "3"]);
    let resumed = p.run(&["up", "--resume"]);
    assert_eq!(resumed.code, 0, "{}", resumed.all());
    assert_eq!(history("globex"), ["1", "3", "2"]);
}

/// Two runners meet old integer history tables at once, on every engine: each table is
/// upgraded once under the tenant's lock, both runs succeed, each migration is recorded
/// once and the old row is kept.
#[test]
fn two_runners_upgrading_old_history_tables_at_once_lose_nothing() {
    let old_row = |p: &Project| format!("(1, 't1', '{}', 5, 'old')", checksum(p, 1));
    let spawn_two = |p: &Project| {
        let spawn = || {
            p.command(&["up", "--lock-wait", "15s"])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        };
        let (a, b) = (spawn(), spawn());
        for out in [a.wait_with_output().unwrap(), b.wait_with_output().unwrap()] {
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        }
    };

    // SQLite: four file tenants.
    let p = Project::new();
    three(&p);
    p.fleet("defaults: { url: \"sqlite://data/{id}.db\" }\ntenants:\n  - { id: a }\n  - { id: b }\n  - { id: c }\n  - { id: d }\n");
    std::fs::create_dir_all(p.path().join("data")).unwrap();
    for id in ["a", "b", "c", "d"] {
        sqlite_exec(
            &p.db_path(id),
            &format!(
                "CREATE TABLE fleetmig_history (version INTEGER PRIMARY KEY, name TEXT NOT NULL, checksum TEXT NOT NULL, \
                 applied_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')), duration_ms INTEGER NOT NULL DEFAULT 0, \
                 run_id TEXT NOT NULL, dirty INTEGER NOT NULL DEFAULT 0); CREATE TABLE t1 (id INTEGER); \
                 INSERT INTO fleetmig_history (version, name, checksum, duration_ms, run_id) VALUES {};",
                old_row(&p)
            ),
        );
    }
    spawn_two(&p);
    for id in ["a", "b", "c", "d"] {
        assert_eq!(
            sqlite_column(
                &p.db_path(id),
                "SELECT version || ' ' || run_id FROM fleetmig_history ORDER BY version"
            )
            .iter()
            .map(|r| r.split(' ').next().unwrap().to_owned())
            .collect::<Vec<_>>(),
            ["1", "2", "3"],
            "{id}"
        );
        assert_eq!(
            sqlite_column(
                &p.db_path(id),
                "SELECT run_id FROM fleetmig_history WHERE version = '1'"
            ),
            ["old"]
        );
    }

    // PostgreSQL: schema tenants sharing one database.
    if let Some(pg) = support::Pg::create("oldrace") {
        let p = Project::new();
        three(&p);
        p.fleet(&format!(
            "defaults: {{ url: \"{}\", schema: \"s_{{id}}\" }}\ntenants:\n  - {{ id: a }}\n  - {{ id: b }}\n  - {{ id: c }}\n",
            pg.url()
        ));
        for id in ["a", "b", "c"] {
            pg.exec(&format!(
                "CREATE SCHEMA s_{id}; CREATE TABLE s_{id}.fleetmig_history (version BIGINT PRIMARY KEY, name TEXT NOT NULL, \
                 checksum TEXT NOT NULL, applied_at TIMESTAMPTZ NOT NULL DEFAULT now(), duration_ms BIGINT NOT NULL DEFAULT 0, \
                 run_id TEXT NOT NULL, dirty BOOLEAN NOT NULL DEFAULT FALSE); CREATE TABLE s_{id}.t1 (id int); \
                 INSERT INTO s_{id}.fleetmig_history (version, name, checksum, duration_ms, run_id) VALUES {};",
                old_row(&p)
            ));
        }
        spawn_two(&p);
        for id in ["a", "b", "c"] {
            assert_eq!(
                pg.column(&format!(
                    "SELECT version || ' ' || (run_id = 'old')::text FROM s_{id}.fleetmig_history ORDER BY version"
                )),
                ["1 true", "2 false", "3 false"],
                "{id}"
            );
        }
    }

    // MariaDB: database tenants.
    if let Some(my) = support::My::create("oldrace") {
        let p = Project::new();
        three(&p);
        p.fleet(&format!(
            "defaults: {{ url: \"{}\", database: \"{}_{{id}}\" }}\ntenants:\n  - {{ id: a }}\n  - {{ id: b }}\n",
            support::MYSQL_ADMIN,
            my.prefix
        ));
        for id in ["a", "b"] {
            let db = format!("`{}_{id}`", my.prefix);
            my.exec(&format!(
                "CREATE DATABASE {db}; CREATE TABLE {db}.fleetmig_history (version BIGINT NOT NULL PRIMARY KEY, \
                 name VARCHAR(255) NOT NULL, checksum CHAR(64) NOT NULL, applied_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3), \
                 duration_ms BIGINT NOT NULL DEFAULT 0, run_id VARCHAR(64) NOT NULL, dirty BOOLEAN NOT NULL DEFAULT FALSE); \
                 CREATE TABLE {db}.t1 (id int); \
                 INSERT INTO {db}.fleetmig_history (version, name, checksum, duration_ms, run_id) VALUES {};",
                old_row(&p)
            ));
        }
        spawn_two(&p);
        for id in ["a", "b"] {
            assert_eq!(
                my.column(&format!(
                    "SELECT CONCAT(version, ' ', run_id = 'old') FROM `{}_{id}`.fleetmig_history ORDER BY version",
                    my.prefix
                )),
                ["1 1", "2 0", "3 0"],
                "{id}"
            );
        }
    }
}
