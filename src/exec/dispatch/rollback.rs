//! After the waves: rolling back what the policy asks, and reading where the tenants the
//! run never reached really are.

use std::collections::HashMap;
use std::sync::atomic::AtomicBool;

use futures::StreamExt;

use super::{AFTER_ABANDON, Dispatcher, END_SHARE, Slot, abandoned_report};
use crate::exec::events::{Event, Events};
use crate::exec::run::host_caps;
use crate::exec::tenant::{Action, Job};
use crate::exec::work::Work;
use crate::model::fleet::Tenant;
use crate::model::migration::Version;
use crate::model::policy::{RollbackPolicy, StopReason};
use crate::model::run::{Outcome, TenantReport};
use crate::plan::tenant::Target;

impl<W: Work> Dispatcher<'_, W> {
    fn wants_rollback(&self, slot: &Slot<'_>, stop_wave: Option<usize>) -> bool {
        let Some(report) = &slot.report else { return false };
        let incomplete = matches!(report.outcome, Outcome::Failed { .. } | Outcome::Stopped);
        let moved = report.final_version.is_some() && report.final_version != report.start_version;
        if !moved {
            return false;
        }
        match self.policy.rollback {
            RollbackPolicy::None => false,
            RollbackPolicy::Failed => incomplete,
            RollbackPolicy::Wave => incomplete || (stop_wave == Some(slot.wave) && self.reason.is_failure()),
            RollbackPolicy::Run => incomplete || self.reason.is_failure(),
        }
    }

    /// Takes back, down to where each started, the tenants the policy names (only after
    /// `up`). A second interrupt abandons the rollbacks in flight: each is then reported
    /// from its history, read once its session ended.
    pub(super) async fn rollback(&mut self, stop_wave: Option<usize>) {
        if !matches!(self.action, Action::Migrate(Target::Up { .. })) {
            return;
        }
        let chosen: Vec<usize> = (0..self.slots.len())
            .filter(|i| self.wants_rollback(&self.slots[*i], stop_wave))
            .collect();
        if chosen.is_empty() {
            return;
        }
        self.events.emit(Event::RollbackStarted { tenants: chosen.len() });
        let starts: HashMap<usize, Version> = chosen
            .iter()
            .map(|&i| {
                let start = self.slots[i].report.as_ref().and_then(|r| r.start_version);
                (i, start.unwrap_or(Version::ZERO))
            })
            .collect();
        if !self.roll_back(&chosen, &starts).await {
            self.abandon_rollbacks(chosen, &starts).await;
        }
    }

    /// Runs the rollbacks of `chosen` under the host caps; false when a second interrupt
    /// abandoned them.
    async fn roll_back(&mut self, chosen: &[usize], starts: &HashMap<usize, Version>) -> bool {
        let never = AtomicBool::new(false);
        let tenants: Vec<&Tenant> = self.slots.iter().map(|s| s.tenant).collect();
        let caps = host_caps(self.ctx, &tenants);
        let (ctx, work, events, never) = (self.ctx, self.work, self.events, &never);
        let todo: Vec<(usize, &Tenant, usize, Option<Version>)> = chosen
            .iter()
            .map(|&i| {
                let slot = &self.slots[i];
                (
                    i,
                    slot.tenant,
                    slot.wave,
                    slot.report.as_ref().and_then(|r| r.final_version),
                )
            })
            .collect();
        let mut stream = futures::stream::iter(todo)
            .map(|(i, t, wave, left_at)| {
                let cap = caps[&t.server_key()].clone();
                let to = starts[&i];
                async move {
                    let _permit = cap.acquire_owned().await.expect("host semaphores are never closed");
                    let began = tokio::time::Instant::now();
                    let quiet = events.retries_only();
                    let job = Job {
                        set: ctx.sets.of(t.engine),
                        action: Action::Migrate(Target::Down { to }),
                        per_tenant_tx: false,
                        retry: ctx.retry,
                        run_id: &ctx.run_id,
                        wave,
                        events: &quiet,
                        stop: never,
                        progress: None,
                        host: None,
                    };
                    let mut report = work.run(t, job).await;
                    if matches!(report.outcome, Outcome::Skipped { .. }) && report.final_version.is_none() {
                        // It never reached the tenant (locked, unreachable): the tenant is
                        // where the run left it, a version the run knows.
                        report.start_version = left_at;
                        report.final_version = left_at;
                    }
                    rolled_back_event(events, t, wave, &report);
                    (i, report, began)
                }
            })
            .buffer_unordered(self.ctx.concurrency.max(1));
        loop {
            tokio::select! {
                next = stream.next() => match next {
                    Some((i, report, began)) => {
                        self.slots[i].rollback = Some(Box::new(report));
                        self.slots[i].rollback_span = Some([self.ms(began), self.ms(tokio::time::Instant::now())]);
                    }
                    None => return true,
                },
                Some(()) = self.interrupts.recv() => {
                    if self.interrupted() {
                        return false;
                    }
                }
            }
        }
    }

    /// The rollbacks a second interrupt cut short, reported from their histories.
    async fn abandon_rollbacks(&mut self, chosen: Vec<usize>, starts: &HashMap<usize, Version>) {
        self.escalate(StopReason::Abandoned);
        let cut: Vec<usize> = chosen
            .into_iter()
            .filter(|&i| self.slots[i].rollback.is_none())
            .collect();
        let tenants: Vec<&Tenant> = cut.iter().map(|&i| self.slots[i].tenant).collect();
        let settled = self.work.settled(&tenants, self.within(AFTER_ABANDON)).await;
        for (i, read) in cut.into_iter().zip(settled) {
            let action = Action::Migrate(Target::Down { to: starts[&i] });
            let report = abandoned_report(self.slots[i].tenant, self.ctx.sets, action, read, None);
            if report.final_version.is_none() {
                // Unknown, not where the run left it before the rollback began.
                if let Some(r) = self.slots[i].report.as_mut() {
                    r.final_version = None;
                }
            }
            self.events.emit(Event::TenantRolledBack {
                tenant: report.id.clone(),
                wave: self.slots[i].wave,
                from: None,
                to: report.final_version,
                error: match &report.outcome {
                    Outcome::Failed { error, .. } => Some(error.to_string()),
                    _ => None,
                },
            });
            self.slots[i].rollback = Some(Box::new(report));
        }
    }

    /// Reads the version of every tenant the run never reached, so the report says where
    /// each one really is. A second interrupt while it reads, or the time after an abandon
    /// running out, leaves those versions unknown.
    pub(super) async fn read_untouched(&mut self) {
        let untouched: Vec<usize> = (0..self.slots.len())
            .filter(|&i| {
                self.slots[i]
                    .report
                    .as_ref()
                    .is_some_and(|r| matches!(r.outcome, Outcome::NotStarted) && r.final_version.is_none())
            })
            .collect();
        if untouched.is_empty() {
            return;
        }
        let tenants: Vec<&Tenant> = untouched.iter().map(|&i| self.slots[i].tenant).collect();
        let work = self.work;
        let reading = work.read(&tenants);
        let read = if self.reason == StopReason::Abandoned {
            // The run's end is recorded after this read: it keeps its share of the time.
            let end = self.until(AFTER_ABANDON);
            let end = self.last_word.map_or(end, |last| end.min(last - END_SHARE));
            tokio::time::timeout_at(end, reading).await.ok()
        } else {
            self.interruptible(reading).await
        };
        let Some(read) = read else {
            for i in untouched {
                self.slots[i].unread =
                    Some("never started; its version was not read before the run had to end (unknown)".into());
            }
            return;
        };
        for (i, rows) in untouched.into_iter().zip(read) {
            match (self.slots[i].report.as_mut(), rows) {
                (Some(report), Ok(rows)) => {
                    let v = crate::plan::tenant::version_of(&rows);
                    report.start_version = Some(v);
                    report.final_version = Some(v);
                }
                (_, Err(e)) => self.slots[i].unread = Some(format!("never started; its version is unknown: {e}")),
                (None, Ok(_)) => {}
            }
        }
    }
}

fn rolled_back_event(events: &Events, t: &Tenant, wave: usize, report: &TenantReport) {
    let error = match &report.outcome {
        Outcome::Succeeded => None,
        Outcome::Failed { error, .. } => Some(error.to_string()),
        Outcome::Skipped { reason } => Some(reason.message()),
        Outcome::NotStarted | Outcome::Stopped => Some("did not run".to_owned()),
    };
    events.emit(Event::TenantRolledBack {
        tenant: t.id.clone(),
        wave,
        from: report.start_version,
        to: report.final_version,
        error,
    });
}
