//! `check`: each engine's migrations walked on an empty scratch target, one at a time: the
//! catalog snapshotted before and after the up, after the down (which must give back the
//! first) and after the up again (which must give back the second).
//!
//! Steps run through the same session code as `up` and `down`, so a migration's
//! no-transaction marker, MySQL's implicit commits and SQLite's foreign key checks hold here
//! as on a tenant. A scratch database made on a server is dropped at the end, whatever
//! happened on it.

use std::time::Instant;

use crate::driver::connect::{Access, AnySession, Connector, Limits};
use crate::driver::scratch;
use crate::exec::dispatch::Interrupts;
use crate::model::catalog::Catalog;
use crate::model::check::{CheckReport, EngineCheck, MigrationCheck, Verdict};
use crate::model::db_error::DbError;
use crate::model::fleet::{Engine, Ident, Namespace, Tenant, TenantId};
use crate::model::migration::{Direction, Migration, MigrationSet, Version};
use crate::model::secret::DbUrl;
use crate::model::sets::Sets;
use crate::plan::tenant::Step;

/// Where one engine is checked.
#[derive(Debug, Clone)]
pub struct Scratch {
    pub engine: Engine,
    /// The server a temporary database is made on (PostgreSQL, MySQL); `None` for SQLite,
    /// checked in a temporary file, or for a server engine with no scratch host given.
    pub server: Option<DbUrl>,
    /// A tenant of the fleet on this engine, whose `init_sql`, `search_path` and schema
    /// the scratch target takes, so migrations run there as on the fleet.
    pub template: Option<Tenant>,
}

/// What to check.
#[derive(Debug, Clone)]
pub struct CheckOptions {
    /// Start above this version (applied first without checks); `None`: from 0.
    pub from: Option<Version>,
    /// Check up to this version; `None`: each set's head.
    pub to: Option<Version>,
    /// Count `irreversible` as a failure.
    pub strict: bool,
    pub limits: Limits,
}

/// The history run id written to scratch targets.
const RUN_ID: &str = "fleetmig-check";

/// Checks each engine of `scratches` against its set of `sets`, one engine after another.
/// An interrupt (Ctrl-C, SIGTERM) stops the walk where it is: the engine's report says so,
/// its scratch database is still dropped, and the engines after it are not checked.
pub async fn check(
    scratches: &[Scratch],
    sets: &Sets,
    options: &CheckOptions,
    interrupts: &mut Interrupts,
) -> CheckReport {
    let mut engines = Vec::new();
    for s in scratches {
        if let Some(set) = sets.get(s.engine) {
            let engine = check_engine(s, set, options, interrupts).await;
            let interrupted = engine.error.as_deref() == Some(INTERRUPTED);
            engines.push(engine);
            if interrupted {
                break;
            }
        }
    }
    CheckReport {
        strict: options.strict,
        engines,
    }
}

/// What an engine's report says when an interrupt stopped its walk.
const INTERRUPTED: &str = "interrupted: the walk stopped there";

/// Walks `set` on `tenant` into `result` unless an interrupt comes first.
async fn walk_unless_stopped(
    tenant: &Tenant,
    set: &MigrationSet,
    options: &CheckOptions,
    result: &mut EngineCheck,
    interrupts: &mut Interrupts,
) {
    tokio::select! {
        () = walk_into(tenant, set, options, result) => {}
        Some(()) = interrupts.recv() => result.error = Some(INTERRUPTED.to_owned()),
    }
}

/// One engine: its scratch target made, walked and removed.
async fn check_engine(
    s: &Scratch,
    set: &MigrationSet,
    options: &CheckOptions,
    interrupts: &mut Interrupts,
) -> EngineCheck {
    let mut result = EngineCheck {
        engine: s.engine,
        scratch: String::new(),
        migrations: Vec::new(),
        error: None,
    };
    let target = match Target::make(s, &options.limits).await {
        Ok(target) => target,
        Err(error) => {
            result.error = Some(error.0);
            return result;
        }
    };
    result.scratch = target.place.clone();
    walk_unless_stopped(&target.tenant, set, options, &mut result, interrupts).await;
    if let Err(error) = target.remove(&options.limits).await {
        result.error.get_or_insert(error.0);
    }
    result
}

/// Why a scratch target could not be made or removed, as a report shows it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ScratchError(pub String);

/// An empty scratch target for one engine, as a tenant to open sessions on.
pub struct Target {
    pub tenant: Tenant,
    /// Where it is, for the report: `temporary file`, or the server and database.
    pub place: String,
    /// The temporary folder a SQLite target lives in, removed when dropped.
    _dir: Option<tempfile::TempDir>,
    /// The server and database made for it, dropped by [`Target::remove`].
    made: Option<(DbUrl, String)>,
}

impl Target {
    /// Makes the target: a SQLite file in a temporary folder, or a database on the
    /// engine's scratch server. `Err`: why not, as the report shows it.
    pub async fn make(s: &Scratch, limits: &Limits) -> Result<Target, ScratchError> {
        if s.engine == Engine::Sqlite {
            let dir = tempfile::tempdir().map_err(|e| ScratchError(format!("creating a temporary folder: {e}")))?;
            let mut url = url::Url::parse("sqlite://").expect("a constant URL");
            url.set_path(&dir.path().join("scratch.db").to_string_lossy());
            return Ok(Target {
                tenant: scratch_tenant(s, DbUrl::new(url), None),
                place: "temporary file".to_owned(),
                _dir: Some(dir),
                made: None,
            });
        }
        let Some(server) = &s.server else {
            return Err(ScratchError(format!(
                "no scratch server for {}: give `--scratch URL` or `scratch:` in the fleet file",
                s.engine
            )));
        };
        // Those a killed check left behind first: best effort, a check runs without it.
        match scratch::sweep(s.engine, server, limits).await {
            Ok(dropped) if !dropped.is_empty() => {
                tracing::warn!(
                    "dropped scratch database(s) a killed check left behind: {}",
                    dropped.join(", ")
                );
            }
            Ok(_) => {}
            Err(e) => tracing::debug!("no sweep of stale scratch databases: {e}"),
        }
        let name = scratch::name();
        scratch::create(s.engine, server, &name, limits)
            .await
            .map_err(|e| ScratchError(e.to_string()))?;
        let database = Ident::new(&name).expect("scratch names are plain identifiers");
        Ok(Target {
            tenant: scratch_tenant(s, server.clone(), Some(database)),
            place: format!("{} database {name}", server.redacted()),
            _dir: None,
            made: Some((server.clone(), name)),
        })
    }

    /// Removes the target: its database dropped, its folder deleted.
    pub async fn remove(self, limits: &Limits) -> Result<(), ScratchError> {
        match &self.made {
            Some((server, name)) => scratch::drop(self.tenant.engine, server, name, limits)
                .await
                .map_err(|e| ScratchError(e.to_string())),
            None => Ok(()),
        }
    }
}

/// The scratch target as a tenant: at `url`, in `database`, with the template's session
/// setup and schema.
fn scratch_tenant(s: &Scratch, url: DbUrl, database: Option<Ident>) -> Tenant {
    let template = s.template.as_ref();
    Tenant {
        id: TenantId::new("scratch").expect("a valid id"),
        labels: Default::default(),
        canary: false,
        engine: s.engine,
        url,
        namespace: Namespace {
            database,
            schema: template.and_then(|t| t.namespace.schema.clone()),
        },
        host: None,
        init_sql: template.map(|t| t.init_sql.clone()).unwrap_or_default(),
        search_path: template.map(|t| t.search_path.clone()).unwrap_or_default(),
        create_database: false,
        // The scratch target keeps no other tool's table.
        history_compat: None,
    }
}

/// Opens a session on `tenant`, walks the set on it and closes it, into `result`.
async fn walk_into(tenant: &Tenant, set: &MigrationSet, options: &CheckOptions, result: &mut EngineCheck) {
    let connector = Connector::alone(options.limits.clone()).versions(tenant.engine, set.style());
    let mut session = match connector.open(tenant, Access::Write).await {
        Ok(session) => session,
        Err(e) => {
            result.error = Some(format!("opening the scratch target: {e}"));
            return;
        }
    };
    let from = options
        .from
        .map_or(Version::ZERO, |v| v.restyled(set.style()).unwrap_or(v));
    let to = match options.to {
        Some(v) if v != Version::HEAD => v.restyled(set.style()).unwrap_or(v),
        _ => set.head(),
    };
    let mut stopped = false;
    for m in set.iter().filter(|m| m.version <= to) {
        let started = Instant::now();
        if stopped {
            result.migrations.push(checked(m, Verdict::NotChecked, Instant::now()));
        } else if m.version <= from {
            if let Err(e) = step(&mut session, m, Direction::Up).await {
                result
                    .migrations
                    .push(checked(m, Verdict::UpFails { error: e.0 }, started));
                stopped = true;
            }
        } else {
            match walk_one(&mut session, m).await {
                Ok((verdict, goes_on)) => {
                    stopped = !goes_on;
                    result.migrations.push(checked(m, verdict, started));
                }
                Err(e) => {
                    result.error = Some(format!("migration {}: reading the catalog: {e}", m.label()));
                    stopped = true;
                }
            }
        }
    }
    session.release().await;
    connector.close().await;
}

fn checked(m: &Migration, verdict: Verdict, started: Instant) -> MigrationCheck {
    MigrationCheck {
        version: m.version,
        label: m.label(),
        verdict,
        took: started.elapsed(),
    }
}

/// A step's failure, as the verdict shows it: the script's file and the database's error.
#[derive(Debug)]
pub struct StepError(pub String);

/// Runs one step; a failure names the migration's file.
pub async fn step(session: &mut AnySession, m: &Migration, direction: Direction) -> Result<(), StepError> {
    let step = Step {
        migration: m,
        direction,
        rerun: false,
    };
    match session.run_step(step, RUN_ID).await {
        Ok(_) => Ok(()),
        Err(failed) => {
            let file = match direction {
                Direction::Up => m.path.display().to_string(),
                Direction::Down => m.path.display().to_string().replace(".up.sql", ".down.sql"),
            };
            Err(StepError(format!("{file}: {}", failed.error)))
        }
    }
}

/// Up, down, up again on one migration: its verdict, and whether the walk can go on (the
/// target is where the migration's up leaves it). `Err`: a snapshot could not be read.
async fn walk_one(session: &mut AnySession, m: &Migration) -> Result<(Verdict, bool), DbError> {
    let before = session.catalog().await?;
    if let Err(StepError(error)) = step(session, m, Direction::Up).await {
        return Ok((Verdict::UpFails { error }, false));
    }
    let after_up = session.catalog().await?;
    if !m.is_reversible() {
        let empty_down = m.empty_down;
        return Ok((Verdict::Irreversible { empty_down }, true));
    }
    if let Err(StepError(error)) = step(session, m, Direction::Down).await {
        return Ok((Verdict::DownFails { error }, false));
    }
    let diff = session.catalog().await?.diff(&before);
    let redo = step(session, m, Direction::Up).await;
    let redone: Option<Catalog> = match &redo {
        Ok(()) => Some(session.catalog().await?),
        Err(_) => None,
    };
    Ok(match (diff.is_empty(), redo, redone) {
        (false, redo, _) => (Verdict::DownIncomplete { diff }, redo.is_ok()),
        (true, Err(StepError(error)), _) => (Verdict::RedoFails { error }, false),
        (true, Ok(()), Some(again)) => {
            let diff = again.diff(&after_up);
            match diff.is_empty() {
                true => (Verdict::Ok, true),
                false => (Verdict::RedoDiffers { diff }, true),
            }
        }
        (true, Ok(()), None) => (Verdict::Ok, true),
    })
}
