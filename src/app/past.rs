//! Commands that read past runs from the ledger: `runs`, `report RUN`. A ledger that does
//! not exist yet is not created.

use std::io::Write;
use std::path::Path;

use super::exit::Outcome;
use crate::cli::{Format, Global};
use crate::error::Error;
use crate::model::migration::MigrationSet;
use crate::model::sets::Sets;
use crate::report::run::{self as run_report, Rows};
use crate::report::tables;

/// `runs`: the newest `limit` runs.
pub(super) async fn runs(g: &Global, limit: i64, out: &mut (dyn Write + Send)) -> Result<Outcome, Error> {
    let fleet = super::load_fleet(g).await?;
    let runs = match super::open_ledger_if_any(g, &fleet).await? {
        Some(ledger) => ledger.runs(limit).await?,
        None => Vec::new(),
    };
    match g.format {
        Format::Json => writeln!(out, "{}", serde_json::json!({ "runs": runs }))?,
        Format::Text | Format::Github | Format::Openmetrics => write!(out, "{}", tables::runs_text(&runs))?,
    }
    Ok(Outcome::Done)
}

/// `report RUN`: a finished run's report, which decides the exit code as the run did;
/// `html`: also written there as a page.
pub(super) async fn report(
    g: &Global,
    run: &str,
    all: bool,
    html: Option<&Path>,
    out: &mut (dyn Write + Send),
) -> Result<Outcome, Error> {
    let fleet = super::load_fleet(g).await?;
    let report = match super::open_ledger_if_any(g, &fleet).await? {
        Some(ledger) => match ledger.report(run).await? {
            Some(report) => Some((report, ledger.plan(run).await?.and_then(|p| p.source))),
            None => None,
        },
        None => None,
    };
    let Some((report, source)) = report else {
        return Err(Error::Usage(format!(
            "the ledger holds no finished run `{run}` (see `fleetmig runs`)"
        )));
    };
    if let Some(path) = html {
        let page = crate::report::html::html(&report, source.as_ref());
        std::fs::write(path, page).map_err(|e| {
            Error::Usage(format!(
                "--html `{}`: cannot write the report there: {e}",
                path.display()
            ))
        })?;
    }
    match g.format {
        Format::Json => {
            let mut doc: serde_json::Value =
                serde_json::from_str(&run_report::json(&report)).expect("reports are JSON");
            if let Some(source) = &source {
                doc["source"] = serde_json::to_value(source).expect("sources serialize");
            }
            writeln!(out, "{doc}")?
        }
        Format::Text | Format::Github | Format::Openmetrics => {
            let more = format!("{} lists every tenant", super::report_command(g, run));
            let rows = if all {
                Rows::All
            } else {
                Rows::Screenful { more: &more }
            };
            // The grouped problems' advice reads the migrations folder when there is one.
            let sets = super::load_set_of(g, &fleet)
                .or_else(|_| MigrationSet::new(Vec::new()).map(Sets::One))
                .expect("an empty set has no duplicates");
            let grouped = crate::report::refusals::run_text(&sets, &report);
            let source = source.as_ref().map(run_report::source_line).unwrap_or_default();
            write!(out, "{}{grouped}{source}", run_report::text(&report, rows))?
        }
    }
    Ok(Outcome::Run(Box::new(report)))
}
