//! A fleet's migrations: one set for every tenant, or one set per database engine
//! (`migrations/postgres/`, `migrations/mysql/`, `migrations/sqlite/`), each with its own
//! versions and head.

use std::collections::BTreeMap;
use std::fmt;

use crate::model::fleet::{Engine, Tenant};
use crate::model::migration::{BadVersion, MigrationSet, Version, VersionStyle};

/// The sets a fleet's tenants are migrated with.
#[derive(Debug, Clone)]
pub enum Sets {
    /// One set for every tenant, whatever its engine.
    One(MigrationSet),
    /// A set per engine; a tenant uses its engine's.
    PerEngine(BTreeMap<Engine, MigrationSet>),
}

/// A tenant of the fleet whose engine has no folder of its own.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("tenant `{tenant}` is a {engine} tenant, and the migrations have no {engine} folder (they have: {have})")]
pub struct NoSetForEngine {
    pub tenant: String,
    pub engine: Engine,
    pub have: String,
}

impl From<MigrationSet> for Sets {
    fn from(set: MigrationSet) -> Sets {
        Sets::One(set)
    }
}

impl Sets {
    /// Checks that every one of `tenants` has a set: before anything runs.
    pub fn covers<'t>(&self, mut tenants: impl Iterator<Item = &'t Tenant>) -> Result<(), NoSetForEngine> {
        let Sets::PerEngine(map) = self else {
            return Ok(());
        };
        match tenants.find(|t| !map.contains_key(&t.engine)) {
            None => Ok(()),
            Some(t) => Err(NoSetForEngine {
                tenant: t.id.to_string(),
                engine: t.engine,
                have: map.keys().map(Engine::to_string).collect::<Vec<_>>().join(", "),
            }),
        }
    }

    /// Only the sets of `tenants`' engines: a command on some tenants is checked against
    /// the sets it uses (`--to` a version only their folders have, a down past a
    /// migration only another engine's folder cannot revert). [`Sets::covers`] first.
    pub fn narrowed<'t>(self, tenants: impl Iterator<Item = &'t Tenant>) -> Sets {
        match self {
            Sets::One(set) => Sets::One(set),
            Sets::PerEngine(mut map) => {
                let used: std::collections::BTreeSet<Engine> = tenants.map(|t| t.engine).collect();
                map.retain(|e, _| used.contains(e));
                Sets::PerEngine(map)
            }
        }
    }

    /// These sets, each running out-of-order migrations when `allowed` (see
    /// [`MigrationSet::with_out_of_order`]).
    pub fn with_out_of_order(self, allowed: bool) -> Sets {
        match self {
            Sets::One(set) => Sets::One(set.with_out_of_order(allowed)),
            Sets::PerEngine(map) => Sets::PerEngine(
                map.into_iter()
                    .map(|(e, s)| (e, s.with_out_of_order(allowed)))
                    .collect(),
            ),
        }
    }

    /// The set `engine`'s tenants use.
    ///
    /// # Panics
    /// When the sets are per engine and `engine` has none: [`Sets::covers`] refuses such a
    /// fleet before any tenant is looked at.
    pub fn of(&self, engine: Engine) -> &MigrationSet {
        match self {
            Sets::One(set) => set,
            Sets::PerEngine(map) => map
                .get(&engine)
                .unwrap_or_else(|| panic!("no {engine} migrations: Sets::covers checks the fleet first")),
        }
    }

    /// The set `engine`'s tenants use, if there is one.
    pub fn get(&self, engine: Engine) -> Option<&MigrationSet> {
        match self {
            Sets::One(set) => Some(set),
            Sets::PerEngine(map) => map.get(&engine),
        }
    }

    /// The one set, when there is only one.
    pub fn single(&self) -> Option<&MigrationSet> {
        match self {
            Sets::One(set) => Some(set),
            Sets::PerEngine(_) => None,
        }
    }

    /// Every set, with its engine when the sets are per engine.
    pub fn iter(&self) -> Box<dyn Iterator<Item = (Option<Engine>, &MigrationSet)> + '_> {
        match self {
            Sets::One(set) => Box::new(std::iter::once((None, set))),
            Sets::PerEngine(map) => Box::new(map.iter().map(|(e, s)| (Some(*e), s))),
        }
    }

    /// A SHA-256 over every migration's version, name and checksum and every repeatable's
    /// name and checksum, set by set (each with its engine), in hex: the same files, the
    /// same fingerprint. The ledger keeps it per run.
    pub fn fingerprint(&self) -> String {
        use sha2::{Digest, Sha256};
        let mut hash = Sha256::new();
        for (engine, set) in self.iter() {
            hash.update(format!("set {}\n", engine.map(|e| e.to_string()).unwrap_or_default()));
            for m in set.iter() {
                hash.update(format!("{}\0{}\0{}\n", m.version, m.name, m.checksum));
            }
            for r in set.repeatables() {
                hash.update(format!("R\0{}\0{}\n", r.name, r.checksum));
            }
        }
        hash.finalize().iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The head: the set's newest version, or [`Version::HEAD`] (each set's own) per engine.
    pub fn head(&self) -> Version {
        match self {
            Sets::One(set) => set.head(),
            Sets::PerEngine(_) => Version::HEAD,
        }
    }

    /// `v` as `engine`'s tenants reach it: [`Version::HEAD`] is their set's head, any other
    /// version is read in their set's style.
    pub fn resolve(&self, engine: Engine, v: Version) -> Version {
        let set = self.of(engine);
        if v == Version::HEAD {
            return set.head();
        }
        v.restyled(set.style()).unwrap_or(v)
    }

    /// The style `engine`'s history rows are read in.
    pub fn style(&self, engine: Engine) -> VersionStyle {
        match self {
            Sets::One(set) => set.style(),
            Sets::PerEngine(map) => map.get(&engine).map_or_else(VersionStyle::default, MigrationSet::style),
        }
    }

    /// Whether any set has a migration matching `pred`.
    pub fn any_migration(
        &self,
        mut pred: impl FnMut(&MigrationSet, &crate::model::migration::Migration) -> bool,
    ) -> bool {
        self.iter().any(|(_, set)| set.iter().any(|m| pred(set, m)))
    }

    /// Reads `v` in every set's style, for a target given before the sets were known.
    pub fn restyled(&self, v: Version) -> Result<Version, BadVersion> {
        match self {
            Sets::One(set) => v.restyled(set.style()),
            Sets::PerEngine(map) => {
                for set in map.values() {
                    v.restyled(set.style())?;
                }
                Ok(v)
            }
        }
    }
}

impl fmt::Display for Sets {
    /// Where each engine's heads are, for messages: `head 7` or `postgres head 7, sqlite head 3`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Sets::One(set) => write!(f, "head {}", set.head()),
            Sets::PerEngine(map) => {
                let heads: Vec<String> = map.iter().map(|(e, s)| format!("{e} head {}", s.head())).collect();
                f.write_str(&heads.join(", "))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::migration::Migration;

    fn set(versions: &[i64]) -> MigrationSet {
        MigrationSet::new(
            versions
                .iter()
                .map(|v| {
                    Migration::new(
                        Version::int(*v),
                        "m".into(),
                        "SELECT 1".into(),
                        None,
                        format!("{v}_m.up.sql").into(),
                    )
                })
                .collect(),
        )
        .unwrap()
    }

    #[test]
    fn head_resolves_per_engine() {
        let sets = Sets::PerEngine(BTreeMap::from([
            (Engine::Postgres, set(&[1, 2, 3])),
            (Engine::Sqlite, set(&[1])),
        ]));
        assert_eq!(sets.head(), Version::HEAD);
        assert_eq!(sets.resolve(Engine::Postgres, Version::HEAD), Version::int(3));
        assert_eq!(sets.resolve(Engine::Sqlite, Version::HEAD), Version::int(1));
        assert_eq!(sets.resolve(Engine::Sqlite, Version::ZERO), Version::ZERO);
        assert!(Version::HEAD > Version::int(i64::MAX) && Version::ZERO < Version::HEAD);
        assert_eq!(sets.to_string(), "postgres head 3, sqlite head 1");
    }
}
