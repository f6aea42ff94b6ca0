//! `history_compat: TOOL`: fleetmig keeps another tool's history table in step with its own
//! (insert on up, delete on down, stamp too), so the tool's own migrator finds nothing to
//! do. sqlx is checked with sqlx's real migrator on SQLite, PostgreSQL (a database tenant
//! and a schema tenant, reached through `search_path`) and MariaDB; dbmate with the real
//! `dbmate` binary when one is installed; the others against their documented tables.

use std::path::{Path, PathBuf};

use sqlx::Connection;

use crate::support::{self, My, Pg, Project, sqlite_column, sqlite_rows};

/// Three reversible sqlx (fleetmig-layout) migrations; the first file starts with a
/// byte-order mark, which sqlx's checksum counts and fleetmig does not run.
fn sqlx_set(p: &Project) {
    let files = [
        (
            "0001_create_widgets",
            "\u{feff}CREATE TABLE widgets (id INTEGER PRIMARY KEY);\n",
            "DROP TABLE widgets;\n",
        ),
        (
            "0002_add_widget_name",
            "ALTER TABLE widgets ADD COLUMN name VARCHAR(50);\n",
            "ALTER TABLE widgets DROP COLUMN name;\n",
        ),
        (
            "0003_create_gadgets",
            "CREATE TABLE gadgets (id INTEGER PRIMARY KEY);\n",
            "DROP TABLE gadgets;\n",
        ),
    ];
    for (stem, up, down) in files {
        p.migration(&format!("{stem}.up.sql"), up);
        p.migration(&format!("{stem}.down.sql"), down);
    }
}

fn run_ok(p: &Project, args: &[&str]) -> String {
    let run = p.run(args);
    assert_eq!(run.code, 0, "{args:?}: {}", run.all());
    run.all()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// sqlx's migrator on the folder, run on `conn`: its answer, and what it says is applied.
async fn sqlx_migrate<C>(dir: &Path, conn: &mut C) -> Result<(), sqlx::migrate::MigrateError>
where
    C: sqlx::migrate::Migrate,
{
    let migrator = sqlx::migrate::Migrator::new(dir.to_path_buf()).await?;
    migrator.run_direct(conn).await
}

/// `_sqlx_migrations` as text: version, description, success, checksum in hex, execution_time.
const SQLX_ROWS_SQLITE: &str = "SELECT CAST(version AS TEXT), description, CAST(success AS TEXT), hex(checksum), \
     CAST(execution_time AS TEXT), installed_on FROM _sqlx_migrations ORDER BY version";

/// What sqlx itself would record for the folder's up files: `version description checksum`.
fn sqlx_expected(dir: &Path) -> Vec<String> {
    let set = sqlx::migrate::resolve_blocking(dir).unwrap();
    set.iter()
        .filter(|(m, _)| m.migration_type.is_up_migration())
        .map(|(m, _)| format!("{} {} {}", m.version, m.description, hex(&m.checksum)))
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

#[test]
fn sqlx_migrator_finds_nothing_to_do_on_sqlite_and_down_gives_it_back_the_reverted() {
    let p = Project::new();
    sqlx_set(&p);
    p.fleet("defaults: { url: \"sqlite://data/{id}.db\", history_compat: sqlx }\ntenants:\n  - { id: acme }\n");
    run_ok(&p, &["up"]);
    let db = p.db_path("acme");
    let dir = p.path().join("migrations");
    let rows = sqlite_rows(&db, SQLX_ROWS_SQLITE);
    let recorded: Vec<String> = rows
        .iter()
        .map(|r| {
            format!(
                "{} {} {}",
                r[0].as_deref().unwrap(),
                r[1].as_deref().unwrap(),
                r[3].as_deref().unwrap()
            )
        })
        .collect();
    assert_eq!(recorded, sqlx_expected(&dir));
    assert!(rows.iter().all(|r| r[2].as_deref() == Some("1")), "{rows:?}");
    assert_eq!(recorded[1].split(' ').nth(1), Some("add"), "{recorded:?}");

    let url = format!("sqlite://{}", db.display());
    runtime().block_on(async {
        let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
        sqlx_migrate(&dir, &mut conn)
            .await
            .expect("sqlx's migrator accepts the history");
        conn.close().await.unwrap();
    });
    assert_eq!(sqlite_rows(&db, SQLX_ROWS_SQLITE), rows, "sqlx applied nothing");

    // down removes the rows: sqlx then runs exactly what fleetmig reverted, itself.
    run_ok(&p, &["down", "--to", "1"]);
    assert_eq!(
        sqlite_column(&db, "SELECT CAST(version AS TEXT) FROM _sqlx_migrations"),
        ["1"]
    );
    runtime().block_on(async {
        let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
        sqlx_migrate(&dir, &mut conn).await.expect("sqlx runs 2 and 3 again");
        conn.close().await.unwrap();
    });
    assert_eq!(
        sqlite_column(
            &db,
            "SELECT CAST(version AS TEXT) FROM _sqlx_migrations ORDER BY version"
        ),
        ["1", "2", "3"]
    );
    assert_eq!(
        sqlite_column(&db, "SELECT name FROM sqlite_master WHERE name = 'gadgets'"),
        ["gadgets"]
    );
}

#[test]
fn sqlx_migrator_finds_nothing_to_do_on_postgres_database_and_schema_tenants() {
    let Some(pg) = Pg::create("compat_sqlx") else { return };
    let p = Project::new();
    sqlx_set(&p);
    p.fleet(&format!(
        "defaults: {{ history_compat: sqlx }}\ntenants:\n  - {{ id: whole, url: \"{url}\" }}\n  \
         - {{ id: part, url: \"{url}\", schema: t_part }}\n",
        url = pg.url()
    ));
    // The schema tenant also goes through --tx per-tenant: the rows ride in its one transaction.
    run_ok(&p, &["up", "--select", "id=whole"]);
    run_ok(&p, &["up", "--select", "id=part", "--tx", "per-tenant"]);
    let dir = p.path().join("migrations");
    let expected = sqlx_expected(&dir);
    let read = |table: &str| {
        pg.column(&format!(
            "SELECT version::text || ' ' || description || ' ' || upper(encode(checksum, 'hex')) || ' ' || success::text \
             FROM {table} ORDER BY version"
        ))
    };
    for table in ["public._sqlx_migrations", "t_part._sqlx_migrations"] {
        let with_success: Vec<String> = expected.iter().map(|e| format!("{e} true")).collect();
        assert_eq!(read(table), with_success, "{table}");
    }
    let types = pg.column(
        "SELECT column_name || ' ' || data_type FROM information_schema.columns \
         WHERE table_schema = 't_part' AND table_name = '_sqlx_migrations' ORDER BY ordinal_position",
    );
    assert_eq!(
        types,
        [
            "version bigint",
            "description text",
            "installed_on timestamp with time zone",
            "success boolean",
            "checksum bytea",
            "execution_time bigint"
        ]
    );
    let before = (read("public._sqlx_migrations"), read("t_part._sqlx_migrations"));
    runtime().block_on(async {
        let mut whole = sqlx::PgConnection::connect(&pg.url()).await.unwrap();
        sqlx_migrate(&dir, &mut whole)
            .await
            .expect("database tenant: nothing to do");
        // sqlx's migrator names its table unqualified: a schema tenant's is found through search_path.
        let options: sqlx::postgres::PgConnectOptions = pg.url().parse().unwrap();
        let mut part = sqlx::PgConnection::connect_with(&options.options([("search_path", "t_part")]))
            .await
            .unwrap();
        sqlx_migrate(&dir, &mut part)
            .await
            .expect("schema tenant: nothing to do");
    });
    assert_eq!(
        (read("public._sqlx_migrations"), read("t_part._sqlx_migrations")),
        before
    );
    run_ok(&p, &["down", "--to", "1", "--select", "id=part"]);
    assert_eq!(pg.column("SELECT version::text FROM t_part._sqlx_migrations"), ["1"]);
    assert_eq!(pg.column("SELECT count(*)::text FROM public._sqlx_migrations"), ["3"]);
}

#[test]
fn sqlx_migrator_finds_nothing_to_do_on_mariadb() {
    let Some(my) = My::create("compat_sqlx") else { return };
    let p = Project::new();
    sqlx_set(&p);
    p.fleet(&format!(
        "defaults: {{ url: \"{}\", database: \"{}_{{id}}\", history_compat: sqlx }}\ntenants:\n  - {{ id: acme }}\n",
        support::MYSQL_ADMIN,
        my.prefix
    ));
    run_ok(&p, &["up"]);
    let db = format!("{}_acme", my.prefix);
    let dir = p.path().join("migrations");
    let read = || {
        my.column(&format!(
            "SELECT CONCAT(version, ' ', description, ' ', HEX(checksum), ' ', success) FROM `{db}`._sqlx_migrations ORDER BY version"
        ))
    };
    let with_success: Vec<String> = sqlx_expected(&dir).iter().map(|e| format!("{e} 1")).collect();
    assert_eq!(read(), with_success);
    runtime().block_on(async {
        let url = format!("{}{db}", support::MYSQL_ADMIN);
        let mut conn = sqlx::MySqlConnection::connect(&url).await.unwrap();
        sqlx_migrate(&dir, &mut conn).await.expect("nothing to do");
    });
    assert_eq!(read(), with_success);
    run_ok(&p, &["down", "--to", "2"]);
    assert_eq!(read(), with_success[..2]);
}

/// The folder of a layout fixture, and a project that runs it with `history_compat`.
fn fixture_project(layout: &str, fleet: &str) -> (Project, PathBuf) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/layouts")
        .join(layout);
    let p = Project::new();
    p.fleet(&format!(
        "migrations: {{ path: \"{}\", layout: {layout} }}\n{fleet}",
        dir.display()
    ));
    (p, dir)
}

#[test]
fn flyway_rows_are_flyways_own_with_its_checksums_and_go_on_down() {
    let (p, _) = fixture_project(
        "flyway",
        "defaults: { url: \"sqlite://data/{id}.db\", history_compat: flyway }\ntenants:\n  - { id: acme }\n",
    );
    run_ok(&p, &["up"]);
    let db = p.db_path("acme");
    let read = || {
        sqlite_column(
            &db,
            "SELECT installed_rank || '|' || version || '|' || description || '|' || type || '|' || script || '|' \
             || checksum || '|' || success FROM flyway_schema_history ORDER BY installed_rank",
        )
    };
    // The checksums are what Flyway's algorithm (Java's CRC32 over BufferedReader lines)
    // gives for these files.
    assert_eq!(read(), FLYWAY_ROWS);
    let columns = sqlite_column(
        &db,
        "SELECT name || ' ' || type || ' ' || \"notnull\" || ' ' || pk FROM pragma_table_info('flyway_schema_history')",
    );
    assert_eq!(
        columns,
        [
            "installed_rank INT 1 1",
            "version VARCHAR(50) 0 0",
            "description VARCHAR(200) 1 0",
            "type VARCHAR(20) 1 0",
            "script VARCHAR(1000) 1 0",
            "checksum INT 0 0",
            "installed_by VARCHAR(100) 1 0",
            "installed_on TEXT 1 0",
            "execution_time INT 1 0",
            "success BOOLEAN 1 0",
        ]
    );
    run_ok(&p, &["down", "--to", "1.1"]);
    assert_eq!(read().len(), 2);
    // Up again: new rows after the last rank, as Flyway numbers them.
    run_ok(&p, &["up"]);
    let ranks: Vec<String> = read().iter().map(|r| r.split('|').next().unwrap().to_owned()).collect();
    assert_eq!(ranks, ["1", "2", "3", "4"]);
}

/// Flyway's rows for the fixture, as `flyway_rows_are_flyways_own...` reads them.
const FLYWAY_ROWS: [&str; 4] = [
    "1|1|create plans|SQL|V1__create_plans.sql|57783546|1",
    "2|1.1|seed free|SQL|V1_1__seed_free.sql|-1823509437|1",
    "3|1.2|add price|SQL|V1_2__add_price.sql|-450390189|1",
    "4|1.10|add currency|SQL|V1_10__add_currency.sql|1182190830|1",
];

#[test]
fn flyway_rows_are_the_same_on_mariadb_and_a_postgres_schema_tenant() {
    let (Some(pg), Some(my)) = (Pg::create("compat_fw"), My::create("compat_fw")) else {
        return;
    };
    let (p, _) = fixture_project(
        "flyway",
        &format!(
            "defaults: {{ history_compat: flyway }}
tenants:
  - {{ id: pg, url: \"{}\", schema: fw }}
  \
             - {{ id: my, url: \"{}\", database: \"{}_my\" }}
",
            pg.url(),
            support::MYSQL_ADMIN,
            my.prefix
        ),
    );
    run_ok(&p, &["up"]);
    run_ok(&p, &["down", "--to", "1.1"]);
    run_ok(&p, &["up"]);
    let pg_rows = pg.column(
        "SELECT installed_rank || '|' || version || '|' || description || '|' || type || '|' || script || '|' \
         || checksum || '|' || success::int || '|' || (installed_by = current_user) FROM fw.flyway_schema_history ORDER BY installed_rank",
    );
    let with_user: Vec<String> = FLYWAY_ROWS.iter().map(|r| format!("{r}|true")).collect();
    assert_eq!(pg_rows, with_user);
    let my_rows = my.column(&format!(
        "SELECT CONCAT_WS('|', installed_rank, version, description, type, script, checksum, success, installed_by) \
         FROM `{}_my`.flyway_schema_history ORDER BY installed_rank",
        my.prefix
    ));
    let with_user: Vec<String> = FLYWAY_ROWS.iter().map(|r| format!("{r}|root")).collect();
    assert_eq!(my_rows, with_user);
}

#[test]
fn diesel_rows_on_a_postgres_schema_tenant_are_its_versions_as_text() {
    let Some(pg) = Pg::create("compat_diesel") else { return };
    let (p, _) = fixture_project(
        "diesel",
        &format!(
            "tenants:\n  - {{ id: acme, url: \"{}\", schema: \"Acme-1\", history_compat: diesel }}\n",
            pg.url()
        ),
    );
    run_ok(&p, &["up"]);
    let read = || pg.column("SELECT version FROM \"Acme-1\".__diesel_schema_migrations ORDER BY version");
    let all = [
        "00000000000000",
        "20160107082941",
        "20160107082941000000",
        "20170101",
        "20210304050607",
    ];
    assert_eq!(read(), all);
    let types = pg.column(
        "SELECT column_name || ' ' || data_type || ' ' || is_nullable FROM information_schema.columns \
         WHERE table_schema = 'Acme-1' AND table_name = '__diesel_schema_migrations' ORDER BY ordinal_position",
    );
    assert_eq!(
        types,
        ["version character varying NO", "run_on timestamp without time zone NO"]
    );
    assert!(pg.column("SELECT to_regclass('public.__diesel_schema_migrations')::text") == ["NULL"]);
    run_ok(&p, &["down", "--to", "00000000000000"]);
    assert_eq!(read(), all[..1]);
}

#[test]
fn golang_migrate_keeps_one_row_the_current_version_on_mariadb() {
    let Some(my) = My::create("compat_gm") else { return };
    let p = Project::new();
    sqlx_set(&p);
    p.fleet(&format!(
        "defaults: {{ url: \"{}\", database: \"{}_{{id}}\" }}\ntenants:\n  - {{ id: acme, history_compat: golang-migrate }}\n",
        support::MYSQL_ADMIN,
        my.prefix
    ));
    let read = || {
        my.column(&format!(
            "SELECT CONCAT(version, ' ', dirty) FROM `{}_acme`.schema_migrations",
            my.prefix
        ))
    };
    run_ok(&p, &["up"]);
    assert_eq!(read(), ["3 0"]);
    let types = my.column(&format!(
        "SELECT CONCAT(COLUMN_NAME, ' ', COLUMN_TYPE, ' ', IS_NULLABLE, ' ', COLUMN_KEY) FROM information_schema.COLUMNS \
         WHERE TABLE_SCHEMA = '{}_acme' AND TABLE_NAME = 'schema_migrations' ORDER BY ORDINAL_POSITION",
        my.prefix
    ));
    assert_eq!(types, ["version bigint(20) NO PRI", "dirty tinyint(1) NO "]);
    run_ok(&p, &["down", "--to", "1"]);
    assert_eq!(read(), ["1 0"]);
    run_ok(&p, &["down", "--to", "0", "--yes"]);
    assert!(read().is_empty(), "{:?}", read());
}

#[test]
fn dbmate_rows_are_its_file_versions_and_stamp_and_up_fill_a_table_set_late() {
    let (p, dir) = fixture_project(
        "dbmate",
        "defaults: { url: \"sqlite://data/{id}.db\" }\ntenants:\n  - { id: acme }\n",
    );
    let db = p.db_path("acme");
    run_ok(&p, &["up"]);
    // history_compat set after the tenant was migrated: the next up writes what is missing.
    let text = std::fs::read_to_string(p.path().join("tenants.yaml")).unwrap();
    p.fleet(&text.replace("url: \"sqlite", "history_compat: dbmate, url: \"sqlite"));
    run_ok(&p, &["up"]);
    let read = || sqlite_column(&db, "SELECT version FROM schema_migrations ORDER BY version");
    let all = ["20151129054053", "20151129054100", "20160101000000"];
    assert_eq!(read(), all);
    run_ok(&p, &["stamp", "20151129054053"]);
    assert_eq!(read(), all[..1]);
    run_ok(&p, &["stamp", "20160101000000"]);
    assert_eq!(read(), all);
    dbmate_status(&db, &dir);
}

/// The real `dbmate status` on the tenant (see [`support::stock_tool`]): it must report
/// nothing pending.
fn dbmate_status(db: &Path, dir: &Path) {
    let Some(bin) = support::stock_tool("dbmate") else {
        return;
    };
    let url = format!("sqlite:{}", db.display());
    let text = support::run_tool(
        &bin,
        &[
            "--no-dump-schema",
            "--migrations-dir",
            dir.to_str().unwrap(),
            "--url",
            &url,
            "status",
        ],
    );
    assert!(text.contains("Applied: 3") && text.contains("Pending: 0"), "{text}");
}

#[test]
fn an_unknown_or_malformed_history_compat_names_the_file_and_key() {
    let p = Project::new();
    p.migration("0001_a.up.sql", "SELECT 1;");
    p.fleet("defaults: { url: \"sqlite://data/{id}.db\", history_compat: liquibase }\ntenants:\n  - { id: acme }\n");
    let bad = p.run(&["up"]);
    assert_eq!(bad.code, 2, "{}", bad.all());
    assert!(bad.stderr.contains("tenants.yaml"), "{}", bad.stderr);
    assert!(
        bad.stderr
            .contains("defaults history_compat: `liquibase` is not a tool whose history fleetmig keeps"),
        "{}",
        bad.stderr
    );
    p.fleet("defaults: { url: \"sqlite://data/{id}.db\", history_compat: alembic }\ntenants:\n  - { id: acme }\n");
    let bad = p.run(&["up"]);
    assert_eq!(bad.code, 2, "{}", bad.all());
    assert!(
        bad.stderr.contains("alembic keeps only its head revision id"),
        "{}",
        bad.stderr
    );
    p.fleet("tenants:\n  - { id: acme, url: \"sqlite://data/a.db\", history_compat: [sqlx] }\n");
    let bad = p.run(&["up"]);
    assert_eq!(bad.code, 2, "{}", bad.all());
    assert!(
        bad.stderr.contains("tenants.yaml") && bad.stderr.contains("history_compat"),
        "{}",
        bad.stderr
    );
    // sqlx keeps whole-number versions: a Flyway set is refused before anything runs.
    let (p, _) = fixture_project(
        "flyway",
        "defaults: { url: \"sqlite://data/{id}.db\", history_compat: sqlx }\ntenants:\n  - { id: acme }\n",
    );
    let bad = p.run(&["up"]);
    assert_eq!(bad.code, 2, "{}", bad.all());
    assert!(
        bad.stderr
            .contains("tenant `acme` history_compat: sqlx records whole-number versions only"),
        "{}",
        bad.stderr
    );
    assert!(!p.db_path("acme").exists());
}

#[test]
fn a_step_that_fails_part_way_on_mariadb_leaves_the_sqlx_row_failed_and_sqlx_refuses() {
    let Some(my) = My::create("compat_dirty") else { return };
    let p = Project::new();
    p.migration("0001_a.up.sql", "CREATE TABLE a (id INT);\n");
    // MySQL commits the first statement; the second fails: the tenant is part way.
    p.migration("0002_b.up.sql", "CREATE TABLE b (id INT);\nCREATE TABLE a (id INT);\n");
    p.fleet(&format!(
        "defaults: {{ url: \"{}\", database: \"{}_{{id}}\", history_compat: sqlx }}\ntenants:\n  - {{ id: acme }}\n",
        support::MYSQL_ADMIN,
        my.prefix
    ));
    let run = p.run(&["up"]);
    assert_eq!(run.code, 1, "{}", run.all());
    let db = format!("{}_acme", my.prefix);
    assert_eq!(
        my.column(&format!(
            "SELECT CONCAT(version, ' ', success) FROM `{db}`._sqlx_migrations ORDER BY version"
        )),
        ["1 1", "2 0"]
    );
    let dir = p.path().join("migrations");
    let refused = runtime().block_on(async {
        let mut conn = sqlx::MySqlConnection::connect(&format!("{}{db}", support::MYSQL_ADMIN))
            .await
            .unwrap();
        sqlx_migrate(&dir, &mut conn).await
    });
    assert!(
        matches!(refused, Err(sqlx::migrate::MigrateError::Dirty(2))),
        "{refused:?}"
    );
}

#[test]
fn golang_migrate_keeps_one_row_on_sqlite_and_postgres_too() {
    let Some(pg) = Pg::create("compat_gm") else { return };
    let p = Project::new();
    sqlx_set(&p);
    p.fleet(&format!(
        "defaults: {{ history_compat: golang-migrate }}\ntenants:\n  - {{ id: lite, url: \"sqlite://data/lite.db\" }}\n  \
         - {{ id: pg, url: \"{}\", schema: gm }}\n",
        pg.url()
    ));
    let db = p.db_path("lite");
    let read = || {
        let lite = sqlite_column(&db, "SELECT version || ' ' || dirty FROM schema_migrations");
        let pg = pg.column("SELECT version || ' ' || dirty FROM gm.schema_migrations");
        (lite, pg)
    };
    run_ok(&p, &["up"]);
    assert_eq!(read(), (vec!["3 0".to_owned()], vec!["3 false".to_owned()]));
    run_ok(&p, &["down", "--to", "1"]);
    assert_eq!(read(), (vec!["1 0".to_owned()], vec!["1 false".to_owned()]));
    assert_eq!(
        sqlite_column(
            &db,
            "SELECT sql FROM sqlite_master WHERE name IN ('schema_migrations', 'version_unique') ORDER BY name"
        ),
        [
            "CREATE TABLE \"schema_migrations\" (version uint64, dirty bool)",
            "CREATE UNIQUE INDEX version_unique ON \"schema_migrations\" (version)"
        ]
    );
}

#[test]
fn pooled_postgres_schema_tenants_at_their_target_still_get_rows_set_late() {
    let Some(pg) = Pg::create("compat_late") else { return };
    let p = Project::new();
    sqlx_set(&p);
    let fleet = |compat: &str| {
        format!(
            "hosts:\n  pg: {{ url: \"{}\" }}\ndefaults: {{ host: pg, schema: \"t_{{id}}\"{compat} }}\ntenants:\n  - {{ id: acme }}\n",
            pg.url()
        )
    };
    p.fleet(&fleet(""));
    run_ok(&p, &["up"]);
    p.fleet(&fleet(", history_compat: sqlx"));
    let noop = run_ok(&p, &["up"]);
    assert!(noop.contains("Nothing to do") || noop.contains("0 step"), "{noop}");
    assert_eq!(
        pg.column("SELECT version::text FROM t_acme._sqlx_migrations ORDER BY version"),
        ["1", "2", "3"]
    );
}

/// A tenant sqlx's own migrator migrated is adopted: the same schema as fleetmig's from
/// the same files, `status` current, `up` runs nothing, the next migration runs once; and
/// with `history_compat: sqlx`, sqlx's migrator afterwards finds nothing left to run.
#[test]
fn a_tenant_sqlx_migrated_is_adopted_and_sqlx_then_finds_nothing_to_run() {
    let p = Project::new();
    sqlx_set(&p);
    std::fs::create_dir_all(p.path().join("data")).unwrap();
    let fleet = |compat: &str| {
        format!(
            "defaults: {{ url: \"sqlite://data/{{id}}.db\"{compat} }}\ntenants:\n  - {{ id: stock }}\n  - {{ id: ours }}\n"
        )
    };
    p.fleet(&fleet(""));
    let dir = p.path().join("migrations");
    let stock = p.db_path("stock");
    let url = format!("sqlite://{}?mode=rwc", stock.display());
    let sqlx_run = |what: &str| {
        runtime().block_on(async {
            let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
            sqlx_migrate(&dir, &mut conn)
                .await
                .unwrap_or_else(|e| panic!("{what}: {e}"));
            conn.close().await.unwrap();
        })
    };
    sqlx_run("sqlx migrates the stock tenant");
    run_ok(&p, &["up", "--select", "id=ours"]);
    let schema = |id: &str| {
        sqlite_column(
            &p.db_path(id),
            "SELECT type || ' ' || name || ': ' || sql FROM sqlite_master \
             WHERE name NOT LIKE 'fleetmig%' AND name NOT LIKE '_sqlx%' AND name NOT LIKE 'sqlite_%' ORDER BY name",
        )
    };
    assert_eq!(schema("stock"), schema("ours"), "the same files, the same schema");

    run_ok(&p, &["adopt", "--from", "sqlx", "--select", "id=stock"]);
    run_ok(&p, &["status"]);
    assert!(run_ok(&p, &["up"]).contains("Nothing to do"));

    p.fleet(&fleet(", history_compat: sqlx"));
    p.migration(
        "0004_create_sprockets.up.sql",
        "CREATE TABLE sprockets (id INTEGER PRIMARY KEY);\n",
    );
    p.migration("0004_create_sprockets.down.sql", "DROP TABLE sprockets;\n");
    assert!(run_ok(&p, &["up"]).contains("2 changed"));
    assert_eq!(schema("stock"), schema("ours"));
    let before = sqlite_rows(&stock, SQLX_ROWS_SQLITE);
    assert_eq!(before.len(), 4, "{before:?}");
    sqlx_run("sqlx finds nothing to run");
    assert_eq!(sqlite_rows(&stock, SQLX_ROWS_SQLITE), before, "sqlx applied nothing");
}
