//! What a run does to databases, behind one trait: the dispatcher decides, [`Work`] acts.
//! The run's own implementation, [`Databases`], goes through the run's connector; the
//! dispatcher's tests give it one of their own, so every stop, limit, gate and rollback
//! decision is tested without a database.

use std::collections::HashMap;
use std::time::Duration;

use crate::driver::connect::{Access, Connector, Limits};
use crate::exec::run::{RunContext, inspect_all};
use crate::exec::tenant::{self, Job};
use crate::model::db_error::{DbError, ErrorKind};
use crate::model::fleet::{Tenant, TenantId};
use crate::model::migration::Applied;
use crate::model::run::TenantReport;

/// Why a tenant's history could not be read once its abandoned session ended.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Unread {
    #[error("{0}")]
    Db(#[from] DbError),
    #[error("no answer within {0:?}")]
    NoAnswer(Duration),
}

/// The per-tenant work of a run. Implementations never fail the run: whatever happens to a
/// tenant is in what they return.
pub(crate) trait Work: Sync {
    /// Runs `job` on `t`, whose start the dispatcher has announced.
    async fn run(&self, t: &Tenant, job: Job<'_>) -> TenantReport;

    /// The history rows of those `tenants` that a few queries per pooled host can read, and
    /// of SQLite files read-only where no one holds them; a tenant not in the answer takes
    /// the ordinary path.
    async fn survey(&self, tenants: &[&Tenant]) -> HashMap<TenantId, Vec<Applied>>;

    /// Runs the `--check` query on `t`.
    async fn check(&self, t: &Tenant, sql: &str) -> Result<bool, DbError>;

    /// Each tenant's history once the sessions abandoned on it have ended, each within
    /// `within`.
    async fn settled(&self, tenants: &[&Tenant], within: Duration) -> Vec<Result<Vec<Applied>, Unread>>;

    /// Each tenant's history, read without changing anything, in the order given.
    async fn read(&self, tenants: &[&Tenant]) -> Vec<Result<Vec<Applied>, DbError>>;
}

/// The run's databases, through its connector.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Databases<'r, 'a> {
    pub ctx: &'r RunContext<'a>,
}

impl Work for Databases<'_, '_> {
    async fn run(&self, t: &Tenant, job: Job<'_>) -> TenantReport {
        tenant::run_announced(t, &self.ctx.connector, job).await
    }

    async fn survey(&self, tenants: &[&Tenant]) -> HashMap<TenantId, Vec<Applied>> {
        let connector = &self.ctx.connector;
        let mut rows = connector.survey(tenants).await;
        rows.extend(connector.survey_files(tenants, self.ctx.concurrency).await);
        rows
    }

    async fn check(&self, t: &Tenant, sql: &str) -> Result<bool, DbError> {
        let mut session = self.ctx.connector.open(t, Access::Read).await?;
        let result = session.check(sql).await;
        session.release().await;
        result
    }

    /// Read under the tenant's lock: the abandoned session holds it until the database
    /// has finished with it (committed or rolled back). All at once, in pools of their
    /// own: the run's may hold connections that no longer answer.
    async fn settled(&self, tenants: &[&Tenant], within: Duration) -> Vec<Result<Vec<Applied>, Unread>> {
        if tenants.is_empty() {
            return Vec::new();
        }
        let deadline = tokio::time::Instant::now() + within;
        let limits = Limits {
            connect_timeout: within,
            lock_wait: within,
            lock_budget: within,
            ..self.ctx.connector.limits.clone()
        };
        let connector = Connector::new(self.ctx.fleet, limits).versions_like(&self.ctx.connector);
        let reads = tenants.iter().map(|t| {
            let connector = &connector;
            async move {
                let read = tokio::time::timeout_at(deadline, async {
                    let mut session = connector.open(t, Access::Write).await?;
                    let rows = session.applied(connector.style(t.engine)).await;
                    Ok::<_, DbError>((session, rows))
                })
                .await;
                match read {
                    Ok(Ok((session, rows))) => {
                        let _ = tokio::time::timeout_at(deadline, session.release()).await;
                        rows.map_err(Unread::Db)
                    }
                    Ok(Err(e)) => Err(Unread::Db(e)),
                    Err(_) => Err(Unread::NoAnswer(within)),
                }
            }
        });
        let out = futures::future::join_all(reads).await;
        let _ = tokio::time::timeout(Duration::from_millis(500), connector.close()).await;
        out
    }

    async fn read(&self, tenants: &[&Tenant]) -> Vec<Result<Vec<Applied>, DbError>> {
        inspect_all(self.ctx, tenants)
            .await
            .into_iter()
            .map(|(_, rows)| rows)
            .collect()
    }
}

/// Runs the `--check` query once on `t` before any wave, so that a query that cannot run
/// stops the run before anything changes, not after the canaries. Its answer does not
/// matter (nothing has been migrated yet). Not an error here: a tenant that cannot be
/// reached (the run's own rules deal with it), and a query naming a table, column or
/// function that does not exist, which a pending migration may create; nor a query still
/// running after [`REHEARSAL`] (a database refuses a query it cannot parse at once).
/// On PostgreSQL the query also runs under a `statement_timeout` of [`REHEARSAL`], so one
/// given up on does not run on in the server (nor hold up the pooled session it ran in:
/// the rehearsal has a pool of its own).
pub async fn rehearse_check(ctx: &RunContext<'_>, t: &Tenant, sql: &str) -> Result<(), DbError> {
    let mut limits = ctx.connector.limits.clone();
    if limits.statement_timeout.is_zero() || limits.statement_timeout > REHEARSAL {
        limits.statement_timeout = REHEARSAL;
    }
    let connector = Connector::new(ctx.fleet, limits).versions_like(&ctx.connector);
    let rehearsal = async {
        let Ok(mut session) = connector.open(t, Access::Read).await else {
            return Ok(());
        };
        let result = session.check(sql).await;
        session.release().await;
        match result {
            // 57014: cancelled by the statement timeout, a query too slow, not one that cannot run.
            Err(e) if e.kind == ErrorKind::Sql && !e.is_missing_object() && e.code.as_deref() != Some("57014") => {
                Err(e)
            }
            _ => Ok(()),
        }
    };
    tokio::time::timeout(REHEARSAL, rehearsal).await.unwrap_or(Ok(()))
}

/// How long the `--check` query is given before wave 1 (see [`rehearse_check`]).
pub const REHEARSAL: Duration = Duration::from_secs(2);
