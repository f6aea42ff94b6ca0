//! `drift`: every selected tenant's history and catalog read (the schema-tenants of a
//! pooled PostgreSQL host with a few queries per host, every other tenant in one read-only
//! session of its own under the run's caps), the reference catalog of each version made
//! on a scratch target (or taken from `--reference`), then the comparison.

use std::collections::{BTreeSet, HashMap};

use futures::StreamExt;

use crate::driver::connect::{Access, Connector, Limits};
use crate::exec::check::{Scratch, StepError, Target, step};
use crate::exec::run::{RunContext, host_caps};
use crate::model::catalog::Catalog;
use crate::model::db_error::DbError;
use crate::model::drift::{DriftReport, Reference, ReferenceError, Unchecked, UncheckedTenant};
use crate::model::fleet::{Engine, Tenant, TenantId};
use crate::model::migration::{Applied, Direction, MigrationSet, Version};
use crate::plan::drift::{References, Snapshot, compare};
use crate::plan::tenant::{dirty_of, version_of};

/// Where each version's truth comes from.
#[derive(Debug, Clone, Default)]
pub struct DriftOptions {
    /// `--reference`: this tenant's catalog is the truth for its engine and version.
    pub reference: Option<TenantId>,
    /// Scratch targets per engine; an engine with none (a server engine without a scratch
    /// server) is held to each version's majority.
    pub scratches: Vec<Scratch>,
}

/// A tenant's history and catalog, or why they could not be read.
type Read = Result<(Vec<Applied>, Catalog), DbError>;

/// Compares every tenant of `tenants` with the reference for its version.
pub async fn drift(ctx: &RunContext<'_>, tenants: &[&Tenant], options: &DriftOptions) -> DriftReport {
    let reads = read_all(ctx, tenants).await;
    let mut snapshots = Vec::new();
    let mut unchecked = Vec::new();
    for (t, read) in tenants.iter().zip(reads) {
        let why = match read {
            Err(e) => Unchecked::Unreachable { error: e.to_string() },
            Ok((rows, _)) if rows.is_empty() => Unchecked::NoHistory,
            Ok((rows, _)) if dirty_of(&rows).is_some() => Unchecked::Dirty {
                version: dirty_of(&rows).expect("just seen"),
            },
            Ok((rows, catalog)) => {
                let catalog = match t.history_compat {
                    Some(tool) => catalog.without_table(tool.table()),
                    None => catalog,
                };
                snapshots.push(Snapshot {
                    tenant: t.id.to_string(),
                    engine: t.engine,
                    version: version_of(&rows),
                    catalog,
                });
                continue;
            }
        };
        unchecked.push(UncheckedTenant {
            tenant: t.id.to_string(),
            why,
        });
    }
    let references = references(ctx, &snapshots, options).await;
    let (groups, failed) = compare(&snapshots, &references);
    unchecked.extend(failed);
    DriftReport { groups, unchecked }
}

/// Every tenant's history and catalog, in `tenants`' order.
async fn read_all(ctx: &RunContext<'_>, tenants: &[&Tenant]) -> Vec<Read> {
    let mut surveyed = ctx.connector.survey(tenants).await;
    // A tenant with no history is not compared: its catalog is not worth reading.
    let pooled: Vec<&Tenant> = tenants
        .iter()
        .copied()
        .filter(|t| surveyed.get(&t.id).is_some_and(|rows| !rows.is_empty()))
        .collect();
    let mut catalogs = ctx.connector.catalogs(&pooled).await;
    let caps = host_caps(ctx, tenants);
    let mut reads: Vec<(usize, Read)> = futures::stream::iter(tenants.iter().enumerate())
        .map(|(i, t)| {
            let known = match (surveyed.remove(&t.id), catalogs.remove(&t.id)) {
                (Some(rows), Some(catalog)) => Some(catalog.map(|c| (rows, c))),
                (Some(rows), None) if rows.is_empty() => Some(Ok((rows, Catalog::default()))),
                _ => None,
            };
            let cap = caps[&t.server_key()].clone();
            async move {
                if let Some(read) = known {
                    return (i, read);
                }
                let _permit = cap.acquire_owned().await.expect("host semaphores are never closed");
                (i, read_one(t, &ctx.connector).await)
            }
        })
        .buffer_unordered(ctx.concurrency.max(1))
        .collect()
        .await;
    reads.sort_by_key(|(i, _)| *i);
    reads.into_iter().map(|(_, read)| read).collect()
}

/// One tenant's history and catalog, in one read-only session.
async fn read_one(t: &Tenant, connector: &Connector) -> Read {
    let mut session = connector.open(t, Access::Read).await?;
    let rows = session.applied(connector.style(t.engine)).await;
    let catalog = match &rows {
        Ok(rows) if !rows.is_empty() => session.catalog().await,
        _ => Ok(Catalog::default()),
    };
    session.release().await;
    Ok((rows?, catalog?))
}

/// The truth for each engine and version the snapshots are at: `--reference`'s catalog
/// for its own, the scratch target's for the others of an engine that has one.
async fn references(ctx: &RunContext<'_>, snapshots: &[Snapshot], options: &DriftOptions) -> References {
    let mut refs = References::new();
    if let Some(id) = &options.reference {
        if let Some(s) = snapshots.iter().find(|s| s.tenant == id.as_str()) {
            let reference = Reference::Tenant { id: s.tenant.clone() };
            refs.insert((s.engine, s.version), Ok((reference, s.catalog.clone())));
        }
    }
    let mut wanted: HashMap<Engine, BTreeSet<Version>> = HashMap::new();
    for s in snapshots.iter().filter(|s| !refs.contains_key(&(s.engine, s.version))) {
        wanted.entry(s.engine).or_default().insert(s.version);
    }
    for (engine, versions) in wanted {
        let Some(scratch) = options.scratches.iter().find(|s| s.engine == engine) else {
            continue;
        };
        if engine != Engine::Sqlite && scratch.server.is_none() {
            continue;
        }
        let set = ctx.sets.of(engine);
        let (versions, unknown): (BTreeSet<Version>, BTreeSet<Version>) =
            versions.into_iter().partition(|v| set.iter().any(|m| m.version == *v));
        for v in unknown {
            refs.insert(
                (engine, v),
                Err(ReferenceError(format!(
                    "version {v} is not among the {engine} migrations"
                ))),
            );
        }
        let made = on_scratch(scratch, set, &versions, &ctx.connector.limits).await;
        for v in versions {
            let found = match &made {
                Ok((place, catalogs)) => catalogs
                    .get(&v)
                    .cloned()
                    .map(|c| (Reference::Scratch { place: place.clone() }, c))
                    .ok_or_else(|| ReferenceError(format!("version {v}: no snapshot was taken"))),
                Err(error) => Err(error.clone()),
            };
            refs.insert((engine, v), found);
        }
    }
    refs
}

/// The catalog a scratch target has at each of `versions`: the set applied one migration
/// at a time, the catalog read whenever the next migration is above a wanted version.
/// `Err`: the target could not be made or opened, or a migration failed on it.
async fn on_scratch(
    scratch: &Scratch,
    set: &MigrationSet,
    versions: &BTreeSet<Version>,
    limits: &Limits,
) -> Result<(String, HashMap<Version, Catalog>), ReferenceError> {
    let target = Target::make(scratch, limits).await.map_err(|e| ReferenceError(e.0))?;
    let connector = Connector::alone(limits.clone()).versions(scratch.engine, set.style());
    let walked = match connector.open(&target.tenant, Access::Write).await {
        Ok(mut session) => {
            let walked = walk(&mut session, set, versions).await;
            session.release().await;
            walked
        }
        Err(e) => Err(ReferenceError(format!("opening the scratch target: {e}"))),
    };
    connector.close().await;
    let place = target.place.clone();
    let removed = target.remove(limits).await;
    let catalogs = walked.map_err(|e| ReferenceError(format!("{} scratch target ({place}): {e}", scratch.engine)))?;
    removed.map_err(|e| ReferenceError(e.0))?;
    Ok((place, catalogs))
}

async fn walk(
    session: &mut crate::driver::connect::AnySession,
    set: &MigrationSet,
    versions: &BTreeSet<Version>,
) -> Result<HashMap<Version, Catalog>, ReferenceError> {
    let mut out = HashMap::new();
    let mut pending = versions.iter().copied().peekable();
    let snapshot = |e: DbError| ReferenceError(format!("reading the catalog: {e}"));
    for m in set.iter() {
        while let Some(v) = pending.next_if(|v| *v < m.version) {
            out.insert(v, session.catalog().await.map_err(snapshot)?);
        }
        if pending.peek().is_none() {
            return Ok(out);
        }
        step(session, m, Direction::Up)
            .await
            .map_err(|StepError(e)| ReferenceError(e))?;
    }
    for v in pending {
        out.insert(v, session.catalog().await.map_err(snapshot)?);
    }
    Ok(out)
}
