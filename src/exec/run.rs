//! What a run's tenant tasks share: the context, per-host caps, and the read-only fan-out
//! used by `status` and `plan`.

use std::collections::HashMap;
use std::sync::Arc;

use futures::StreamExt;
use tokio::sync::Semaphore;

use crate::driver::connect::Connector;
use crate::driver::ledger::Ledger;
use crate::exec::tenant;
use crate::model::db_error::DbError;
use crate::model::fleet::{Fleet, Tenant};
use crate::model::foreign::{ForeignRow, Tool};
use crate::model::migration::Applied;
use crate::model::sets::Sets;

/// What every tenant task of a run shares.
#[derive(Debug)]
pub struct RunContext<'a> {
    pub fleet: &'a Fleet,
    /// The migrations: one set, or one per engine (a tenant uses its engine's).
    pub sets: &'a Sets,
    /// Opens sessions, under the run's time limits and host pools.
    pub connector: Connector,
    /// Tenants in flight at once.
    pub concurrency: usize,
    /// All of a tenant's steps in one transaction (`--tx per-tenant`).
    pub per_tenant_tx: bool,
    /// When a tenant is tried again after a transient error.
    pub retry: tenant::Retry,
    /// Where the run is recorded, when it is.
    pub ledger: Option<Ledger>,
    /// Written to every history row this run adds.
    pub run_id: String,
}

/// One permit pool per server: a tenant holds a permit while it has a session open.
pub fn host_caps(ctx: &RunContext<'_>, tenants: &[&Tenant]) -> HashMap<String, Arc<Semaphore>> {
    let mut caps = HashMap::new();
    for t in tenants {
        caps.entry(t.server_key())
            .or_insert_with(|| Arc::new(Semaphore::new(host_limit(ctx, t))));
    }
    caps
}

/// How many sessions a tenant's server may have at once: its host's `max_connections`, else
/// the run's concurrency.
pub fn host_limit(ctx: &RunContext<'_>, t: &Tenant) -> usize {
    t.host
        .as_ref()
        .and_then(|h| ctx.fleet.hosts.get(h))
        .map_or(ctx.concurrency, |h| h.max_connections as usize)
        .max(1)
}

/// A tenant and its history rows, or why they could not be read.
pub type Inspected<'t> = (&'t Tenant, Result<Vec<Applied>, DbError>);

/// Reads every tenant's history rows without changing anything, in fleet order: a few
/// queries per pooled host, a read-only session for each other tenant.
pub async fn inspect_all<'t>(ctx: &RunContext<'_>, tenants: &[&'t Tenant]) -> Vec<Inspected<'t>> {
    let mut surveyed = ctx.connector.survey(tenants).await;
    let caps = host_caps(ctx, tenants);
    let mut rows: Vec<(usize, Inspected<'t>)> = futures::stream::iter(tenants.iter().enumerate())
        .map(|(i, t)| {
            let cap = caps[&t.server_key()].clone();
            let known = surveyed.remove(&t.id);
            async move {
                if let Some(rows) = known {
                    return (i, (*t, Ok(rows)));
                }
                let _permit = cap.acquire_owned().await.expect("host semaphores are never closed");
                (i, (*t, tenant::inspect(t, &ctx.connector).await))
            }
        })
        .buffer_unordered(ctx.concurrency.max(1))
        .collect()
        .await;
    rows.sort_by_key(|(i, _)| *i);
    rows.into_iter().map(|(_, row)| row).collect()
}

/// The repeatable migrations (by name) each of `tenants` has not run as their files are
/// now, for those whose set has any; a tenant that cannot be read is left out (its
/// history read says why). Read-only sessions under the run's caps.
pub async fn stale_repeatables(ctx: &RunContext<'_>, tenants: &[&Tenant]) -> HashMap<String, Vec<String>> {
    let with: Vec<&Tenant> = tenants
        .iter()
        .copied()
        .filter(|t| !ctx.sets.of(t.engine).repeatables().is_empty())
        .collect();
    let caps = host_caps(ctx, &with);
    futures::stream::iter(with)
        .map(|t| {
            let cap = caps[&t.server_key()].clone();
            async move {
                let _permit = cap.acquire_owned().await.expect("host semaphores are never closed");
                let ran = tenant::inspect_repeatables(t, &ctx.connector).await.ok()?;
                let stale: Vec<String> = ctx
                    .sets
                    .of(t.engine)
                    .repeatables()
                    .iter()
                    .filter(|r| !ran.iter().any(|(n, c)| *n == r.name && *c == r.checksum.to_hex()))
                    .map(|r| r.name.clone())
                    .collect();
                Some((t.id.to_string(), stale))
            }
        })
        .buffer_unordered(ctx.concurrency.max(1))
        .filter_map(|x| async move { x.filter(|(_, stale)| !stale.is_empty()) })
        .collect()
        .await
}

/// A tenant's own history and another tool's (`None`: it has no such table), or why they
/// could not be read.
pub type Adoptable<'t> = (&'t Tenant, Result<(Vec<Applied>, Option<Vec<ForeignRow>>), DbError>);

/// Reads every tenant's history and `tool`'s, without changing anything, in fleet order,
/// under the run's caps: what `adopt --dry-run` shows.
pub async fn inspect_adoptable<'t>(ctx: &RunContext<'_>, tenants: &[&'t Tenant], tool: Tool) -> Vec<Adoptable<'t>> {
    let caps = host_caps(ctx, tenants);
    let mut rows: Vec<(usize, Adoptable<'t>)> = futures::stream::iter(tenants.iter().enumerate())
        .map(|(i, t)| {
            let cap = caps[&t.server_key()].clone();
            async move {
                let _permit = cap.acquire_owned().await.expect("host semaphores are never closed");
                (i, (*t, tenant::inspect_foreign(t, &ctx.connector, tool).await))
            }
        })
        .buffer_unordered(ctx.concurrency.max(1))
        .collect()
        .await;
    rows.sort_by_key(|(i, _)| *i);
    rows.into_iter().map(|(_, row)| row).collect()
}
