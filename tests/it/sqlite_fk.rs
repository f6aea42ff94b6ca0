//! SQLite foreign keys across migrations: the documented way to change a table's schema
//! (build a new table, copy, drop the old one, rename) must not cascade into child rows,
//! and a migration that leaves rows pointing nowhere must not commit.

use crate::support::{Project, sqlite_column, sqlite_exec};

const SCHEMA: &str = "CREATE TABLE parent (id INTEGER PRIMARY KEY, name TEXT NOT NULL);
CREATE TABLE child (id INTEGER PRIMARY KEY, parent_id INTEGER NOT NULL REFERENCES parent (id) ON DELETE CASCADE);
";
const ROWS: &str = "INSERT INTO parent VALUES (1, 'a'), (2, 'b');
INSERT INTO child VALUES (10, 1), (11, 1), (12, 2);
";
/// SQLite's twelve-step schema change, as the sqlite3 shell would run it.
const REBUILD: &str = "CREATE TABLE parent_new (id INTEGER PRIMARY KEY, name TEXT NOT NULL, note TEXT);
INSERT INTO parent_new (id, name) SELECT id, name FROM parent;
DROP TABLE parent;
ALTER TABLE parent_new RENAME TO parent;
";

fn project() -> Project {
    let p = Project::new();
    p.fleet("defaults: { url: \"sqlite://data/{id}.db\" }\ntenants:\n  - { id: acme }\n");
    p.migration("0001_schema.up.sql", SCHEMA)
        .migration("0002_rows.up.sql", ROWS)
        .migration("0003_rebuild_parent.up.sql", REBUILD);
    p
}

fn count(p: &Project, sql: &str) -> Vec<String> {
    sqlite_column(&p.db_path("acme"), sql)
}

#[test]
fn a_table_rebuild_keeps_the_child_rows() {
    for tx in ["per-migration", "per-tenant"] {
        let p = project();
        let run = p.run(&["up", "--to", "2"]);
        assert_eq!(run.code, 0, "{tx}: {}", run.all());
        let run = p.run(&["up", "--tx", tx]);
        assert_eq!(run.code, 0, "{tx}: {}", run.all());
        assert_eq!(
            count(&p, "SELECT count(*) || '' FROM child"),
            ["3"],
            "{tx}: child rows were lost"
        );
        assert_eq!(
            count(
                &p,
                "SELECT group_concat(name || ':' || coalesce(note, '-')) FROM parent ORDER BY id"
            ),
            ["a:-,b:-"],
            "{tx}"
        );
        assert_eq!(
            count(&p, "SELECT max(CAST(version AS INTEGER)) || '' FROM fleetmig_history"),
            ["3"],
            "{tx}"
        );
        // The references still hold after the rename: the child table points at the new parent.
        assert!(count(&p, "SELECT sql FROM sqlite_master WHERE name = 'child'")[0].contains("REFERENCES parent"));
    }
}

#[test]
fn a_migration_that_leaves_rows_pointing_nowhere_does_not_commit() {
    for tx in ["per-migration", "per-tenant"] {
        let p = project();
        p.remove_migration("0003_rebuild_parent.up.sql");
        p.migration(
            "0003_orphans.up.sql",
            "CREATE TABLE audit (id INTEGER PRIMARY KEY);\nINSERT INTO child VALUES (13, 99);\n",
        );
        assert_eq!(p.run(&["up", "--to", "2"]).code, 0);
        let run = p.run(&["up", "--tx", tx]);
        assert_eq!(run.code, 1, "{tx}: {}", run.all());
        assert!(
            run.all().contains("foreign key") && run.all().contains("child"),
            "{tx}: the error names the check and the table:\n{}",
            run.all()
        );
        assert!(run.all().contains("0003_orphans"), "{tx}: {}", run.all());
        assert_eq!(
            count(&p, "SELECT max(CAST(version AS INTEGER)) || '' FROM fleetmig_history"),
            ["2"],
            "{tx}"
        );
        assert_eq!(count(&p, "SELECT count(*) || '' FROM child"), ["3"], "{tx}");
        assert_eq!(
            count(&p, "SELECT count(*) || '' FROM sqlite_master WHERE name = 'audit'"),
            ["0"],
            "{tx}: nothing of the migration stays"
        );
    }
}

#[test]
fn rows_that_pointed_nowhere_before_the_run_do_not_fail_it() {
    let p = project();
    assert_eq!(p.run(&["up", "--to", "2"]).code, 0);
    // The application runs with SQLite's default, foreign keys off, and left an orphan.
    sqlite_exec(
        &p.db_path("acme"),
        "PRAGMA foreign_keys = OFF; INSERT INTO child VALUES (13, 99)",
    );
    let run = p.run(&["up"]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert_eq!(count(&p, "SELECT count(*) || '' FROM child"), ["4"]);
    assert_eq!(
        count(&p, "SELECT max(CAST(version AS INTEGER)) || '' FROM fleetmig_history"),
        ["3"]
    );
}
