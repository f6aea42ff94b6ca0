//! `drift`'s decision, pure: tenants grouped by engine, version and catalog fingerprint,
//! each version's groups held to its reference (or, with none, to the fingerprint most of
//! its tenants share, said so), the others reported with their diff.

use std::collections::{BTreeMap, HashMap};

use crate::model::catalog::Catalog;
use crate::model::drift::{Outliers, Reference, ReferenceError, Unchecked, UncheckedTenant, VersionGroup};
use crate::model::fleet::Engine;
use crate::model::migration::Version;

/// A tenant's catalog as read, at the version its history gives.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub tenant: String,
    pub engine: Engine,
    pub version: Version,
    pub catalog: Catalog,
}

/// The truth for one engine and version: a reference and its catalog, or why it could
/// not be made. An engine and version with no entry is held to its majority.
pub type References = HashMap<(Engine, Version), Result<(Reference, Catalog), ReferenceError>>;

/// Each engine and version's tenants compared with its reference; tenants whose reference
/// failed are returned as unchecked. Groups in engine and version order; outliers by
/// size, then first tenant.
pub fn compare(snapshots: &[Snapshot], references: &References) -> (Vec<VersionGroup>, Vec<UncheckedTenant>) {
    let mut by_version: BTreeMap<(Engine, Version), Vec<&Snapshot>> = BTreeMap::new();
    for s in snapshots {
        by_version.entry((s.engine, s.version)).or_default().push(s);
    }
    let mut groups = Vec::new();
    let mut unchecked = Vec::new();
    for ((engine, version), tenants) in by_version {
        let mut prints: BTreeMap<String, Vec<&Snapshot>> = BTreeMap::new();
        for s in &tenants {
            prints.entry(s.catalog.fingerprint()).or_default().push(s);
        }
        let (reference, truth) = match references.get(&(engine, version)) {
            Some(Ok((reference, catalog))) => (reference.clone(), catalog.fingerprint()),
            Some(Err(error)) => {
                unchecked.extend(tenants.iter().map(|s| UncheckedTenant {
                    tenant: s.tenant.clone(),
                    why: Unchecked::NoReference {
                        error: error.to_string(),
                    },
                }));
                continue;
            }
            None => majority(&prints, tenants.len()),
        };
        let expected: Option<&Catalog> = match references.get(&(engine, version)) {
            Some(Ok((_, catalog))) => Some(catalog),
            _ => prints.get(&truth).map(|s| &s[0].catalog),
        };
        let expected = expected.expect("a majority is one of the fingerprints");
        let mut outliers: Vec<Outliers> = prints
            .iter()
            .filter(|(print, _)| **print != truth)
            .map(|(print, alike)| Outliers {
                tenants: alike.iter().map(|s| s.tenant.clone()).collect(),
                fingerprint: print.clone(),
                diff: alike[0].catalog.diff(expected),
            })
            .collect();
        outliers.sort_by(|a, b| b.tenants.len().cmp(&a.tenants.len()).then(a.tenants.cmp(&b.tenants)));
        groups.push(VersionGroup {
            engine,
            version,
            reference,
            tenants: tenants.len(),
            matching: prints.get(&truth).map_or(0, Vec::len),
            outliers,
        });
    }
    (groups, unchecked)
}

/// The fingerprint most tenants share (on a tie, the first in fingerprint order, so the
/// answer does not depend on read order).
fn majority(prints: &BTreeMap<String, Vec<&Snapshot>>, among: usize) -> (Reference, String) {
    let (print, alike) = prints
        .iter()
        .rev()
        .max_by_key(|(_, alike)| alike.len())
        .expect("a version group has a tenant");
    (Reference::Majority { of: alike.len(), among }, print.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::catalog::{Kind, Object};

    fn catalog(extra_index: bool) -> Catalog {
        let mut objects = vec![Object::new(Kind::Table, "users")];
        if extra_index {
            objects.push(Object::new(Kind::Index, "users_email_idx"));
        }
        Catalog::new(objects)
    }

    fn snap(tenant: &str, version: i64, extra: bool) -> Snapshot {
        Snapshot {
            tenant: tenant.into(),
            engine: Engine::Postgres,
            version: Version::int(version),
            catalog: catalog(extra),
        }
    }

    #[test]
    fn the_outliers_are_grouped_with_their_diff() {
        let snaps = [
            snap("a", 2, false),
            snap("b", 2, true),
            snap("c", 2, true),
            snap("d", 2, false),
        ];
        let mut refs = References::new();
        let scratch = Reference::Scratch {
            place: "temporary file".into(),
        };
        refs.insert(
            (Engine::Postgres, Version::int(2)),
            Ok((scratch.clone(), catalog(false))),
        );
        let (groups, unchecked) = compare(&snaps, &refs);
        assert!(unchecked.is_empty());
        assert_eq!(groups.len(), 1);
        assert_eq!(groups[0].reference, scratch);
        assert_eq!(groups[0].matching, 2);
        assert_eq!(groups[0].outliers[0].tenants, ["b", "c"]);
        assert_eq!(groups[0].outliers[0].diff.len(), 1);
    }

    #[test]
    fn with_no_reference_the_majority_is_the_truth_and_says_so() {
        let snaps = [snap("a", 1, true), snap("b", 1, false), snap("c", 1, false)];
        let (groups, _) = compare(&snaps, &References::new());
        assert_eq!(groups[0].reference, Reference::Majority { of: 2, among: 3 });
        assert_eq!(groups[0].outliers[0].tenants, ["a"]);
    }

    #[test]
    fn a_failed_reference_leaves_its_tenants_unchecked_not_drifted() {
        let snaps = [snap("a", 1, false), snap("b", 2, false)];
        let mut refs = References::new();
        refs.insert(
            (Engine::Postgres, Version::int(1)),
            Err(ReferenceError("0001 fails".into())),
        );
        let (groups, unchecked) = compare(&snaps, &refs);
        assert_eq!(groups.len(), 1);
        assert_eq!(groups[0].version, Version::int(2));
        assert_eq!(unchecked.len(), 1);
        assert_eq!(unchecked[0].tenant, "a");
    }
}
