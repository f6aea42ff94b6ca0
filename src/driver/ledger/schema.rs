//! The ledger's tables: a recorded schema version and the ordered, numbered upgrades that
//! take a ledger from any earlier version (or none: a ledger made before versions were
//! kept) to this fleetmig's, each applied once, under a lock, in one transaction.

use std::path::Path;
use std::time::Duration;

use sqlx::{AnyConnection, Connection, Executor};

use super::error::Cause;

/// The schema version this fleetmig reads and writes.
pub(super) const VERSION: i64 = 3;

/// One step of the ledger's schema. SQLite and PostgreSQL both run DDL in a transaction,
/// so an upgrade and its version row commit together or not at all.
struct Upgrade {
    version: i64,
    sqlite: &'static str,
    postgres: &'static str,
}

/// The run and tenant tables, as every fleetmig has made them.
const TABLES_V1: &str = "\
CREATE TABLE IF NOT EXISTS fleetmig_runs (
    run_id TEXT PRIMARY KEY,
    command TEXT NOT NULL,
    target BIGINT,
    runner TEXT NOT NULL,
    fleet TEXT NOT NULL,
    started_ms BIGINT NOT NULL,
    finished_ms BIGINT,
    stop_reason TEXT,
    plan TEXT NOT NULL,
    report TEXT
);
CREATE TABLE IF NOT EXISTS fleetmig_run_tenants (
    run_id TEXT NOT NULL,
    tenant TEXT NOT NULL,
    wave BIGINT NOT NULL,
    state TEXT NOT NULL,
    start_version BIGINT,
    final_version BIGINT,
    steps TEXT,
    error TEXT,
    updated_ms BIGINT NOT NULL,
    PRIMARY KEY (run_id, tenant)
);";

/// In order; a ledger at version N gets every upgrade above N. `IF NOT EXISTS` only where
/// a ledger made before versions were kept may already hold the table or column (a
/// PostgreSQL ledger that ran a shared run got these columns then, some of them).
const UPGRADES: [Upgrade; 3] = [
    Upgrade {
        version: 1,
        sqlite: TABLES_V1,
        postgres: TABLES_V1,
    },
    Upgrade {
        version: 2,
        sqlite: "ALTER TABLE fleetmig_runs ADD COLUMN shared TEXT; \
                 ALTER TABLE fleetmig_runs ADD COLUMN shared_stop TEXT; \
                 ALTER TABLE fleetmig_run_tenants ADD COLUMN owner TEXT; \
                 ALTER TABLE fleetmig_run_tenants ADD COLUMN lease_until_ms BIGINT; \
                 ALTER TABLE fleetmig_run_tenants ADD COLUMN claimed_ms BIGINT; \
                 ALTER TABLE fleetmig_run_tenants ADD COLUMN failure TEXT;",
        postgres: "ALTER TABLE fleetmig_runs ADD COLUMN IF NOT EXISTS shared TEXT, \
                   ADD COLUMN IF NOT EXISTS shared_stop TEXT; \
                   ALTER TABLE fleetmig_run_tenants ADD COLUMN IF NOT EXISTS owner TEXT, \
                   ADD COLUMN IF NOT EXISTS lease_until_ms BIGINT, ADD COLUMN IF NOT EXISTS claimed_ms BIGINT, \
                   ADD COLUMN IF NOT EXISTS failure TEXT;",
    },
    // Migration versions as text (diesel's, Flyway's). SQLite cannot change a column's
    // type: its two tables are rebuilt, every row kept.
    Upgrade {
        version: 3,
        sqlite: "CREATE TABLE fleetmig_runs_v3 (run_id TEXT PRIMARY KEY, command TEXT NOT NULL, target TEXT, \
                 runner TEXT NOT NULL, fleet TEXT NOT NULL, started_ms BIGINT NOT NULL, finished_ms BIGINT, \
                 stop_reason TEXT, plan TEXT NOT NULL, report TEXT, shared TEXT, shared_stop TEXT); \
                 INSERT INTO fleetmig_runs_v3 SELECT run_id, command, CAST(target AS TEXT), runner, fleet, started_ms, \
                 finished_ms, stop_reason, plan, report, shared, shared_stop FROM fleetmig_runs; \
                 DROP TABLE fleetmig_runs; ALTER TABLE fleetmig_runs_v3 RENAME TO fleetmig_runs; \
                 CREATE TABLE fleetmig_run_tenants_v3 (run_id TEXT NOT NULL, tenant TEXT NOT NULL, wave BIGINT NOT NULL, \
                 state TEXT NOT NULL, start_version TEXT, final_version TEXT, steps TEXT, error TEXT, \
                 updated_ms BIGINT NOT NULL, owner TEXT, lease_until_ms BIGINT, claimed_ms BIGINT, failure TEXT, \
                 PRIMARY KEY (run_id, tenant)); \
                 INSERT INTO fleetmig_run_tenants_v3 SELECT run_id, tenant, wave, state, CAST(start_version AS TEXT), \
                 CAST(final_version AS TEXT), steps, error, updated_ms, owner, lease_until_ms, claimed_ms, failure \
                 FROM fleetmig_run_tenants; \
                 DROP TABLE fleetmig_run_tenants; ALTER TABLE fleetmig_run_tenants_v3 RENAME TO fleetmig_run_tenants;",
        postgres: "ALTER TABLE fleetmig_runs ALTER COLUMN target TYPE TEXT USING target::text; \
                   ALTER TABLE fleetmig_run_tenants ALTER COLUMN start_version TYPE TEXT USING start_version::text, \
                   ALTER COLUMN final_version TYPE TEXT USING final_version::text;",
    },
];

/// One row per upgrade applied: the ledger's version is the highest.
const VERSIONS: &str =
    "CREATE TABLE IF NOT EXISTS fleetmig_ledger_version (version BIGINT PRIMARY KEY, applied_ms BIGINT NOT NULL)";

/// The tables a fleetmig ledger has from its creation on.
pub(super) const TABLES: &str = "('fleetmig_runs', 'fleetmig_run_tenants')";

/// The engine a ledger lives in: the two speak different catalogs and locks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Engine {
    Sqlite,
    Postgres,
}

/// The ledger's schema version: 0 for a ledger made before versions were kept (or none).
async fn version(conn: &mut AnyConnection, engine: Engine) -> Result<i64, sqlx::Error> {
    let exists = match engine {
        Engine::Sqlite => {
            "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'fleetmig_ledger_version'"
        }
        Engine::Postgres => {
            "SELECT COUNT(*) FROM pg_catalog.pg_class WHERE oid = to_regclass('fleetmig_ledger_version')"
        }
    };
    let exists: i64 = sqlx::query_scalar(exists).fetch_one(&mut *conn).await?;
    if exists == 0 {
        return Ok(0);
    }
    sqlx::query_scalar("SELECT COALESCE(MAX(version), 0) FROM fleetmig_ledger_version")
        .fetch_one(&mut *conn)
        .await
}

/// Brings the ledger's tables to [`VERSION`]; nothing to do (and no lock taken) when they
/// are there. A ledger from a newer fleetmig is refused rather than written in a shape
/// this one does not know.
pub(super) async fn upgrade(conn: &mut AnyConnection, engine: Engine) -> Result<(), Cause> {
    let found = version(conn, engine).await?;
    if found == VERSION {
        return Ok(());
    }
    if found > VERSION {
        return Err(newer(found));
    }
    // Runners opening the same old ledger at once: the first upgrades it, the others wait
    // for its lock, then find it done.
    let lock = match engine {
        Engine::Sqlite => "BEGIN IMMEDIATE",
        Engine::Postgres => {
            "BEGIN; SELECT COUNT(*) FROM (SELECT pg_advisory_xact_lock(hashtext('fleetmig ledger ' || current_schema()))) l"
        }
    };
    conn.execute(lock).await?;
    match apply(conn, engine).await {
        Ok(()) => Ok(conn.execute("COMMIT").await.map(drop)?),
        Err(e) => {
            let _ = conn.execute("ROLLBACK").await;
            Err(e)
        }
    }
}

/// Under the lock: every upgrade the ledger lacks, and its version row.
async fn apply(conn: &mut AnyConnection, engine: Engine) -> Result<(), Cause> {
    let found = version(conn, engine).await?;
    if found > VERSION {
        return Err(newer(found));
    }
    conn.execute(VERSIONS).await?;
    for step in UPGRADES.iter().filter(|u| u.version > found) {
        let sql = match engine {
            Engine::Sqlite => step.sqlite,
            Engine::Postgres => step.postgres,
        };
        conn.execute(sql).await?;
        sqlx::query("INSERT INTO fleetmig_ledger_version (version, applied_ms) VALUES ($1, $2)")
            .bind(step.version)
            .bind(super::records::now_ms())
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

fn newer(found: i64) -> Cause {
    Cause::Refused(format!(
        "its tables are at version {found}, from a newer fleetmig (this one knows up to version {VERSION}): \
         use that fleetmig, or a newer one"
    ))
}

/// Creates a new SQLite ledger at `path`, whole: its tables are written to a side file,
/// which is then linked to `path` only if nothing is there yet (another runner may have
/// created the ledger at the same moment: then that one is used).
pub(super) async fn create_sqlite(path: &Path, limit: Duration) -> Result<(), Cause> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| Cause::Refused(format!("creating its folder: {e}")))?;
    }
    let name = path.file_name().map_or("ledger".into(), |n| n.to_string_lossy());
    let side = path.with_file_name(format!(".{name}.{}.new", std::process::id()));
    let _ = std::fs::remove_file(&side);
    let write = async {
        let mut conn = AnyConnection::connect(&format!("sqlite://{}?mode=rwc", side.display())).await?;
        upgrade(&mut conn, Engine::Sqlite).await?;
        Ok::<_, Cause>(conn.close().await?)
    };
    let result = match tokio::time::timeout(limit, write).await {
        Ok(Ok(())) => match std::fs::hard_link(&side, path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
            // A file system without hard links: a rename, which a racing creator could
            // overwrite with its own new (and equally empty) ledger.
            Err(_) => std::fs::rename(&side, path).map_err(|e| Cause::Refused(format!("moving it into place: {e}"))),
        },
        Ok(Err(e)) => Err(e),
        Err(_) => Err(Cause::Timeout(limit)),
    };
    let _ = std::fs::remove_file(&side);
    result
}
