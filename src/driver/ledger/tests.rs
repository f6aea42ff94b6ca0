//! The ledger's parts on real SQLite files in a temp dir: schema upgrades from a ledger
//! made before versions were kept, and records that do not read.

use std::error::Error as _;
use std::path::Path;
use std::time::Duration;

use sqlx::{AnyConnection, Connection, Executor};

use super::error::{Cause, LedgerError, Undecodable};
use super::schema::VERSION;
use super::status::sqlite_url;
use super::{Ledger, RunPlan};
use crate::model::migration::Version;

const LIMIT: Duration = Duration::from_secs(5);

/// The tables as the fleetmig before schema versions made them, with one finished run.
const OLD_LEDGER: &str = "\
CREATE TABLE IF NOT EXISTS fleetmig_runs (
    run_id TEXT PRIMARY KEY, command TEXT NOT NULL, target BIGINT, runner TEXT NOT NULL,
    fleet TEXT NOT NULL, started_ms BIGINT NOT NULL, finished_ms BIGINT, stop_reason TEXT,
    plan TEXT NOT NULL, report TEXT
);
CREATE TABLE IF NOT EXISTS fleetmig_run_tenants (
    run_id TEXT NOT NULL, tenant TEXT NOT NULL, wave BIGINT NOT NULL, state TEXT NOT NULL,
    start_version BIGINT, final_version BIGINT, steps TEXT, error TEXT, updated_ms BIGINT NOT NULL,
    PRIMARY KEY (run_id, tenant)
);
INSERT INTO fleetmig_runs VALUES ('old-run', 'up', 2, 'me@here pid 1', 'tenants.yaml', 1000, 2000, 'completed',
    '{\"command\":\"up\",\"target\":2,\"waves\":[[\"a\",\"b\"]],\"canary_waves\":[]}', NULL);
INSERT INTO fleetmig_run_tenants VALUES ('old-run', 'a', 1, 'succeeded', 0, 2, '[]', NULL, 2000);
INSERT INTO fleetmig_run_tenants VALUES ('old-run', 'b', 1, 'failed', 0, 1, '[]', 'boom', 2000);";

async fn sql(path: &Path, statements: &str) {
    sqlx::any::install_default_drivers();
    let mut conn = AnyConnection::connect(&format!("sqlite://{}?mode=rwc", path.display()))
        .await
        .unwrap();
    conn.execute(statements).await.unwrap();
    conn.close().await.unwrap();
}

async fn scalar(path: &Path, query: &str) -> i64 {
    let mut conn = AnyConnection::connect(&format!("sqlite://{}?mode=ro", path.display()))
        .await
        .unwrap();
    let n = sqlx::query_scalar(query).fetch_one(&mut conn).await.unwrap();
    conn.close().await.unwrap();
    n
}

async fn open(path: &Path) -> Result<Ledger, LedgerError> {
    Ledger::open(&sqlite_url(path), LIMIT).await
}

fn plan() -> RunPlan {
    RunPlan {
        command: "up".into(),
        target: Version::int(1),
        waves: vec![vec!["a".into()]],
        canary_waves: vec![],
        policy: None,
        steps: None,
        source: None,
    }
}

#[tokio::test]
async fn a_ledger_made_before_versions_were_kept_is_upgraded_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.db");
    sql(&path, OLD_LEDGER).await;
    let ledger = open(&path).await.unwrap();
    let runs = ledger.runs(10).await.unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!((runs[0].tenants, runs[0].succeeded, runs[0].failed), (2, 1, 1));
    ledger.close().await;
    assert_eq!(
        scalar(&path, "SELECT MAX(version) FROM fleetmig_ledger_version").await,
        VERSION
    );
    let shared_columns = "SELECT COUNT(*) FROM pragma_table_info('fleetmig_run_tenants') \
                          WHERE name IN ('owner', 'lease_until_ms', 'claimed_ms', 'failure')";
    assert_eq!(scalar(&path, shared_columns).await, 4);
    open(&path).await.unwrap().close().await;
    assert_eq!(
        scalar(&path, "SELECT COUNT(*) FROM fleetmig_ledger_version").await,
        VERSION,
        "each upgrade is recorded once"
    );
}

#[tokio::test]
async fn a_new_ledger_is_made_at_the_current_version() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("new.db");
    let ledger = open(&path).await.unwrap();
    ledger.begin_run("r1", "tenants.yaml", &plan()).await.unwrap();
    assert_eq!(ledger.plan("r1").await.unwrap(), Some(plan()));
    ledger.close().await;
    assert_eq!(
        scalar(&path, "SELECT MAX(version) FROM fleetmig_ledger_version").await,
        VERSION
    );
}

#[tokio::test]
async fn a_ledger_from_a_newer_fleetmig_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("newer.db");
    open(&path).await.unwrap().close().await;
    sql(
        &path,
        &format!("INSERT INTO fleetmig_ledger_version VALUES ({}, 0)", VERSION + 1),
    )
    .await;
    let e = open(&path).await.unwrap_err().to_string();
    assert!(
        e.contains(&format!("at version {}, from a newer fleetmig", VERSION + 1)),
        "{e}"
    );
}

#[tokio::test]
async fn records_that_do_not_read_are_errors_naming_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.db");
    let ledger = open(&path).await.unwrap();
    ledger.begin_run("r1", "tenants.yaml", &plan()).await.unwrap();
    sql(&path, "UPDATE fleetmig_runs SET report = '{\"run_id\": 7}'").await;
    let e = ledger.report("r1").await.unwrap_err();
    let text = e.to_string();
    assert!(
        text.contains("reading a run's report: run `r1`: its report cannot be read"),
        "{text}"
    );
    let Some(Cause::Undecodable { source, .. }) = e.source().and_then(|s| s.downcast_ref::<Cause>()) else {
        panic!("no cause kept: {e:?}");
    };
    assert!(
        matches!(source, Undecodable::Json(_)),
        "the JSON error is kept: {source:?}"
    );

    sql(&path, "UPDATE fleetmig_runs SET plan = 'not json'").await;
    let e = ledger.plan("r1").await.unwrap_err().to_string();
    assert!(
        e.contains("reading a run's plan: run `r1`: its plan cannot be read"),
        "{e}"
    );
    let e = ledger.runs(10).await.unwrap_err().to_string();
    assert!(e.contains("listing runs: run `r1`: its plan cannot be read"), "{e}");

    sql(
        &path,
        &format!(
            "UPDATE fleetmig_runs SET plan = '{}'; UPDATE fleetmig_run_tenants SET state = 'done'",
            serde_json::to_string(&plan()).unwrap()
        ),
    )
    .await;
    let e = ledger.runs(10).await.unwrap_err().to_string();
    assert!(
        e.contains("run `r1`: its tenants' states cannot be read (unknown value `done`)"),
        "{e}"
    );
    let e = ledger.tenants("r1").await.unwrap_err().to_string();
    assert!(e.contains("run `r1`: its tenant `a`'s state cannot be read"), "{e}");
    ledger.close().await;
}
