//! The ledger's tables, and the creation of a new SQLite ledger whole.

use std::path::Path;
use std::time::Duration;

use sqlx::{AnyConnection, Connection, Executor};

use super::handle::Fault;

pub(super) const SCHEMA: &str = "\
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

/// The tables a fleetmig ledger has from its creation on.
pub(super) const TABLES: &str = "('fleetmig_runs', 'fleetmig_run_tenants')";

/// Creates a new SQLite ledger at `path`, whole: its tables are written to a side file,
/// which is then linked to `path` only if nothing is there yet (another runner may have
/// created the ledger at the same moment: then that one is used).
pub(super) async fn create_sqlite(path: &Path, limit: Duration) -> Result<(), Fault> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| Fault::Lost(format!("creating its folder: {e}")))?;
    }
    let name = path.file_name().map_or("ledger".into(), |n| n.to_string_lossy());
    let side = path.with_file_name(format!(".{name}.{}.new", std::process::id()));
    let _ = std::fs::remove_file(&side);
    let write = async {
        let mut conn = AnyConnection::connect(&format!("sqlite://{}?mode=rwc", side.display())).await?;
        conn.execute(SCHEMA).await?;
        conn.close().await
    };
    let result = match tokio::time::timeout(limit, write).await {
        Ok(Ok(())) => match std::fs::hard_link(&side, path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
            // A file system without hard links: a rename, which a racing creator could
            // overwrite with its own new (and equally empty) ledger.
            Err(_) => std::fs::rename(&side, path).map_err(|e| Fault::Lost(format!("moving it into place: {e}"))),
        },
        Ok(Err(e)) => Err(Fault::Sql(e)),
        Err(_) => Err(Fault::Timeout(limit)),
    };
    let _ = std::fs::remove_file(&side);
    result
}
