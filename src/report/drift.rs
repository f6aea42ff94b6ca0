//! `drift`'s report: per engine and version, what the tenants were held to and how many
//! match, then each group of outliers with its tenants and its diff; the tenants not
//! compared and why; a closing count.

use std::collections::HashMap;
use std::fmt::Write as _;

use crate::model::catalog::Difference;
use crate::model::drift::{DriftOutcome, DriftReport, Reference, Unchecked};

/// Tenant names shown per line in text before "and N more" (JSON lists them all).
pub const SHOWN: usize = 10;

/// The report for people.
pub fn text(report: &DriftReport) -> String {
    let mut out = String::new();
    for g in &report.groups {
        let _ = writeln!(
            out,
            "{} at {}: {} tenant(s), reference: {}",
            g.engine,
            g.version,
            g.tenants,
            reference(&g.reference)
        );
        let _ = writeln!(out, "  {} match", g.matching);
        for o in &g.outliers {
            let changes: Vec<String> = o.diff.iter().map(change).collect();
            let _ = writeln!(out, "  {} tenant(s): {}", o.tenants.len(), changes.join("; "));
            let _ = writeln!(out, "    {}", names(&o.tenants));
        }
    }
    if !report.unchecked.is_empty() {
        let _ = writeln!(out, "not compared:");
        for u in &report.unchecked {
            let _ = writeln!(out, "  {}: {}", u.tenant, unchecked(&u.why));
        }
    }
    let drifted = report.drifted().count();
    let compared: usize = report.groups.iter().map(|g| g.tenants).sum();
    let verdict = match report.outcome() {
        DriftOutcome::Clean => "no drift",
        DriftOutcome::Drift => "DRIFT",
        DriftOutcome::Unchecked => "NOT CHECKED",
    };
    let _ = writeln!(
        out,
        "drift: {verdict}: {drifted} of {compared} compared tenant(s) differ from their version's reference, {} not compared",
        report.unchecked.len()
    );
    out
}

/// A reference as the report names it; a majority is said to be one.
pub fn reference(r: &Reference) -> String {
    match r {
        Reference::Scratch { place } => format!("scratch ({place})"),
        Reference::Tenant { id } => format!("tenant {id} (--reference)"),
        Reference::Majority { of, among } => {
            format!("majority, {of} of {among} (no scratch server or --reference: a guess, not the truth)")
        }
    }
}

/// One difference as drift reads: what the tenant has that it should not, and so on.
pub fn change(d: &Difference) -> String {
    match d {
        Difference::Extra { kind, name } => format!("extra {kind} {name}"),
        Difference::Missing { kind, name } => format!("missing {kind} {name}"),
        Difference::Changed { .. } => d.to_string(),
    }
}

/// Each drifted tenant with how its catalog differs, on one line: what `status --drift`
/// shows.
pub fn by_tenant(report: &DriftReport) -> HashMap<String, String> {
    let mut out = HashMap::new();
    for o in report.groups.iter().flat_map(|g| &g.outliers) {
        let how = o.diff.iter().map(change).collect::<Vec<_>>().join("; ");
        for t in &o.tenants {
            out.insert(t.clone(), how.clone());
        }
    }
    out
}

fn names(tenants: &[String]) -> String {
    let mut shown = tenants.iter().take(SHOWN).cloned().collect::<Vec<_>>().join(", ");
    if tenants.len() > SHOWN {
        let _ = write!(shown, " and {} more", tenants.len() - SHOWN);
    }
    shown
}

fn unchecked(why: &Unchecked) -> String {
    match why {
        Unchecked::NoHistory => "no history (version 0): nothing to compare".to_owned(),
        Unchecked::Dirty { version } => format!("dirty at {version}: `fleetmig status` says what it needs"),
        Unchecked::Unreachable { error } => format!("could not be read: {error}"),
        Unchecked::NoReference { error } => format!("no reference for its version: {error}"),
    }
}

/// The report as one JSON document: the groups with every tenant, the diff both as data
/// and as the text shows it, and the outcome.
pub fn json(report: &DriftReport) -> String {
    let mut value = serde_json::to_value(report).expect("a drift report serialises");
    for (g, group) in report
        .groups
        .iter()
        .zip(value["groups"].as_array_mut().expect("a list"))
    {
        group["reference_text"] = reference(&g.reference).into();
        for (o, outliers) in g.outliers.iter().zip(group["outliers"].as_array_mut().expect("a list")) {
            outliers["changes"] = o.diff.iter().map(change).collect::<Vec<_>>().into();
        }
    }
    value["drifted"] = report.drifted().collect::<Vec<_>>().into();
    value["outcome"] = serde_json::to_value(report.outcome()).expect("an outcome serialises");
    value.to_string()
}
