//! The ledger under faults: refusals that leave no run behind, a resume that keeps the
//! run's policy, a ledger that goes away mid-run (PostgreSQL outage, SQLite file deleted),
//! ledgers that are not ledgers, and unreachable ledgers bounded by `--connect-timeout`.

use crate::support::{self, My, Pg, Project, sqlite_column};

/// A MySQL tenant under `--tx per-tenant` is refused before the ledger hears of the run:
/// no run is recorded, so `--resume` finds nothing to run.
#[test]
fn a_refused_per_tenant_run_leaves_no_run_for_resume() {
    let Some(my) = My::create("txref") else { return };
    let p = Project::new();
    p.fleet(&format!(
        "defaults: {{ url: \"{}\", database: \"{}_{{id}}\" }}\ntenants:\n  - {{ id: acme }}\n",
        support::MYSQL_ADMIN,
        my.prefix
    ));
    p.migration("0001_t.up.sql", "CREATE TABLE t (id INT);");
    let refused = p.run(&["up", "--tx", "per-tenant"]);
    assert_eq!(refused.code, 2, "{refused:#?}");
    assert!(refused.stderr.contains("--tx per-tenant"), "{}", refused.stderr);
    let ledger = p.path().join("tenants.ledger.db");
    if ledger.exists() {
        assert_eq!(
            sqlite_column(&ledger, "SELECT CAST(COUNT(*) AS TEXT) FROM fleetmig_runs"),
            ["0"],
            "a refused run is in the ledger"
        );
    }
    let resumed = p.run(&["up", "--resume"]);
    assert_eq!(resumed.code, 2, "{resumed:#?}");
    assert!(resumed.stderr.contains("no unfinished run"), "{}", resumed.stderr);
    let dbs = my.column(&format!(
        "SELECT CAST(SCHEMA_NAME AS CHAR) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME LIKE '{}%'",
        my.prefix
    ));
    assert!(dbs.is_empty(), "the refused run touched MySQL: {dbs:?}");
}

/// The same for a shared run: refused before it is created in the PostgreSQL ledger.
#[test]
fn a_refused_shared_per_tenant_run_is_not_created_in_the_ledger() {
    let Some(my) = My::create("txshr") else { return };
    let Some(ledger) = Pg::create("txshr") else { return };
    let p = Project::new();
    p.fleet(&format!(
        "defaults: {{ url: \"{}\", database: \"{}_{{id}}\" }}\ntenants:\n  - {{ id: acme }}\n",
        support::MYSQL_ADMIN,
        my.prefix
    ));
    p.migration("0001_t.up.sql", "CREATE TABLE t (id INT);");
    let refused = p.run(&["up", "--shared", "--ledger", &ledger.url(), "--tx", "per-tenant"]);
    assert_eq!(refused.code, 2, "{refused:#?}");
    assert!(refused.stderr.contains("--tx per-tenant"), "{}", refused.stderr);
    let runs = ledger.column("SELECT COUNT(*)::text FROM pg_catalog.pg_class WHERE oid = to_regclass('fleetmig_runs')");
    if runs == ["1"] {
        assert_eq!(ledger.column("SELECT COUNT(*)::text FROM fleetmig_runs"), ["0"]);
    }
}
