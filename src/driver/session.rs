//! The migration protocol, written once over each engine's few primitives.
//!
//! A step that can run in a transaction commits its script and its history row together.
//! One that cannot (MySQL DDL, `-- fleetmig: no-transaction`) writes a dirty history row
//! first and clears it after, so a failure part way leaves a mark that refuses later runs.

use std::future::Future;
use std::time::{Duration, Instant};

use crate::driver::compat::{Compat, Mark};
use crate::model::db_error::{DbError, ErrorKind};
use crate::model::fleet::Engine;
use crate::model::foreign::ForeignEntry;
use crate::model::migration::{Applied, Direction, Migration, MigrationSet, Repeatable, Version, VersionStyle};
use crate::plan::tenant::Step;

/// What each engine provides. Every method is a round trip or a few; none decides anything.
pub trait Wire: Send {
    const ENGINE: Engine;
    /// The statement that opens a write transaction.
    const BEGIN: &'static str;

    /// The whole of a transactional step (begin, script, history write, commit) as one text
    /// to send in one round trip, where the engine allows it; `None` runs it statement by
    /// statement.
    /// `wrap`: add the transaction's begin and commit around it. `compat`: statements that
    /// go in the same transaction, after the script (another tool's history, see
    /// [`super::compat`]).
    fn step_sql(
        &self,
        _script: &str,
        _row: &Applied,
        _direction: Direction,
        _run_id: &str,
        _wrap: bool,
        _compat: &str,
    ) -> Option<String> {
        None
    }

    /// All of a tenant's steps in one transaction, begin to commit, as one text to send in
    /// one round trip (`--tx per-tenant`). Each step's history write returns one row whose
    /// first column is named `fleetmig_step`, holding the version, and whose second holds
    /// the step's duration in milliseconds, so a failure can be placed. `None` runs it step
    /// by step. Each step's last text holds statements that go after its script (another
    /// tool's history).
    fn tenant_sql(&self, _steps: &[TenantStep<'_>], _run_id: &str) -> Option<String> {
        None
    }

    /// Runs `tenant_sql`'s text: the `(version, duration_ms)` of the steps it finished, and
    /// how it ended.
    fn batch_steps(
        &mut self,
        _sql: &str,
    ) -> impl Future<Output = (Vec<(String, i64)>, Result<(), sqlx::Error>)> + Send {
        async {
            (
                Vec::new(),
                Err(sqlx::Error::Protocol("no one-trip tenant transaction here".into())),
            )
        }
    }

    /// Runs outside any transaction, before one that steps will join begins (or before a
    /// step that runs outside one). SQLite turns foreign key enforcement off here, where the
    /// pragma takes effect, and notes the rows that already break a foreign key. Engines
    /// that need it take no one-trip `step_sql`.
    fn before_steps(&mut self) -> impl Future<Output = Result<(), sqlx::Error>> + Send {
        async { Ok(()) }
    }

    /// Runs after each step's script, before its commit (or before a no-transaction step's
    /// dirty mark is cleared): an error fails the step. SQLite fails on rows that break a
    /// foreign key and did not before.
    fn verify_step(&mut self) -> impl Future<Output = Result<(), sqlx::Error>> + Send {
        async { Ok(()) }
    }

    /// Runs SQL text whole, as the database's simple-query protocol does.
    fn batch(&mut self, sql: &str) -> impl Future<Output = Result<(), sqlx::Error>> + Send;
    /// The history rows, ascending; empty when the table does not exist.
    fn read_history(&mut self) -> impl Future<Output = Result<Vec<Applied>, sqlx::Error>> + Send;
    fn insert_row(
        &mut self,
        row: &Applied,
        duration_ms: i64,
        run_id: &str,
    ) -> impl Future<Output = Result<(), sqlx::Error>> + Send;
    /// Sets a row's dirty flag (and its duration, when given).
    fn mark_row(
        &mut self,
        version: Version,
        dirty: bool,
        duration_ms: Option<i64>,
    ) -> impl Future<Output = Result<(), sqlx::Error>> + Send;
    fn update_row(&mut self, row: &Applied, run_id: &str) -> impl Future<Output = Result<(), sqlx::Error>> + Send;
    fn delete_row(&mut self, version: Version) -> impl Future<Output = Result<(), sqlx::Error>> + Send;
    /// Before a script that runs outside a transaction: what the engine needs to tell later
    /// what a failed one left behind (PostgreSQL: the ids of the indexes in the tenant's
    /// schema, each with whether it is valid).
    fn loose_mark(&mut self) -> impl Future<Output = Result<Vec<(i64, bool)>, sqlx::Error>> + Send {
        async { Ok(Vec::new()) }
    }
    /// After such a script failed: drops what it left that is of no use, and says whether
    /// the database is now as it was before the script. `false` when the engine cannot tell.
    fn undo_loose(
        &mut self,
        _mark: &[(i64, bool)],
        _script: &str,
    ) -> impl Future<Output = Result<bool, sqlx::Error>> + Send {
        async { Ok(false) }
    }
    /// Before running a dirty step's script again: drops what an earlier failed run left that
    /// would make the new run skip its work (PostgreSQL: INVALID indexes the script names).
    fn before_rerun(&mut self, _script: &str) -> impl Future<Output = Result<(), sqlx::Error>> + Send {
        async { Ok(()) }
    }
    /// For an error that means a wait ran out: who the statement was most likely waiting
    /// for, as words for the error message, when the engine can tell. `in_transaction`:
    /// the step ran in a transaction (else outside one, as a concurrent index build does).
    fn blocker(&mut self, _error: &DbError, _in_transaction: bool) -> impl Future<Output = Option<String>> + Send {
        async { None }
    }
    /// Runs a gate query; true when its first column of its first row is true (or non-zero).
    fn check(&mut self, sql: &str) -> impl Future<Output = Result<bool, sqlx::Error>> + Send;
    /// The PostgreSQL schema the tenant's tables are in, when it is a schema-tenant.
    fn schema(&self) -> Option<&str> {
        None
    }
    /// Runs a query of three text columns (another tool's history, see
    /// [`super::foreign::query`]); `None` when its table does not exist.
    fn text_rows(&mut self, sql: &str) -> impl Future<Output = Result<Option<Vec<[String; 3]>>, sqlx::Error>> + Send;
    /// A snapshot of the tenant's catalog (see [`super::catalog`]).
    fn catalog(&mut self) -> impl Future<Output = Result<crate::model::catalog::Catalog, sqlx::Error>> + Send;
    /// Releases the tenant lock and resets the session, ready for reuse.
    fn unlock(&mut self) -> impl Future<Output = Result<(), sqlx::Error>> + Send;
    /// Ends the session: back to its pool when `clean`, closed otherwise.
    fn finish(self, clean: bool) -> impl Future<Output = ()> + Send;
}

/// One step of [`Wire::tenant_sql`]: its script, history row, direction, and the statements
/// that keep another tool's history with it.
pub type TenantStep<'a> = (&'a str, &'a Applied, Direction, &'a str);

/// A history row from the columns `version, name, checksum, dirty`, the dirty flag an
/// integer (MySQL, SQLite; PostgreSQL's is a boolean, read by its own `applied_of`).
pub fn applied_row<'r, R: sqlx::Row>(r: &'r R) -> Result<Applied, sqlx::Error>
where
    usize: sqlx::ColumnIndex<R>,
    i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    Ok(Applied {
        version: read_version(&r.try_get::<String, _>(0)?)?,
        name: r.try_get(1)?,
        checksum: r.try_get(2)?,
        dirty: r.try_get::<i64, _>(3)? != 0,
    })
}

/// A row of three text columns (NULL read as empty).
pub fn text_row<'r, R: sqlx::Row>(r: &'r R) -> Result<[String; 3], sqlx::Error>
where
    usize: sqlx::ColumnIndex<R>,
    Option<String>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let col = |i: usize| r.try_get::<Option<String>, _>(i).map(Option::unwrap_or_default);
    Ok([col(0)?, col(1)?, col(2)?])
}

/// True for an error that says the table a query names does not exist, on any engine.
pub fn missing_table(e: &sqlx::Error) -> bool {
    let Some(db) = e.as_database_error() else {
        return false;
    };
    let code = db.code();
    matches!(code.as_deref(), Some("42P01" | "42S02" | "1146"))
        || db.message().contains("no such table")
        || db.message().contains("doesn't exist")
}

/// The rows of [`Wire::text_rows`], or `None` when the error is a missing table.
pub fn unless_missing<T>(result: Result<Vec<T>, sqlx::Error>) -> Result<Option<Vec<T>>, sqlx::Error> {
    match result {
        Ok(rows) => Ok(Some(rows)),
        Err(e) if missing_table(&e) => Ok(None),
        Err(e) => Err(e),
    }
}

/// History rows with their versions read in `style`, ascending in it.
pub fn restyle(mut rows: Vec<Applied>, style: VersionStyle) -> Result<Vec<Applied>, sqlx::Error> {
    for row in &mut rows {
        row.version = row
            .version
            .restyled(style)
            .map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
    }
    rows.sort_by_key(|r| r.version);
    Ok(rows)
}

/// A version column's text as read back (see [`Version::read`]).
pub fn read_version(text: &str) -> Result<Version, sqlx::Error> {
    Version::read(text).map_err(|e| sqlx::Error::Decode(Box::new(e)))
}

/// Runs the tenant's `init_sql` on a new session, in order: written once for every engine,
/// each of which names the failure its own way.
pub async fn run_init_sql<W: Wire>(wire: &mut W, tenant: &crate::model::fleet::Tenant) -> Result<(), sqlx::Error> {
    for statement in &tenant.init_sql {
        wire.batch(statement).await?;
    }
    Ok(())
}

/// A step that did not complete: why, and what it left in the history table.
#[derive(Debug, Clone)]
pub struct StepFailed {
    pub error: DbError,
    /// The step's history row is left marked dirty: the database may be part way through it.
    pub dirty: bool,
    /// Set when the step's leftovers are known and could be undone, only not now (the undo
    /// itself waited too long): a later session may finish the undo with `undo`.
    pub undo: Option<Undo>,
}

/// How to undo a failed step outside a transaction, from another session: what the engine
/// noted before its script ran.
#[derive(Debug, Clone)]
pub struct Undo {
    pub version: Version,
    direction: Direction,
    mark: Vec<(i64, bool)>,
    script: String,
    /// What puts another tool's history back as it was before the step (`history_compat`).
    compat: String,
}

/// Where in a step an error happened, for its message.
#[derive(Debug, Clone, Copy)]
enum Phase {
    /// The bookkeeping before the script: the script did not run.
    Before,
    Script,
    /// The bookkeeping after the script.
    After,
}

impl Phase {
    fn op(self, op: &str) -> String {
        match self {
            Phase::Script => op.to_owned(),
            Phase::Before | Phase::After => format!("{op}: recording history"),
        }
    }
}

/// An open, locked session on one tenant.
pub struct Session<W: Wire> {
    wire: W,
    /// The password in this tenant's URL, scrubbed from every message.
    secret: Option<String>,
    /// Set by any error: the session is closed at the end, never reused.
    broken: bool,
    /// Another tool's history table kept in step with fleetmig_history.
    compat: Option<Compat>,
}

impl<W: Wire> Session<W> {
    pub fn new(wire: W, secret: Option<String>) -> Self {
        Session {
            wire,
            secret,
            broken: false,
            compat: None,
        }
    }

    /// This session, keeping `compat`'s table in step with fleetmig_history.
    pub fn keeping(mut self, compat: Option<Compat>) -> Self {
        self.compat = compat;
        self
    }

    /// The row the kept tool's table holds for `m`; `None` without `history_compat`.
    fn entry(&mut self, m: &Migration, op: &str) -> Result<Option<ForeignEntry>, DbError> {
        let Some(tool) = self.compat.as_ref().map(Compat::tool) else {
            return Ok(None);
        };
        match ForeignEntry::of(tool, m) {
            Ok(entry) => Ok(Some(entry)),
            Err(e) => Err(self.fail(
                ErrorKind::Sql,
                Phase::Before.op(op),
                sqlx::Error::Configuration(Box::new(e)),
            )),
        }
    }

    /// The statements that make the kept tool's table say `mark` of `entry`'s migration;
    /// empty without `history_compat`.
    fn compat_sql(&self, entry: Option<&ForeignEntry>, mark: Mark, ms: Option<i64>) -> String {
        match (&self.compat, entry) {
            (Some(compat), Some(entry)) => compat.record(entry, mark, ms),
            _ => String::new(),
        }
    }

    /// Runs `compat_sql`'s statements, if any.
    async fn batch_compat(&mut self, sql: &str) -> Result<(), sqlx::Error> {
        if sql.is_empty() {
            return Ok(());
        }
        self.wire.batch(sql).await
    }

    /// Writes the kept tool's row of every migration the history records cleanly, where it
    /// is missing: a tenant fleetmig migrated before `history_compat` was set.
    pub async fn backfill_compat(&mut self, applied: &[Applied], set: &MigrationSet) -> Result<(), DbError> {
        let Some(compat) = &self.compat else {
            return Ok(());
        };
        let mut sql = String::new();
        for row in applied.iter().filter(|a| !a.dirty) {
            if let Some(m) = set.get(row.version) {
                if let Ok(entry) = ForeignEntry::of(compat.tool(), m) {
                    sql.push_str(&compat.record(&entry, Mark::Applied, None));
                }
            }
        }
        let op = format!("recording the history in {}", compat.tool().table());
        match self.batch_compat(&sql).await {
            Ok(()) => Ok(()),
            Err(e) => Err(self.fail(ErrorKind::Sql, op, e)),
        }
    }

    fn fail(&mut self, kind: ErrorKind, op: impl Into<String>, err: sqlx::Error) -> DbError {
        self.broken = true;
        DbError::sqlx(kind, op, &err, self.secret.as_deref())
    }

    /// `tool`'s history rows in this tenant; `None` when it has no such table.
    pub async fn foreign(
        &mut self,
        tool: crate::model::foreign::Tool,
    ) -> Result<Option<Vec<crate::model::foreign::ForeignRow>>, DbError> {
        let sql = super::foreign::query(tool, W::ENGINE, self.wire.schema());
        match self.wire.text_rows(&sql).await {
            Ok(rows) => Ok(rows.map(super::foreign::rows)),
            Err(e) => Err(self.fail(ErrorKind::Sql, format!("reading {}", tool.table()), e)),
        }
    }

    /// The repeatable migrations this tenant ran, by name, with the checksum each ran;
    /// none when it has no `fleetmig_repeatables` table yet.
    pub async fn repeatables(&mut self) -> Result<Vec<(String, String)>, DbError> {
        let sql = super::repeatable::select(W::ENGINE, self.wire.schema());
        match self.wire.text_rows(&sql).await {
            Ok(rows) => Ok(rows
                .unwrap_or_default()
                .into_iter()
                .map(|[name, checksum, _]| (name, checksum.trim().to_owned()))
                .collect()),
            Err(e) => Err(self.fail(ErrorKind::Sql, "reading fleetmig_repeatables", e)),
        }
    }

    /// Runs repeatable migration `r` and records its checksum, in one transaction where
    /// the engine and the script allow (MySQL commits DDL as it goes: a script that ran
    /// but whose row was not written runs again next time, as a repeatable one may).
    pub async fn run_repeatable(&mut self, r: &Repeatable, run_id: &str) -> Result<Duration, DbError> {
        let in_tx = r.script.transactional && W::ENGINE.has_transactional_ddl();
        let schema = self.wire.schema().map(str::to_owned);
        let started = Instant::now();
        let result = async {
            self.wire
                .batch(&super::repeatable::create(W::ENGINE, schema.as_deref()))
                .await?;
            if in_tx {
                self.wire.batch(W::BEGIN).await?;
            }
            self.wire.batch(&r.script.sql).await?;
            let ms = millis(started.elapsed());
            self.wire
                .batch(&super::repeatable::record(schema.as_deref(), r, ms, run_id))
                .await?;
            if in_tx {
                self.wire.batch("COMMIT").await?;
            }
            Ok(())
        }
        .await;
        let op = format!("running repeatable migration `{}`", r.path.display());
        result.map_err(|e| self.fail(ErrorKind::Sql, op, e))?;
        Ok(started.elapsed())
    }

    /// The history rows, ascending, their versions read in `style` (the set's).
    pub async fn applied(&mut self, style: VersionStyle) -> Result<Vec<Applied>, DbError> {
        let rows = self.wire.read_history().await.and_then(|rows| restyle(rows, style));
        match rows {
            Ok(rows) => Ok(rows),
            Err(e) => Err(self.fail(ErrorKind::Sql, "reading fleetmig_history", e)),
        }
    }

    /// Runs one step and records it; returns how long the script took.
    pub async fn run_step(&mut self, step: Step<'_>, run_id: &str) -> Result<Duration, StepFailed> {
        let (script, op, row) = describe(step);
        let entry = self.entry(step.migration, &op).map_err(|error| StepFailed {
            error,
            dirty: step.rerun,
            undo: None,
        })?;
        // A dirty row to run over goes through the dirty protocol, which updates the row.
        let in_tx = script.transactional && W::ENGINE.has_transactional_ddl() && !step.rerun;
        let started = Instant::now();
        let one_trip = if in_tx {
            let compat = self.compat_sql(entry.as_ref(), done(step.direction), None);
            self.wire
                .step_sql(&script.sql, &row, step.direction, run_id, true, &compat)
        } else {
            None
        };
        let sent = one_trip.as_deref().unwrap_or(&script.sql).to_owned();
        let result = if let Some(sql) = one_trip {
            self.wire.batch(&sql).await.map_err(|e| (Phase::Script, e))
        } else if in_tx {
            let step_row = StepRow {
                row: &row,
                entry: entry.as_ref(),
                direction: step.direction,
            };
            self.step_in_transaction(step_row, &script.sql, run_id, started).await
        } else {
            let step_row = StepRow {
                row: &row,
                entry: entry.as_ref(),
                direction: step.direction,
            };
            return self
                .step_marked_dirty(step, step_row, &script.sql, &op, run_id, started)
                .await;
        };
        // In a transaction, whatever failed rolled back with it: nothing is left dirty.
        if let Err((phase, e)) = result {
            let mut error = self.fail(ErrorKind::Sql, phase.op(&op), e);
            error.locate(&sent, &script.sql);
            if let Some(who) = self.wire.blocker(&error, true).await {
                error.message = format!("{}; {who}", error.message);
            }
            return Err(StepFailed {
                error,
                dirty: false,
                undo: None,
            });
        }
        Ok(started.elapsed())
    }

    async fn step_in_transaction(
        &mut self,
        step: StepRow<'_>,
        sql: &str,
        run_id: &str,
        started: Instant,
    ) -> Result<(), (Phase, sqlx::Error)> {
        let StepRow { row, entry, direction } = step;
        self.wire.before_steps().await.map_err(|e| (Phase::Before, e))?;
        self.wire.batch(W::BEGIN).await.map_err(|e| (Phase::Before, e))?;
        self.wire.batch(sql).await.map_err(|e| (Phase::Script, e))?;
        self.wire.verify_step().await.map_err(|e| (Phase::Script, e))?;
        let ms = millis(started.elapsed());
        let compat = self.compat_sql(entry, done(direction), Some(ms));
        self.batch_compat(&compat).await.map_err(|e| (Phase::After, e))?;
        match direction {
            Direction::Up => self.wire.insert_row(row, ms, run_id).await,
            Direction::Down => self.wire.delete_row(row.version).await,
        }
        .map_err(|e| (Phase::After, e))?;
        self.wire.batch("COMMIT").await.map_err(|e| (Phase::Script, e))
    }

    /// A step outside a transaction: its row is marked dirty before the script and cleared
    /// after. The failure says exactly what the history then holds: nothing changed when the
    /// bookkeeping before the script failed, or when the engine could undo what a failed
    /// script left (PostgreSQL: a failed concurrent index build's INVALID index); the row
    /// marked dirty otherwise.
    async fn step_marked_dirty(
        &mut self,
        step: Step<'_>,
        step_row: StepRow<'_>,
        sql: &str,
        op: &str,
        run_id: &str,
        started: Instant,
    ) -> Result<Duration, StepFailed> {
        let row = step_row.row;
        let mark = self.mark_dirty(step, step_row, sql, op, run_id).await?;
        let ran = match self.wire.batch(sql).await {
            Ok(()) => self.wire.verify_step().await,
            Err(e) => Err(e),
        };
        if let Err(e) = ran {
            let before = match step.direction {
                Direction::Up => Mark::Reverted,
                Direction::Down => Mark::Applied,
            };
            let undo = Undo {
                version: row.version,
                direction: step.direction,
                mark,
                script: sql.to_owned(),
                compat: self.compat_sql(step_row.entry, before, None),
            };
            return Err(self.script_failed(e, op, undo).await);
        }
        self.clear_mark(step, step_row, op, started).await
    }

    /// The bookkeeping before a script run outside a transaction: what a rerun needs, the
    /// engine's setup, a note of what the script may leave behind (returned), and the row
    /// marked dirty. Nothing is left dirty that was not before when this fails.
    async fn mark_dirty(
        &mut self,
        step: Step<'_>,
        step_row: StepRow<'_>,
        sql: &str,
        op: &str,
        run_id: &str,
    ) -> Result<Vec<(i64, bool)>, StepFailed> {
        let row = step_row.row;
        let before = |this: &mut Self, e| StepFailed {
            error: this.fail(ErrorKind::Sql, Phase::Before.op(op), e),
            dirty: step.rerun,
            undo: None,
        };
        if step.rerun {
            if let Err(e) = self.wire.before_rerun(sql).await {
                return Err(before(self, e));
            }
        }
        if let Err(e) = self.wire.before_steps().await {
            return Err(before(self, e));
        }
        let mark = match self.wire.loose_mark().await {
            Ok(mark) => mark,
            Err(e) => return Err(before(self, e)),
        };
        // The other tool's table first: should fleetmig's mark then fail, its own row says
        // nothing changed, and the next run writes the other table again.
        let running = match step.direction {
            Direction::Up => Mark::Applying,
            Direction::Down => Mark::Reverting,
        };
        let compat = self.compat_sql(step_row.entry, running, None);
        if let Err(e) = self.batch_compat(&compat).await {
            return Err(before(self, e));
        }
        let marked = match (step.direction, step.rerun) {
            (Direction::Up, false) => {
                let dirty = Applied {
                    dirty: true,
                    ..row.clone()
                };
                self.wire.insert_row(&dirty, 0, run_id).await
            }
            _ => self.wire.mark_row(row.version, true, None).await,
        };
        if let Err(e) = marked {
            let mut failed = before(self, e);
            if crate::driver::connect::is_no_answer(&failed.error) {
                // The server may have written the mark and lost only its answer.
                failed.error.message = format!(
                    "{}; the server may have written migration {}'s dirty mark before the answer was lost: \
                     whether the history marks it dirty is unknown (`fleetmig status` reads it)",
                    failed.error.message, row.version
                );
            }
            return Err(failed);
        }
        Ok(mark)
    }

    /// A script run outside a transaction failed: undoes what it left when the engine can,
    /// and says whether the row is still dirty and whether another session may finish the undo.
    async fn script_failed(&mut self, e: sqlx::Error, op: &str, undo: Undo) -> StepFailed {
        let mut error = self.fail(ErrorKind::Sql, op, e);
        error.locate(&undo.script, &undo.script);
        if let Some(who) = self.wire.blocker(&error, false).await {
            error.message = format!("{}; {who}", error.message);
        }
        match self.finish_undo(&undo).await {
            Ok(true) => StepFailed {
                error,
                dirty: false,
                undo: None,
            },
            Ok(false) => StepFailed {
                error,
                dirty: true,
                undo: None,
            },
            // The database said why the script failed, so it ran no further; only the
            // undo could not finish now (a lock wait): another session may.
            Err(_) if error.code.is_some() => StepFailed {
                error,
                dirty: true,
                undo: Some(undo),
            },
            Err(_) => StepFailed {
                error,
                dirty: true,
                undo: None,
            },
        }
    }

    /// The bookkeeping after a script run outside a transaction: its row cleared (up) or
    /// removed (down). When that fails the script has run and the row still says dirty.
    async fn clear_mark(
        &mut self,
        step: Step<'_>,
        step_row: StepRow<'_>,
        op: &str,
        started: Instant,
    ) -> Result<Duration, StepFailed> {
        let row = step_row.row;
        let ms = millis(started.elapsed());
        let compat = self.compat_sql(step_row.entry, done(step.direction), Some(ms));
        let recorded = match self.batch_compat(&compat).await {
            Err(e) => Err(e),
            Ok(()) => match step.direction {
                Direction::Up => self.wire.mark_row(row.version, false, Some(ms)).await,
                Direction::Down => self.wire.delete_row(row.version).await,
            },
        };
        match recorded {
            Ok(()) => Ok(started.elapsed()),
            // The script ran; its row still says dirty, and that is what the report says.
            Err(e) => {
                let mut error = self.fail(ErrorKind::Sql, Phase::After.op(op), e);
                if crate::driver::connect::is_no_answer(&error) {
                    let what = match step.direction {
                        Direction::Up => "cleared its dirty mark",
                        Direction::Down => "removed its history row",
                    };
                    error.message = format!(
                        "{}; the script of migration {} ran, and the server may have {what} before the answer was \
                         lost: whether the history still marks it dirty is unknown (`fleetmig status` reads it)",
                        error.message, row.version
                    );
                }
                Err(StepFailed {
                    error,
                    dirty: true,
                    undo: None,
                })
            }
        }
    }

    /// Drops what a failed script left and puts its history row back as it was before the
    /// step; `Ok(false)` when the engine cannot tell that the database is as it was.
    async fn finish_undo(&mut self, undo: &Undo) -> Result<bool, sqlx::Error> {
        if !self.wire.undo_loose(&undo.mark, &undo.script).await? {
            return Ok(false);
        }
        self.batch_compat(&undo.compat).await?;
        match undo.direction {
            Direction::Up => self.wire.delete_row(undo.version).await?,
            Direction::Down => self.wire.mark_row(undo.version, false, None).await?,
        }
        Ok(true)
    }

    /// Finishes the undo of a step an earlier session could not (see [`StepFailed::undo`]).
    pub async fn undo(&mut self, undo: &Undo) -> Result<(), DbError> {
        let op = format!("undoing the failed migration {}", undo.version);
        match self.finish_undo(undo).await {
            Ok(true) => Ok(()),
            Ok(false) => Err(DbError::new(
                ErrorKind::Sql,
                op,
                "its leftovers are not what the failed script left",
            )),
            Err(e) => Err(self.fail(ErrorKind::Sql, op, e)),
        }
    }

    /// Opens the transaction that `run_step_in_open_tx` steps join (`--tx per-tenant`).
    pub async fn begin(&mut self) -> Result<(), DbError> {
        let begun = match self.wire.before_steps().await {
            Ok(()) => self.wire.batch(W::BEGIN).await,
            Err(e) => Err(e),
        };
        match begun {
            Ok(()) => Ok(()),
            Err(e) => Err(self.fail(ErrorKind::Sql, "beginning the tenant's transaction", e)),
        }
    }

    /// Runs one step and its history row inside the transaction `begin` opened.
    pub async fn run_step_in_open_tx(&mut self, step: Step<'_>, run_id: &str) -> Result<Duration, DbError> {
        let (script, op, row) = describe(step);
        let entry = self.entry(step.migration, &op)?;
        let compat = self.compat_sql(entry.as_ref(), done(step.direction), None);
        let started = Instant::now();
        let result = match self
            .wire
            .step_sql(&script.sql, &row, step.direction, run_id, false, &compat)
        {
            Some(sql) => self.wire.batch(&sql).await,
            None => {
                let ran = match self.wire.batch(&script.sql).await {
                    Ok(()) => self.wire.verify_step().await,
                    Err(e) => Err(e),
                };
                let ran = match ran {
                    Ok(()) => self.batch_compat(&compat).await,
                    Err(e) => Err(e),
                };
                match (ran, step.direction) {
                    (Err(e), _) => Err(e),
                    (Ok(()), Direction::Up) => self.wire.insert_row(&row, millis(started.elapsed()), run_id).await,
                    (Ok(()), Direction::Down) => self.wire.delete_row(row.version).await,
                }
            }
        };
        result.map_err(|e| self.fail(ErrorKind::Sql, op, e))?;
        Ok(started.elapsed())
    }

    /// Runs every step and its history row in one transaction (`--tx per-tenant`): all of
    /// them commit or none does. `Ok`: each step's duration. `Err`: the index of the step that
    /// failed (the number of steps when the commit did), and why.
    pub async fn run_in_one_tx(&mut self, steps: &[Step<'_>], run_id: &str) -> Result<Vec<Duration>, (usize, DbError)> {
        let described: Vec<_> = steps.iter().map(|s| describe(*s)).collect();
        let mut compat = Vec::with_capacity(steps.len());
        for (i, step) in steps.iter().enumerate() {
            let entry = self.entry(step.migration, &described[i].1).map_err(|e| (i, e))?;
            compat.push(self.compat_sql(entry.as_ref(), done(step.direction), None));
        }
        let parts: Vec<TenantStep<'_>> = described
            .iter()
            .zip(steps)
            .zip(&compat)
            .map(|(((script, _, row), step), compat)| (script.sql.as_str(), row, step.direction, compat.as_str()))
            .collect();
        let Some(sql) = self.wire.tenant_sql(&parts, run_id) else {
            self.begin().await.map_err(|e| (0, e))?;
            let mut durations = Vec::with_capacity(steps.len());
            for (i, step) in steps.iter().enumerate() {
                durations.push(self.run_step_in_open_tx(*step, run_id).await.map_err(|e| (i, e))?);
            }
            self.commit().await.map_err(|e| (steps.len(), e))?;
            return Ok(durations);
        };
        let (done, result) = self.wire.batch_steps(&sql).await;
        match result {
            // Committed: every step ran. A step whose history write returned nothing (a down
            // script that removed its own row) took no time we can tell.
            Ok(()) => Ok(described
                .iter()
                .map(|(_, _, row)| {
                    let ms = done
                        .iter()
                        .find(|(v, _)| *v == row.version.text())
                        .map_or(0, |(_, ms)| *ms);
                    Duration::from_millis(u64::try_from(ms).unwrap_or(0))
                })
                .collect()),
            Err(e) => {
                let at = done.len();
                let op = match described.get(at) {
                    Some((_, op, _)) => op.clone(),
                    None => "committing the tenant's transaction".to_owned(),
                };
                Err((at, self.fail(ErrorKind::Sql, op, e)))
            }
        }
    }

    /// Commits the tenant's transaction.
    pub async fn commit(&mut self) -> Result<(), DbError> {
        match self.wire.batch("COMMIT").await {
            Ok(()) => Ok(()),
            Err(e) => Err(self.fail(ErrorKind::Sql, "committing the tenant's transaction", e)),
        }
    }

    /// Makes the history hold exactly `rows` (dirty flags cleared), without running scripts;
    /// the kept tool's table (`history_compat`) says the same of `set`'s migrations.
    pub async fn stamp(&mut self, rows: &[Applied], set: &MigrationSet, run_id: &str) -> Result<(), DbError> {
        let result = async {
            let existing = self.wire.read_history().await?;
            let compat = self.stamp_compat(&existing, rows, set)?;
            self.wire.batch(W::BEGIN).await?;
            self.batch_compat(&compat).await?;
            for old in &existing {
                if !rows.iter().any(|r| r.version == old.version) {
                    self.wire.delete_row(old.version).await?;
                }
            }
            for row in rows {
                match existing.iter().find(|e| e.version == row.version) {
                    None => self.wire.insert_row(row, 0, run_id).await?,
                    Some(e) if e != row => self.wire.update_row(row, run_id).await?,
                    Some(_) => {}
                }
            }
            self.wire.batch("COMMIT").await
        }
        .await;
        result.map_err(|e| self.fail(ErrorKind::Sql, "stamping fleetmig_history", e))
    }

    /// What `stamp` writes to the kept tool's table: rows gone from the history removed,
    /// every row of `rows` recorded.
    fn stamp_compat(&self, existing: &[Applied], rows: &[Applied], set: &MigrationSet) -> Result<String, sqlx::Error> {
        let Some(compat) = &self.compat else {
            return Ok(String::new());
        };
        let tool = compat.tool();
        let entry = |version: Version| {
            let made = match set.get(version) {
                Some(m) => ForeignEntry::of(tool, m),
                None => ForeignEntry::version_only(tool, version),
            };
            made.map_err(|e| sqlx::Error::Configuration(Box::new(e)))
        };
        let mut sql = String::new();
        for old in existing.iter().filter(|o| !rows.iter().any(|r| r.version == o.version)) {
            sql.push_str(&compat.record(&entry(old.version)?, Mark::Reverted, None));
        }
        for row in rows {
            sql.push_str(&compat.record(&entry(row.version)?, Mark::Applied, None));
        }
        Ok(sql)
    }

    /// A snapshot of the tenant's catalog, fleetmig's own tables left out.
    pub async fn catalog(&mut self) -> Result<crate::model::catalog::Catalog, DbError> {
        match self.wire.catalog().await {
            Ok(catalog) => Ok(catalog),
            Err(e) => Err(self.fail(ErrorKind::Sql, "reading the catalog", e)),
        }
    }

    /// Runs a gate query on the tenant.
    pub async fn check(&mut self, sql: &str) -> Result<bool, DbError> {
        match self.wire.check(sql).await {
            Ok(ok) => Ok(ok),
            Err(e) => Err(self.fail(ErrorKind::Sql, "running the check query", e)),
        }
    }

    /// Unlocks and hands the session back; a broken one is closed instead.
    pub async fn release(mut self) {
        let clean = !self.broken && self.wire.unlock().await.is_ok();
        self.wire.finish(clean).await;
    }
}

/// A step's history row, the kept tool's row of its migration, and its direction.
#[derive(Clone, Copy)]
struct StepRow<'a> {
    row: &'a Applied,
    entry: Option<&'a ForeignEntry>,
    direction: Direction,
}

/// What the kept tool's table says of a step's migration once the step is done.
fn done(direction: Direction) -> Mark {
    match direction {
        Direction::Up => Mark::Applied,
        Direction::Down => Mark::Reverted,
    }
}

/// A step's script, what to call it in messages, and the history row it writes.
fn describe(step: Step<'_>) -> (&crate::model::migration::Script, String, Applied) {
    let m = step.migration;
    let script = m
        .script(step.direction)
        .expect("plans only revert reversible migrations");
    let verb = match step.direction {
        Direction::Up => "applying",
        Direction::Down => "reverting",
    };
    let row = Applied {
        version: m.version,
        name: m.name.clone(),
        checksum: m.checksum.to_hex(),
        dirty: false,
    };
    (script, format!("{verb} {}", m.label()), row)
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}
