//! `drift`'s findings as plain data: per engine and version, what the tenants' catalogs
//! were compared with, and the tenants whose catalog differs from it, grouped by how.

use serde::Serialize;

use crate::model::catalog::Difference;
use crate::model::fleet::Engine;
use crate::model::migration::Version;

/// Why the reference for a version could not be made, as the report shows it: a migration
/// that fails on the scratch target, a scratch server that cannot be reached.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ReferenceError(pub String);

/// What a version's tenants were compared with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Reference {
    /// The catalog `check`'s scratch target had after the set's migrations up to the
    /// version: the truth.
    Scratch { place: String },
    /// A tenant's catalog, named by `--reference`: the truth by the user's word.
    Tenant { id: String },
    /// No truth to hand (no scratch server, no `--reference`): the catalog most of the
    /// version's tenants share, `of` out of `among`. A guess, and the report says so.
    Majority { of: usize, among: usize },
}

/// Tenants whose catalogs are alike and differ from the reference the same way.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Outliers {
    pub tenants: Vec<String>,
    /// The catalog's fingerprint, shared by these tenants.
    pub fingerprint: String,
    pub diff: Vec<Difference>,
}

/// One engine's tenants at one version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VersionGroup {
    pub engine: Engine,
    pub version: Version,
    pub reference: Reference,
    /// Tenants compared.
    pub tenants: usize,
    /// Of them, those whose catalog is the reference's.
    pub matching: usize,
    /// The others, the largest group first.
    pub outliers: Vec<Outliers>,
}

/// Why a tenant was not compared.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "reason", rename_all = "kebab-case")]
pub enum Unchecked {
    /// No history table, or an empty one: no version to hold its catalog to.
    NoHistory,
    /// A migration failed part way on it: `status` says what it needs.
    Dirty { version: Version },
    /// Its history or catalog could not be read.
    Unreachable { error: String },
    /// The reference for its version could not be made (a migration that fails on the
    /// scratch target, a scratch server that cannot be reached).
    NoReference { error: String },
}

impl Unchecked {
    /// Whether this means `drift` could not answer for the tenant (rather than that there
    /// is nothing to compare yet).
    pub fn is_failure(&self) -> bool {
        !matches!(self, Unchecked::NoHistory)
    }
}

/// A tenant not compared, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UncheckedTenant {
    pub tenant: String,
    #[serde(flatten)]
    pub why: Unchecked,
}

/// What `drift` found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DriftReport {
    pub groups: Vec<VersionGroup>,
    pub unchecked: Vec<UncheckedTenant>,
}

/// What a drift report comes to, as the exit code sees it: drift outranks a tenant that
/// could not be checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DriftOutcome {
    Clean,
    Drift,
    Unchecked,
}

impl DriftReport {
    /// The tenants whose catalog differs from their version's reference.
    pub fn drifted(&self) -> impl Iterator<Item = &str> {
        self.groups
            .iter()
            .flat_map(|g| &g.outliers)
            .flat_map(|o| o.tenants.iter().map(String::as_str))
    }

    pub fn outcome(&self) -> DriftOutcome {
        if self.drifted().next().is_some() {
            DriftOutcome::Drift
        } else if self.unchecked.iter().any(|u| u.why.is_failure()) {
            DriftOutcome::Unchecked
        } else {
            DriftOutcome::Clean
        }
    }
}
