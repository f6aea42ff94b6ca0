//! The migration protocol, written once over each engine's few primitives.
//!
//! A step that can run in a transaction commits its script and its history row together.
//! One that cannot (MySQL DDL, `-- fleetmig: no-transaction`) writes a dirty history row
//! first and clears it after, so a failure part way leaves a mark that refuses later runs.

use std::future::Future;
use std::time::{Duration, Instant};

use crate::driver::error::{DbError, ErrorKind};
use crate::model::fleet::Engine;
use crate::model::migration::{Applied, Direction, Version};
use crate::plan::tenant::Step;

/// What each engine provides. Every method is a round trip or a few; none decides anything.
pub trait Wire: Send {
    const ENGINE: Engine;
    /// The statement that opens a write transaction.
    const BEGIN: &'static str;

    /// The whole of a transactional step (begin, script, history write, commit) as one text
    /// to send in one round trip, where the engine allows it; `None` runs it statement by
    /// statement.
    /// `wrap`: add the transaction's begin and commit around it.
    fn step_sql(
        &self,
        _script: &str,
        _row: &Applied,
        _direction: Direction,
        _run_id: &str,
        _wrap: bool,
    ) -> Option<String> {
        None
    }

    /// All of a tenant's steps in one transaction, begin to commit, as one text to send in
    /// one round trip (`--tx per-tenant`). Each step's history write returns one row whose
    /// first column is named `fleetmig_step`, holding the version, and whose second holds
    /// the step's duration in milliseconds, so a failure can be placed. `None` runs it step
    /// by step.
    fn tenant_sql(&self, _steps: &[(&str, &Applied, Direction)], _run_id: &str) -> Option<String> {
        None
    }

    /// Runs `tenant_sql`'s text: the `(version, duration_ms)` of the steps it finished, and
    /// how it ended.
    fn batch_steps(&mut self, _sql: &str) -> impl Future<Output = (Vec<(i64, i64)>, Result<(), sqlx::Error>)> + Send {
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
    /// Runs a gate query; true when its first column of its first row is true (or non-zero).
    fn check(&mut self, sql: &str) -> impl Future<Output = Result<bool, sqlx::Error>> + Send;
    /// Releases the tenant lock and resets the session, ready for reuse.
    fn unlock(&mut self) -> impl Future<Output = Result<(), sqlx::Error>> + Send;
    /// Ends the session: back to its pool when `clean`, closed otherwise.
    fn finish(self, clean: bool) -> impl Future<Output = ()> + Send;
}

/// An open, locked session on one tenant.
pub struct Session<W: Wire> {
    wire: W,
    /// The password in this tenant's URL, scrubbed from every message.
    secret: Option<String>,
    /// Set by any error: the session is closed at the end, never reused.
    broken: bool,
}

impl<W: Wire> Session<W> {
    pub fn new(wire: W, secret: Option<String>) -> Self {
        Session {
            wire,
            secret,
            broken: false,
        }
    }

    fn fail(&mut self, kind: ErrorKind, op: impl Into<String>, err: sqlx::Error) -> DbError {
        self.broken = true;
        DbError::sqlx(kind, op, &err, self.secret.as_deref())
    }

    pub async fn applied(&mut self) -> Result<Vec<Applied>, DbError> {
        match self.wire.read_history().await {
            Ok(rows) => Ok(rows),
            Err(e) => Err(self.fail(ErrorKind::Sql, "reading fleetmig_history", e)),
        }
    }

    /// Runs one step and records it; returns how long the script took.
    pub async fn run_step(&mut self, step: Step<'_>, run_id: &str) -> Result<Duration, DbError> {
        let (script, op, row) = describe(step);
        let in_tx = script.transactional && W::ENGINE.has_transactional_ddl();
        let started = Instant::now();
        let one_trip = if in_tx {
            self.wire.step_sql(&script.sql, &row, step.direction, run_id, true)
        } else {
            None
        };
        let result = if let Some(sql) = one_trip {
            self.wire.batch(&sql).await.map_err(|e| (true, e))
        } else if in_tx {
            self.step_in_transaction(&row, step.direction, &script.sql, run_id, started)
                .await
        } else {
            self.step_marked_dirty(&row, step.direction, &script.sql, run_id, started)
                .await
        };
        result.map_err(|(what, e)| {
            self.fail(
                ErrorKind::Sql,
                if what { op } else { format!("{op}: recording history") },
                e,
            )
        })?;
        Ok(started.elapsed())
    }

    /// `Err((true, e))` when the script failed, `Err((false, e))` when the bookkeeping did.
    async fn step_in_transaction(
        &mut self,
        row: &Applied,
        direction: Direction,
        sql: &str,
        run_id: &str,
        started: Instant,
    ) -> Result<(), (bool, sqlx::Error)> {
        self.wire.before_steps().await.map_err(|e| (false, e))?;
        self.wire.batch(W::BEGIN).await.map_err(|e| (false, e))?;
        self.wire.batch(sql).await.map_err(|e| (true, e))?;
        self.wire.verify_step().await.map_err(|e| (true, e))?;
        let ms = millis(started.elapsed());
        match direction {
            Direction::Up => self.wire.insert_row(row, ms, run_id).await,
            Direction::Down => self.wire.delete_row(row.version).await,
        }
        .map_err(|e| (false, e))?;
        self.wire.batch("COMMIT").await.map_err(|e| (true, e))
    }

    async fn step_marked_dirty(
        &mut self,
        row: &Applied,
        direction: Direction,
        sql: &str,
        run_id: &str,
        started: Instant,
    ) -> Result<(), (bool, sqlx::Error)> {
        match direction {
            Direction::Up => {
                let dirty = Applied {
                    dirty: true,
                    ..row.clone()
                };
                self.wire.before_steps().await.map_err(|e| (false, e))?;
                self.wire.insert_row(&dirty, 0, run_id).await.map_err(|e| (false, e))?;
                self.wire.batch(sql).await.map_err(|e| (true, e))?;
                self.wire.verify_step().await.map_err(|e| (true, e))?;
                let ms = millis(started.elapsed());
                self.wire
                    .mark_row(row.version, false, Some(ms))
                    .await
                    .map_err(|e| (false, e))
            }
            Direction::Down => {
                self.wire
                    .mark_row(row.version, true, None)
                    .await
                    .map_err(|e| (false, e))?;
                self.wire.before_steps().await.map_err(|e| (false, e))?;
                self.wire.batch(sql).await.map_err(|e| (true, e))?;
                self.wire.verify_step().await.map_err(|e| (true, e))?;
                self.wire.delete_row(row.version).await.map_err(|e| (false, e))
            }
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
        let started = Instant::now();
        let result = match self.wire.step_sql(&script.sql, &row, step.direction, run_id, false) {
            Some(sql) => self.wire.batch(&sql).await,
            None => {
                let ran = match self.wire.batch(&script.sql).await {
                    Ok(()) => self.wire.verify_step().await,
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
        let parts: Vec<(&str, &Applied, Direction)> = described
            .iter()
            .zip(steps)
            .map(|((script, _, row), step)| (script.sql.as_str(), row, step.direction))
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
                    let ms = done.iter().find(|(v, _)| *v == row.version.0).map_or(0, |(_, ms)| *ms);
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

    /// Makes the history hold exactly `rows` (dirty flags cleared), without running scripts.
    pub async fn stamp(&mut self, rows: &[Applied], run_id: &str) -> Result<(), DbError> {
        let result = async {
            let existing = self.wire.read_history().await?;
            self.wire.batch(W::BEGIN).await?;
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
