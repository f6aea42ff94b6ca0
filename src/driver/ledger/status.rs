//! Reading the run ledger without changing it, for `status`: a missing ledger is no ledger
//! (nothing is created), and a SQLite ledger is opened read-only.

use std::path::{Path, PathBuf};
use std::time::Duration;

use sqlx::any::install_default_drivers;
use sqlx::{AnyConnection, Connection, Row};

use super::error::Cause;
use super::lease::read_state;
use super::{LedgerError, MIN_ANSWER, default_ledger_path};
use crate::model::db_error::{DbError, ErrorKind};
use crate::model::fleet::Fleet;
use crate::model::secret::DbUrl;
use crate::plan::status::LedgerRow;

/// Where the fleet's ledger is: the fleet file's `ledger:`, else a SQLite file beside the
/// fleet file. (`--ledger` is the command line's, read by the app.)
pub fn fleet_ledger_url(fleet: &Fleet) -> DbUrl {
    match &fleet.ledger {
        Some(url) => url.clone(),
        None => sqlite_url(&default_ledger_path(&fleet.path)),
    }
}

/// A `sqlite://` URL for a file, made absolute.
pub fn sqlite_url(path: &Path) -> DbUrl {
    let path = std::path::absolute(path).unwrap_or_else(|_| path.to_owned());
    let mut url = url::Url::parse("sqlite://").expect("a constant URL");
    url.set_path(&path.to_string_lossy());
    DbUrl::new(url)
}

/// Rows of `fleetmig_run_tenants` newer than each tenant's last success: the only ones
/// [`crate::plan::status::ledger_notes`] needs, read in one pass over the table.
const STREAKS: &str = "SELECT t.tenant, t.run_id, t.state, t.error, t.updated_ms FROM fleetmig_run_tenants t \
     LEFT JOIN (SELECT tenant, MAX(updated_ms) AS at FROM fleetmig_run_tenants WHERE state = 'succeeded' \
     GROUP BY tenant) ok ON ok.tenant = t.tenant \
     WHERE t.state <> 'succeeded' AND (ok.at IS NULL OR t.updated_ms > ok.at)";

/// The ledger's rows for tenants since their last success. `Ok(None)` when there is no
/// ledger yet: no SQLite file, or a database without the ledger's tables.
/// Bounded: a ledger server must answer the connection within `connect` (the command's
/// `--connect-timeout`), the reads within it too but never less than [`MIN_ANSWER`], so a
/// silent ledger cannot hold up `status`.
pub async fn unsettled_rows(url: &DbUrl, connect: Duration) -> Result<Option<Vec<LedgerRow>>, LedgerError> {
    install_default_drivers();
    let answer = connect.max(MIN_ANSWER);
    let late = |op: &str, within: Duration| LedgerError {
        ledger: url.redacted(),
        op: op.into(),
        cause: Cause::Timeout(within),
    };
    let fail = |op: &str, e: sqlx::Error| LedgerError {
        ledger: url.redacted(),
        op: op.into(),
        cause: Cause::Unreachable(DbError::sqlx(ErrorKind::Unreachable, "", &e, url.password()).message),
    };
    let sqlite = url.scheme() == "sqlite";
    let (text, has_tables) = if sqlite {
        let path = PathBuf::from(url.url().path());
        if !path.is_file() {
            return Ok(None);
        }
        (
            format!("sqlite://{}?mode=ro", path.display()),
            "SELECT COUNT(*) FROM sqlite_master WHERE name = 'fleetmig_run_tenants'",
        )
    } else {
        (
            url.expose().to_owned(),
            "SELECT COUNT(*) FROM pg_catalog.pg_class WHERE oid = to_regclass('fleetmig_run_tenants')",
        )
    };
    let within = if sqlite { answer } else { connect };
    let mut conn = match tokio::time::timeout(within, AnyConnection::connect(&text)).await {
        Ok(conn) => conn.map_err(|e| fail("opening", e))?,
        Err(_) => return Err(late("opening", within)),
    };
    let read = async {
        let tables: i64 = sqlx::query_scalar(has_tables).fetch_one(&mut conn).await?;
        if tables == 0 {
            return Ok(None);
        }
        let rows = sqlx::query(STREAKS).fetch_all(&mut conn).await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get(0)?,
                    r.try_get(1)?,
                    r.try_get(2)?,
                    r.try_get(3)?,
                    r.try_get(4)?,
                ))
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()
            .map(Some)
    };
    let result = match tokio::time::timeout(answer, read).await {
        Ok(rows) => rows.map_err(|e| fail("reading tenants' last runs", e)),
        Err(_) => Err(late("reading tenants' last runs", answer)),
    };
    let _ = conn.close().await;
    let rows = result?.map(|rows| rows.into_iter().map(ledger_row).collect::<Result<Vec<_>, Cause>>());
    rows.transpose().map_err(|cause| LedgerError {
        ledger: url.redacted(),
        op: "reading tenants' last runs".into(),
        cause,
    })
}

/// A row as read, its state decoded: one no fleetmig writes is an error naming the run.
fn ledger_row(
    (tenant, run_id, state, error, updated_ms): (String, String, String, Option<String>, i64),
) -> Result<LedgerRow, Cause> {
    let state = read_state(&run_id, &format!("tenant `{tenant}`'s state"), &state)?;
    Ok(LedgerRow {
        tenant,
        run_id,
        state,
        error,
        updated_ms,
    })
}
