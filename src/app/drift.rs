//! `drift`: which scratch targets and reference, then the comparison and its report.

use std::io::Write;

use super::exit::Outcome;
use crate::cli::{Format, Global};
use crate::error::Error;
use crate::exec::drift::DriftOptions;
use crate::model::drift::DriftReport;
use crate::model::fleet::{Fleet, Tenant, TenantId};
use crate::model::sets::Sets;

/// `drift`'s own arguments.
pub(super) struct Args<'a> {
    pub reference: Option<&'a str>,
    /// `--scratch` URLs, as given.
    pub scratch: &'a [String],
}

/// `drift`: compares every selected tenant's catalog with its version's reference.
pub(super) async fn drift(
    g: &Global,
    reference: Option<&str>,
    scratch: &[String],
    out: &mut (dyn Write + Send),
) -> Result<Outcome, Error> {
    let fleet = super::load_fleet(g).await?;
    let sets = super::load_set_of(g, &fleet)?;
    let report = report(g, &fleet, &sets, &Args { reference, scratch }).await?;
    match g.format {
        Format::Json => writeln!(out, "{}", crate::report::drift::json(&report))?,
        Format::Text | Format::Github | Format::Openmetrics => write!(out, "{}", crate::report::drift::text(&report))?,
    }
    Ok(Outcome::Drift(report.outcome()))
}

/// The drift report of the selected tenants, as `drift` and `status --drift` read it.
pub(super) async fn report(g: &Global, fleet: &Fleet, sets: &Sets, args: &Args<'_>) -> Result<DriftReport, Error> {
    let tenants = crate::api::selected(fleet, &g.select)?;
    let reference = match args.reference {
        Some(id) => Some(reference(id, &tenants)?),
        None => None,
    };
    let servers = super::check::servers(args.scratch, Some(fleet))?;
    let mut engines: Vec<_> = tenants.iter().map(|t| t.engine).collect();
    engines.sort();
    engines.dedup();
    let scratches = super::check::scratch_of(engines, &servers, &tenants);
    let options = DriftOptions { reference, scratches };
    crate::api::drift(fleet, sets, &super::options(g, None), &options).await
}

/// `--reference TENANT`: a selected tenant.
fn reference(id: &str, tenants: &[&Tenant]) -> Result<TenantId, Error> {
    tenants
        .iter()
        .find(|t| t.id.as_str() == id)
        .map(|t| t.id.clone())
        .ok_or_else(|| Error::Usage(format!("--reference {id}: no such tenant among those selected")))
}
