//! Flyway's repeatable migrations (`R__name.sql`): run after the versioned ones, again
//! whenever their checksum changes, recorded in `fleetmig_repeatables`; on SQLite file
//! tenants, PostgreSQL schema tenants and MariaDB database tenants.

use crate::support::{self, My, Pg, Project, sqlite_column, tenant_line};

const VIEW: &str = "DROP VIEW IF EXISTS v_items;\nCREATE VIEW v_items AS SELECT id FROM items;\n";
const VIEW_2: &str = "DROP VIEW IF EXISTS v_items;\nCREATE VIEW v_items AS SELECT id, label FROM items;\n";

fn project(fleet: &str) -> Project {
    let p = Project::new();
    std::fs::create_dir_all(p.path().join("data")).unwrap();
    p.fleet(&format!("migrations: {{ path: migrations, layout: flyway }}\n{fleet}"));
    p.migration(
        "V1__items.sql",
        "CREATE TABLE items (id INT PRIMARY KEY, label VARCHAR(20));\n",
    );
    p.migration("V2__seed.sql", "INSERT INTO items (id, label) VALUES (1, 'one');\n");
    p.migration("R__items_view.sql", VIEW);
    p
}

/// up, a no-op up, an edited repeatable run again alone, a broken one failing by name;
/// `view` reads the view's columns, `recorded` the repeatables table.
fn cycle(p: &Project, what: &str, view: &dyn Fn() -> Vec<String>, recorded: &dyn Fn() -> Vec<String>) {
    let history = p.run(&["history"]);
    assert!(
        history.stdout.contains("Repeatable: items_view (`"),
        "{what}: {}",
        history.all()
    );
    let up = p.run(&["up"]);
    assert_eq!(up.code, 0, "{what}: {}", up.all());
    assert_eq!(view(), ["id"], "{what}");
    assert_eq!(recorded(), ["items_view"], "{what}");

    let noop = p.run(&["up"]);
    assert_eq!(noop.code, 0, "{what}: {}", noop.all());
    assert!(noop.stdout.contains("Nothing to do"), "{what}: {}", noop.all());

    p.migration("R__items_view.sql", VIEW_2);
    let status = p.run(&["status", "--format", "json"]);
    assert_eq!(status.code, 1, "{what}: behind: {}", status.all());
    assert!(
        status.stdout.contains("\"state\":\"behind\"")
            && status
                .stdout
                .contains("repeatable migration(s) changed or never run: items_view"),
        "{what}: {}",
        status.stdout
    );
    let again = p.run(&["up", "--format", "json"]);
    assert_eq!(again.code, 0, "{what}: {}", again.all());
    assert!(
        again.stdout.contains("\"name\":\"items_view\",\"direction\":\"up\"")
            && again.stdout.contains("\"repeatable\":true"),
        "{what}: {}",
        again.stdout
    );
    assert_eq!(view(), ["id", "label"], "{what}");
    assert_eq!(p.run(&["status"]).code, 0, "{what}: current again");
    assert!(
        p.run(&["up"]).stdout.contains("Nothing to do"),
        "{what}: ran again unchanged"
    );

    p.migration("R__broken.sql", "INSERT INTO no_such_table (id) VALUES (1);\n");
    let broken = p.run(&["up"]);
    assert_eq!(broken.code, 1, "{what}: {}", broken.all());
    assert!(
        tenant_line(&broken.stdout, "acme").contains("running repeatable migration")
            && tenant_line(&broken.stdout, "acme").contains("R__broken.sql"),
        "{what}: {}",
        broken.all()
    );
    assert_eq!(recorded(), ["items_view"], "{what}: the broken one is not recorded");
    std::fs::remove_file(p.path().join("migrations/R__broken.sql")).unwrap();
    assert!(p.run(&["up"]).stdout.contains("Nothing to do"), "{what}");
}

#[test]
fn repeatables_run_again_when_changed_on_sqlite() {
    let p = project("defaults: { url: \"sqlite://data/{id}.db\" }\ntenants:\n  - { id: acme }\n");
    let db = p.db_path("acme");
    cycle(
        &p,
        "sqlite",
        &|| sqlite_column(&db, "SELECT name FROM pragma_table_info('v_items') ORDER BY cid"),
        &|| sqlite_column(&db, "SELECT name FROM fleetmig_repeatables ORDER BY 1"),
    );
}

#[test]
fn repeatables_run_again_when_changed_on_postgres_schema_tenants() {
    let Some(pg) = Pg::create("repeatable") else { return };
    let p = project(&format!(
        "defaults: {{ url: \"{}\", schema: \"rep_{{id}}\" }}\ntenants:\n  - {{ id: acme }}\n",
        pg.url()
    ));
    cycle(
        &p,
        "postgres",
        &|| {
            pg.column(
                "SELECT column_name::text FROM information_schema.columns \
                 WHERE table_schema = 'rep_acme' AND table_name = 'v_items' ORDER BY ordinal_position",
            )
        },
        &|| pg.column("SELECT name FROM rep_acme.fleetmig_repeatables ORDER BY 1"),
    );
    assert!(
        pg.column("SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'public'")
            .is_empty(),
        "nothing in public"
    );
}

#[test]
fn repeatables_run_again_when_changed_on_mariadb() {
    let Some(my) = My::create("repeatable") else { return };
    let p = project(&format!(
        "defaults: {{ url: \"{}\", database: \"{}_{{id}}\" }}\ntenants:\n  - {{ id: acme }}\n",
        support::MYSQL_ADMIN,
        my.prefix
    ));
    let db = format!("{}_acme", my.prefix);
    cycle(
        &p,
        "mariadb",
        &|| {
            my.column(&format!(
                "SELECT CAST(COLUMN_NAME AS CHAR) FROM information_schema.COLUMNS \
                 WHERE TABLE_SCHEMA = '{db}' AND TABLE_NAME = 'v_items' ORDER BY ORDINAL_POSITION"
            ))
        },
        &|| {
            my.column(&format!(
                "SELECT CAST(name AS CHAR) FROM `{db}`.fleetmig_repeatables ORDER BY 1"
            ))
        },
    );
}

/// A repeatable whose name could not be recorded safely is refused when the set loads.
#[test]
fn a_repeatable_name_outside_the_plain_characters_is_refused_by_file() {
    let p = project("defaults: { url: \"sqlite://data/{id}.db\" }\ntenants:\n  - { id: acme }\n");
    p.migration("R__it's.sql", "SELECT 1;\n");
    let run = p.run(&["status"]);
    assert_eq!(run.code, 2, "{}", run.all());
    assert!(
        run.stderr.contains("R__it's.sql") && run.stderr.contains("repeatable"),
        "{}",
        run.all()
    );
}
