//! Exit codes: the documented constants, and the one function that turns what a command
//! came to into one of them, so `up` and `report RUN` can never disagree about a run.

use crate::error::Error;
use crate::model::drift::DriftOutcome;
use crate::model::policy::StopReason;
use crate::model::run::{RunReport, Status};

/// Success, or nothing to do.
pub const OK: u8 = 0;
/// A tenant failed or was skipped; for `status`, a tenant is not current.
pub const FAILED: u8 = 1;
/// Usage or configuration error: no tenant was touched.
pub const USAGE: u8 = 2;
/// A run ran, but its output (stdout, or the `--report` file) could not be written:
/// tenants may have changed; the ledger keeps the report (`fleetmig report RUN`).
pub const UNREPORTED: u8 = 3;
/// `drift`: no tenant drifted, but some could not be compared (unreachable, dirty, or no
/// reference for their version): the fleet's schema is not known to be right.
pub const UNCHECKED: u8 = 4;
/// A command that only reads (`status`, `plan`, `history`, `sql`, `runs`, ...) found its
/// standard output closed (`fleetmig history | head`): it ends quietly, with the code a
/// shell shows for a program SIGPIPE ended (128 + 13). A run (`up`, `down`, `stamp`)
/// whose output closes goes on to its end and exits `UNREPORTED`.
pub const CLOSED_OUTPUT: u8 = 141;

/// What a command came to, as far as its exit code goes.
#[derive(Debug)]
pub enum Outcome {
    /// Done: written, listed, or nothing to do.
    Done,
    /// `status`, `wait` and `plan`: whether every tenant is where it should be (current,
    /// arrived, plannable).
    Fleet { all_well: bool },
    /// A run's report: the run just made (`up`, `down`, `stamp`) or one read back from the
    /// ledger (`report RUN`).
    Run(Box<RunReport>),
    /// `drift`: drift is `FAILED`, tenants that could not be compared `UNCHECKED`.
    Drift(DriftOutcome),
}

/// The exit code for every command's result.
pub fn code(result: &Result<Outcome, Error>) -> u8 {
    match result {
        Ok(Outcome::Done) => OK,
        Ok(Outcome::Fleet { all_well }) => ok_if(*all_well),
        Ok(Outcome::Run(report)) => ok_if(ended_well(report)),
        Ok(Outcome::Drift(DriftOutcome::Clean)) => OK,
        Ok(Outcome::Drift(DriftOutcome::Drift)) => FAILED,
        Ok(Outcome::Drift(DriftOutcome::Unchecked)) => UNCHECKED,
        Err(Error::Unreported { .. }) => UNREPORTED,
        Err(Error::NothingHere(_)) => OK,
        Err(e) if is_closed_output(e) => CLOSED_OUTPUT,
        Err(_) => USAGE,
    }
}

/// True when `err` is only that the reader of standard output went away: nothing to say
/// on stderr about it.
pub fn is_closed_output(err: &Error) -> bool {
    matches!(err, Error::Output(e) if e.kind() == std::io::ErrorKind::BrokenPipe)
}

fn ok_if(well: bool) -> u8 {
    if well { OK } else { FAILED }
}

/// A run that reached its target, or that `--pause-after` paused with no tenant failed or
/// skipped: the tenants not started yet are the pause, not a failure.
fn ended_well(report: &RunReport) -> bool {
    let paused = matches!(report.stop_reason, StopReason::Paused { .. });
    let clean = report
        .tenants
        .iter()
        .all(|t| matches!(t.status, Status::Succeeded | Status::NotStarted));
    report.is_success() || (paused && clean)
}
