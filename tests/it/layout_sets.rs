//! The layout fixture sets in `tests/fixtures/layouts/`, written for this project with the
//! traits real histories have (diesel's three version styles, `metadata.toml`, a loose
//! `.sql` and a README, a folder name with spaces, blank and comment-only downs; Flyway's
//! 1.2 and 1.10 with undo scripts; dbmate's `transaction:false`; sqlx's one-way files),
//! each run on SQLite file tenants, PostgreSQL schema tenants and MariaDB database tenants:
//! up, a no-op up, down to its oldest reversible point, up again; the schema after the
//! second up is the schema after the first.

use std::path::{Path, PathBuf};

use crate::support::{self, Project, sqlite_column};

/// Each set, and the version `down --to` takes it to: the oldest point its downs reach.
const SETS: [(&str, Option<&str>); 4] = [
    ("diesel", Some("00000000000000")),
    ("flyway", Some("1.1")),
    ("dbmate", Some("20151129054100")),
    ("sqlx-simple", None),
];

fn fixture(layout: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/layouts")
        .join(layout)
}

fn run_ok(p: &Project, args: &[&str], what: &str) -> String {
    let run = p.run(args);
    assert_eq!(run.code, 0, "{what}: {args:?}: {}", run.all());
    run.all()
}

/// up, no-op up, down to `oldest`, up again; the catalog (tables and columns, fleetmig's
/// own left out) read by `catalog` after each up.
fn cycle(p: &Project, layout: &str, oldest: Option<&str>, catalog: &dyn Fn() -> Vec<String>) {
    let what = format!("{layout} on {}", p.path().display());
    run_ok(p, &["up"], &what);
    let first = catalog();
    assert!(!first.is_empty(), "{what}: nothing was created");
    let noop = run_ok(p, &["up"], &what);
    assert!(noop.contains("Nothing to do"), "{what}: {noop}");
    match oldest {
        Some(v) => {
            run_ok(p, &["down", "--to", v], &what);
            assert_ne!(catalog(), first, "{what}: the down changed nothing");
        }
        None => {
            let refused = p.run(&["down", "--steps", "1"]);
            assert_eq!(refused.code, 2, "{what}: one-way migrations: {}", refused.all());
        }
    }
    run_ok(p, &["up"], &what);
    assert_eq!(catalog(), first, "{what}: up again left another schema");
}

fn project(layout: &str, fleet: &str) -> Project {
    let p = Project::new();
    p.fleet(&format!(
        "migrations: {{ path: \"{}\", layout: {layout} }}\n{fleet}",
        fixture(layout).display()
    ));
    p
}

#[test]
fn every_layout_set_cycles_on_sqlite_file_tenants() {
    for (layout, oldest) in SETS {
        let p = project(
            layout,
            "defaults: { url: \"sqlite://data/{id}.db\" }\ntenants:\n  - { id: acme }\n  - { id: globex }\n",
        );
        std::fs::create_dir_all(p.path().join("data")).unwrap();
        let db = p.db_path("globex");
        cycle(&p, layout, oldest, &|| {
            sqlite_column(
                &db,
                "SELECT m.name || '.' || c.name FROM sqlite_master m, pragma_table_info(m.name) c \
                 WHERE m.type = 'table' AND m.name NOT LIKE 'fleetmig%' ORDER BY 1",
            )
        });
    }
}

#[test]
fn every_layout_set_cycles_on_postgres_schema_tenants() {
    let Some(pg) = support::Pg::create("sets") else {
        return;
    };
    for (layout, oldest) in SETS {
        let prefix = layout.replace('-', "_");
        let p = project(
            layout,
            &format!(
                "defaults: {{ url: \"{}\", schema: \"{prefix}_{{id}}\" }}\ntenants:\n  - {{ id: acme }}\n  - {{ id: globex }}\n",
                pg.url()
            ),
        );
        cycle(&p, layout, oldest, &|| {
            pg.column(&format!(
                "SELECT table_name || '.' || column_name || ' ' || data_type FROM information_schema.columns \
                 WHERE table_schema = '{prefix}_globex' AND table_name NOT LIKE 'fleetmig%' ORDER BY 1"
            ))
        });
    }
}

#[test]
fn every_layout_set_cycles_on_mariadb_database_tenants() {
    let Some(my) = support::My::create("sets") else {
        return;
    };
    for (layout, oldest) in SETS {
        let prefix = format!("{}_{}", my.prefix, layout.replace('-', "_"));
        let p = project(
            layout,
            &format!(
                "defaults: {{ url: \"{}\", database: \"{prefix}_{{id}}\" }}\ntenants:\n  - {{ id: acme }}\n",
                support::MYSQL_ADMIN
            ),
        );
        cycle(&p, layout, oldest, &|| {
            my.column(&format!(
                "SELECT CONCAT(TABLE_NAME, '.', COLUMN_NAME, ' ', DATA_TYPE) FROM information_schema.COLUMNS \
                 WHERE TABLE_SCHEMA = '{prefix}_acme' AND TABLE_NAME NOT LIKE 'fleetmig%' ORDER BY 1"
            ))
        });
    }
}

/// diesel on SQLite, as real SQLite histories do it: a table rebuild (create new, copy,
/// drop old, rename) under a table whose rows point at it with ON DELETE CASCADE. The
/// children survive the up, the down and the up again.
#[test]
fn a_sqlite_table_rebuild_under_cascading_children_keeps_them() {
    let p = Project::new();
    p.fleet(&format!(
        "migrations: {{ path: \"{}\", layout: diesel }}\n\
         defaults: {{ url: \"sqlite://data/{{id}}.db\" }}\ntenants:\n  - {{ id: acme }}\n",
        fixture("diesel-sqlite").display()
    ));
    std::fs::create_dir_all(p.path().join("data")).unwrap();
    let db = p.db_path("acme");
    let members = || sqlite_column(&db, "SELECT CAST(count(*) AS TEXT) FROM members");
    let catalog = || {
        sqlite_column(
            &db,
            "SELECT m.name || '.' || c.name FROM sqlite_master m, pragma_table_info(m.name) c \
             WHERE m.type = 'table' AND m.name NOT LIKE 'fleetmig%' ORDER BY 1",
        )
    };
    cycle(&p, "diesel-sqlite", Some("20200101000000"), &|| {
        let mut rows = catalog();
        rows.extend(members());
        rows
    });
    assert_eq!(members(), ["3"]);
    assert!(catalog().contains(&"orgs.plan".to_owned()));
}

/// PostgreSQL schema tenants whose migrations use an extension's type installed once in
/// `public` (citext), found through the fleet's `search_path`.
#[test]
fn a_set_using_an_extension_type_in_public_cycles_on_schema_tenants() {
    let Some(pg) = support::Pg::create("citext") else {
        return;
    };
    pg.exec("CREATE EXTENSION citext");
    let p = Project::new();
    p.fleet(&format!(
        "migrations: {{ path: \"{}\", layout: flyway }}\n\
         defaults: {{ url: \"{}\", schema: \"ci_{{id}}\", search_path: \"{{schema}}, public\" }}\n\
         tenants:\n  - {{ id: acme }}\n  - {{ id: globex }}\n",
        fixture("flyway-citext").display(),
        pg.url()
    ));
    cycle(&p, "flyway-citext", Some("1"), &|| {
        pg.column(
            "SELECT table_name || '.' || column_name || ' ' || udt_schema || '.' || udt_name \
             FROM information_schema.columns WHERE table_schema = 'ci_globex' AND table_name NOT LIKE 'fleetmig%' ORDER BY 1",
        )
    });
    assert_eq!(
        pg.column("SELECT udt_schema || '.' || udt_name FROM information_schema.columns WHERE table_schema = 'ci_acme' AND column_name = 'email'"),
        ["public.citext"]
    );
}
