//! fleetmig beside the real migration tools it reads the folders and tables of: the same
//! files give the same schema, and tenants the tool migrated are adopted with nothing run
//! twice. dbmate (installed from npm by CI) on SQLite files and PostgreSQL databases.

use std::path::Path;

use crate::support::{Pg, Project, run_tool, sqlite_column, stock_tool};

/// A project whose `migrations/` is a copy of the dbmate fixture set, read as dbmate's.
fn dbmate_project(tenants: &str) -> Project {
    let p = Project::new();
    std::fs::create_dir_all(p.path().join("data")).unwrap();
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/layouts/dbmate");
    for entry in std::fs::read_dir(fixture).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), p.path().join("migrations").join(entry.file_name())).unwrap();
    }
    p.fleet(&format!(
        "migrations: {{ path: migrations, layout: dbmate }}\ntenants:\n{tenants}"
    ));
    p
}

const NEXT: &str =
    "-- migrate:up\nCREATE TABLE bios (id INTEGER PRIMARY KEY, body TEXT);\n\n-- migrate:down\nDROP TABLE bios;\n";

/// dbmate migrates one tenant, fleetmig the other; then fleetmig adopts dbmate's and
/// runs only what comes next, once on each.
fn same_schema_then_adopt(p: &Project, dbmate: &Path, url: &str, catalog: &dyn Fn(&str) -> Vec<String>) {
    let dir = p.path().join("migrations");
    let dir = dir.to_str().unwrap();
    run_tool(dbmate, &["--url", url, "-d", dir, "--no-dump-schema", "up"]);
    let ours = p.run(&["up", "--select", "id=ours"]);
    assert_eq!(ours.code, 0, "{}", ours.all());
    let stock = catalog("stock");
    assert!(!stock.is_empty());
    assert_eq!(catalog("ours"), stock, "the same files, another schema");

    let adopt = p.run(&["adopt", "--from", "dbmate", "--select", "id=stock"]);
    assert_eq!(adopt.code, 0, "{}", adopt.all());
    let status = p.run(&["status", "--format", "json"]);
    assert_eq!(status.code, 0, "{}", status.all());
    assert!(p.run(&["up"]).stdout.contains("Nothing to do"));

    std::fs::write(p.path().join("migrations/20170101000000_bios.sql"), NEXT).unwrap();
    let next = p.run(&["up"]);
    assert_eq!(next.code, 0, "{}", next.all());
    assert!(next.stdout.contains("2 changed"), "{}", next.all());
    assert_eq!(catalog("ours"), catalog("stock"));
    // dbmate, not told, sees its own table one short.
    let seen = run_tool(dbmate, &["--url", url, "-d", dir, "--no-dump-schema", "status"]);
    assert!(seen.contains("Pending: 1"), "{seen}");
}

#[test]
fn dbmate_and_fleetmig_agree_on_sqlite_files() {
    let Some(dbmate) = stock_tool("dbmate") else { return };
    let p = dbmate_project(
        "  - { id: stock, url: \"sqlite://data/stock.db\" }\n  - { id: ours, url: \"sqlite://data/ours.db\" }\n",
    );
    let url = format!("sqlite:{}", p.db_path("stock").display());
    same_schema_then_adopt(&p, &dbmate, &url, &|id| {
        sqlite_column(
            &p.db_path(id),
            "SELECT type || ' ' || name || ': ' || sql FROM sqlite_master \
             WHERE name NOT LIKE 'fleetmig%' AND name <> 'schema_migrations' AND name NOT LIKE 'sqlite_%' ORDER BY name",
        )
    });
}

#[test]
fn dbmate_and_fleetmig_agree_on_postgres_databases() {
    let Some(dbmate) = stock_tool("dbmate") else { return };
    let Some(stock) = Pg::create("dbmate_stock") else {
        return;
    };
    let Some(ours) = Pg::create("dbmate_ours") else { return };
    let p = dbmate_project(&format!(
        "  - {{ id: stock, url: \"{}\" }}\n  - {{ id: ours, url: \"{}\" }}\n",
        stock.url(),
        ours.url()
    ));
    let url = format!("{}?sslmode=disable", stock.url());
    let catalog = |id: &str| {
        let db = if id == "stock" { &stock } else { &ours };
        let mut rows = db.column(
            "SELECT table_name || '.' || column_name || ' ' || data_type || ' ' || is_nullable \
             FROM information_schema.columns WHERE table_schema = 'public' \
             AND table_name NOT LIKE 'fleetmig%' AND table_name <> 'schema_migrations'",
        );
        rows.extend(db.column(
            "SELECT indexdef FROM pg_indexes WHERE schemaname = 'public' \
             AND tablename NOT LIKE 'fleetmig%' AND tablename <> 'schema_migrations'",
        ));
        rows.sort();
        rows
    };
    same_schema_then_adopt(&p, &dbmate, &url, &catalog);
}
