//! A second interrupt abandons the tenants in flight: each is reported from where its
//! history says it is once its session ended, never from a guess.

use super::{AFTER_ABANDON, Dispatcher};
use crate::exec::events::Event;
use crate::exec::tenant::{self, Action};
use crate::exec::work::{Unread, Work};
use crate::model::db_error::{DbError, ErrorKind};
use crate::model::fleet::Tenant;
use crate::model::migration::{Applied, MigrationSet};
use crate::model::run::{Outcome, Phase, TenantReport};
use crate::model::sets::Sets;
use crate::plan::tenant::Target;

impl<W: Work> Dispatcher<'_, W> {
    /// Reports the abandoned slots `ids` from their histories, read once their sessions
    /// ended (within what is left of [`AFTER_ABANDON`]), and announces each.
    pub(super) async fn abandon_in_flight(
        &mut self,
        mut ids: Vec<usize>,
        progress: &tenant::Tracker,
    ) -> Vec<TenantReport> {
        ids.sort_unstable();
        let tenants: Vec<&Tenant> = ids.iter().map(|&i| self.slots[i].tenant).collect();
        let settled = self.work.settled(&tenants, self.within(AFTER_ABANDON)).await;
        let mut reports = Vec::with_capacity(ids.len());
        for (i, read) in ids.into_iter().zip(settled) {
            let tenant = self.slots[i].tenant;
            let known = progress.lock().expect("not poisoned").remove(&tenant.id);
            let report = abandoned_report(tenant, self.ctx.sets, self.action, read, known);
            self.events.emit(Event::TenantFinished {
                wave: self.slots[i].wave,
                report: report.clone(),
            });
            self.slots[i].report = Some(report.clone());
            reports.push(report);
        }
        reports
    }
}

const WHY: &str = "abandoned by a second interrupt (Ctrl-C or SIGTERM)";

/// What a tenant abandoned in flight reports: where its history says it is once its
/// session ended, or that this is unknown. Never a guess. `known`: what its task noted
/// before it was dropped (where it started, where its plan went, the steps it completed).
pub(crate) fn abandoned_report(
    t: &Tenant,
    sets: &Sets,
    action: Action<'_>,
    read: Result<Vec<Applied>, Unread>,
    known: Option<tenant::Progress>,
) -> TenantReport {
    let known = known.unwrap_or_default();
    let (set, action) = (sets.of(t.engine), action.resolved(sets, t.engine));
    let (outcome, final_version) = match read {
        Err(e) => (
            failed(
                None,
                format!(
                    "{WHY}; its version is unknown: its history could not be read once its session ended ({e}); \
                     `fleetmig status` reads it"
                ),
                false,
            ),
            None,
        ),
        Ok(rows) => {
            let now = crate::plan::tenant::version_of(&rows);
            (settled_outcome(set, action, &rows, known.to), Some(now))
        }
    };
    TenantReport {
        id: t.id.clone(),
        outcome,
        start_version: known.start,
        final_version,
        steps: known.steps,
    }
}

fn failed(version: Option<crate::model::migration::Version>, message: String, dirty: bool) -> Outcome {
    Outcome::Failed {
        version,
        during: Phase::Migrating,
        error: DbError::new(ErrorKind::Sql, "migrating", message),
        dirty,
    }
}

/// The outcome of an abandoned tenant whose history reads `rows`; `planned_to`: where its
/// plan went, when its task noted it.
fn settled_outcome(
    set: &MigrationSet,
    action: Action<'_>,
    rows: &[Applied],
    planned_to: Option<crate::model::migration::Version>,
) -> Outcome {
    let now = crate::plan::tenant::version_of(rows);
    let target = match action {
        Action::Migrate(Target::Up { to } | Target::Down { to }) | Action::Stamp(to) => Some(to),
        Action::Migrate(Target::DownSteps { .. }) => planned_to,
        Action::Checksums(_) => Some(now),
        // What it was to record was read under the lock it lost: not known here.
        Action::Adopt(_) => None,
    };
    if let Some(row) = rows.iter().find(|r| r.dirty) {
        return failed(
            Some(row.version),
            format!(
                "{WHY} during migration {}, which runs outside a transaction: its history marks it dirty",
                row.version
            ),
            true,
        );
    }
    if target == Some(now) {
        return Outcome::Succeeded;
    }
    // The migration it was in, or about to start: the next one from where it is.
    let next = match action {
        Action::Migrate(Target::Up { .. }) => set.iter().map(|m| m.version).find(|m| *m > now),
        Action::Migrate(_) => Some(now),
        Action::Stamp(_) | Action::Checksums(_) | Action::Adopt(_) => None,
    };
    failed(
        next,
        format!("{WHY}; read once its session ended, its history shows version {now}"),
        false,
    )
}
