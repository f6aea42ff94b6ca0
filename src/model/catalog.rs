//! A database's catalog as plain data: what a migration created, ordered and normalised,
//! with a stable fingerprint and a readable diff between two snapshots.
//!
//! Each engine's driver reads its catalog into [`Object`]s (a kind, a name, the table it
//! belongs to, and named attributes such as a column's type or an index's definition);
//! everything after that is engine-blind. fleetmig's own tables (`fleetmig_*`) and what
//! belongs to them are left out, so a snapshot shows only what migrations made.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;
use sha2::{Digest, Sha256};

/// What sort of catalog object, in the order a snapshot lists them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    Extension,
    EnumType,
    Sequence,
    Table,
    Column,
    Constraint,
    Index,
    View,
    Function,
    Trigger,
}

impl Kind {
    /// The kind in messages: `table`, `enum type`.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Extension => "extension",
            Kind::EnumType => "enum type",
            Kind::Sequence => "sequence",
            Kind::Table => "table",
            Kind::Column => "column",
            Kind::Constraint => "constraint",
            Kind::Index => "index",
            Kind::View => "view",
            Kind::Function => "function",
            Kind::Trigger => "trigger",
        }
    }

    /// Whether something of this kind that should be gone "still exists" (a table, a
    /// column: the schema's shape) or was "left behind" (what a dropped table leaves).
    fn lingers(self) -> &'static str {
        match self {
            Kind::Table | Kind::Column | Kind::View => "still exists",
            _ => "left behind",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One object as a driver read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Object {
    pub kind: Kind,
    /// Its name as messages show it: `users`, `users.plan` for a column.
    pub name: String,
    /// The table it belongs to (a column's, an index's), when it belongs to one.
    pub table: Option<String>,
    /// Named attributes (`type`, `nullable`, `default`, `collation`, `definition`,
    /// `labels`); an attribute the engine reports as NULL is left out.
    pub attrs: BTreeMap<String, String>,
}

impl Object {
    pub fn new(kind: Kind, name: impl Into<String>) -> Self {
        Object {
            kind,
            name: name.into(),
            table: None,
            attrs: BTreeMap::new(),
        }
    }

    /// True for fleetmig's own bookkeeping: its tables and what belongs to them.
    fn is_fleetmig(&self) -> bool {
        let own = |name: &str| name.to_ascii_lowercase().starts_with("fleetmig_");
        own(&self.name) || self.table.as_deref().is_some_and(own)
    }
}

/// A snapshot of one database's (or schema's) catalog: ordered by kind and name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Catalog {
    objects: BTreeMap<(Kind, String), Object>,
}

impl Catalog {
    /// The snapshot of `objects`, fleetmig's own left out, attribute text normalised
    /// (surrounding blanks trimmed, runs of white space made one space).
    pub fn new(objects: impl IntoIterator<Item = Object>) -> Self {
        let objects = objects
            .into_iter()
            .filter(|o| !o.is_fleetmig())
            .map(|mut o| {
                for value in o.attrs.values_mut() {
                    *value = value.split_whitespace().collect::<Vec<_>>().join(" ");
                }
                ((o.kind, o.name.clone()), o)
            })
            .collect();
        Catalog { objects }
    }

    /// This snapshot without table `table` and what belongs to it: another tool's history
    /// table, kept by a tenant with `history_compat:`, is bookkeeping too.
    pub fn without_table(mut self, table: &str) -> Catalog {
        let is = |name: &str| name.eq_ignore_ascii_case(table);
        self.objects
            .retain(|_, o| !((o.kind == Kind::Table && is(&o.name)) || o.table.as_deref().is_some_and(is)));
        self
    }

    pub fn objects(&self) -> impl Iterator<Item = &Object> {
        self.objects.values()
    }

    pub fn len(&self) -> usize {
        self.objects.len()
    }

    pub fn is_empty(&self) -> bool {
        self.objects.is_empty()
    }

    /// A SHA-256 of the ordered snapshot, in hex: equal catalogs, equal fingerprints.
    pub fn fingerprint(&self) -> String {
        let mut hash = Sha256::new();
        for o in self.objects() {
            // Lengths before texts, so no two different snapshots read the same.
            let mut field = |text: &str| {
                hash.update((text.len() as u64).to_le_bytes());
                hash.update(text.as_bytes());
            };
            field(o.kind.name());
            field(&o.name);
            field(o.table.as_deref().unwrap_or(""));
            for (k, v) in &o.attrs {
                field(k);
                field(v);
            }
        }
        hash.finalize().iter().map(|b| format!("{b:02x}")).collect()
    }

    /// How this snapshot differs from `expected`, in catalog order: what is here and should
    /// not be, what should be here and is not, and each attribute that differs.
    pub fn diff(&self, expected: &Catalog) -> Vec<Difference> {
        let mut out = Vec::new();
        let mut keys: Vec<&(Kind, String)> = self.objects.keys().chain(expected.objects.keys()).collect();
        keys.sort();
        keys.dedup();
        for key in keys {
            match (self.objects.get(key), expected.objects.get(key)) {
                (Some(_), None) => out.push(Difference::Extra {
                    kind: key.0,
                    name: key.1.clone(),
                }),
                (None, Some(_)) => out.push(Difference::Missing {
                    kind: key.0,
                    name: key.1.clone(),
                }),
                (Some(actual), Some(wanted)) => out.extend(changed(actual, wanted)),
                (None, None) => {}
            }
        }
        out
    }
}

/// Each attribute of `actual` that is not as in `expected`.
fn changed(actual: &Object, expected: &Object) -> Vec<Difference> {
    let mut attrs: Vec<&String> = actual.attrs.keys().chain(expected.attrs.keys()).collect();
    attrs.sort();
    attrs.dedup();
    attrs
        .into_iter()
        .filter_map(|attr| {
            let (a, e) = (actual.attrs.get(attr), expected.attrs.get(attr));
            (a != e).then(|| Difference::Changed {
                kind: actual.kind,
                name: actual.name.clone(),
                attr: attr.clone(),
                actual: a.cloned(),
                expected: e.cloned(),
            })
        })
        .collect()
}

/// One way a snapshot differs from the one it should equal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "change", rename_all = "kebab-case")]
pub enum Difference {
    /// There, and should not be: a down script forgot it.
    Extra { kind: Kind, name: String },
    /// Not there, and should be.
    Missing { kind: Kind, name: String },
    /// There, with an attribute that differs (`None`: the engine reports none).
    Changed {
        kind: Kind,
        name: String,
        attr: String,
        actual: Option<String>,
        expected: Option<String>,
    },
}

impl fmt::Display for Difference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown = |v: &Option<String>| v.clone().unwrap_or_else(|| "none".to_owned());
        match self {
            Difference::Extra { kind, name } => write!(f, "{kind} {name} {}", kind.lingers()),
            Difference::Missing { kind, name } => write!(f, "{kind} {name} is missing"),
            Difference::Changed {
                kind,
                name,
                attr,
                actual,
                expected,
            } => write!(
                f,
                "{kind} {name}: {attr} {}, expected {}",
                shown(actual),
                shown(expected)
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(kind: Kind, name: &str, table: Option<&str>, attrs: &[(&str, &str)]) -> Object {
        Object {
            kind,
            name: name.into(),
            table: table.map(Into::into),
            attrs: attrs.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect(),
        }
    }

    fn before() -> Catalog {
        Catalog::new([
            obj(Kind::Table, "users", None, &[]),
            obj(
                Kind::Column,
                "users.plan",
                Some("users"),
                &[("type", "varchar(20)"), ("nullable", "no")],
            ),
        ])
    }

    #[test]
    fn the_diff_reads_as_the_issue_says() {
        let after = Catalog::new([
            obj(Kind::Table, "users", None, &[]),
            obj(Kind::Table, "accounts_audit", None, &[]),
            obj(Kind::EnumType, "plan_kind", None, &[("labels", "free, pro")]),
            obj(
                Kind::Column,
                "users.plan",
                Some("users"),
                &[("type", "text"), ("nullable", "no")],
            ),
            obj(Kind::Index, "users_email_idx", Some("users"), &[("definition", "x")]),
        ]);
        let lines: Vec<String> = after.diff(&before()).iter().map(ToString::to_string).collect();
        assert_eq!(
            lines,
            [
                "enum type plan_kind left behind",
                "table accounts_audit still exists",
                "column users.plan: type text, expected varchar(20)",
                "index users_email_idx left behind",
            ]
        );
        let lines: Vec<String> = before().diff(&after).iter().map(ToString::to_string).collect();
        assert_eq!(lines[0], "enum type plan_kind is missing");
    }

    #[test]
    fn fleetmig_tables_and_their_parts_are_left_out() {
        let with_history = Catalog::new(before().objects().cloned().chain([
            obj(Kind::Table, "fleetmig_history", None, &[]),
            obj(Kind::Column, "fleetmig_history.version", Some("fleetmig_history"), &[]),
            obj(
                Kind::Index,
                "sqlite_autoindex_fleetmig_history_1",
                Some("fleetmig_history"),
                &[],
            ),
            obj(Kind::Table, "FLEETMIG_REPEATABLES", None, &[]),
        ]));
        assert_eq!(with_history, before());
        assert!(with_history.diff(&before()).is_empty());
    }

    #[test]
    fn the_fingerprint_is_stable_and_sees_every_field() {
        let a = before();
        let reordered = Catalog::new(a.objects().cloned().collect::<Vec<_>>().into_iter().rev());
        assert_eq!(a.fingerprint(), reordered.fingerprint());
        assert_eq!(a.fingerprint().len(), 64);
        let spaced = Catalog::new([
            obj(Kind::Table, "users", None, &[]),
            obj(
                Kind::Column,
                "users.plan",
                Some("users"),
                &[("type", "  varchar(20)\n"), ("nullable", "no")],
            ),
        ]);
        assert_eq!(a.fingerprint(), spaced.fingerprint());
        let other = Catalog::new([obj(Kind::Table, "users", None, &[("type", "varchar(20)nullableno")])]);
        assert_ne!(a.fingerprint(), other.fingerprint());
        assert_ne!(a.fingerprint(), Catalog::default().fingerprint());
    }

    #[test]
    fn a_missing_attribute_reads_as_none() {
        let with_default = Catalog::new([obj(Kind::Column, "t.c", Some("t"), &[("default", "0")])]);
        let without = Catalog::new([obj(Kind::Column, "t.c", Some("t"), &[])]);
        let diff = without.diff(&with_default);
        assert_eq!(diff.len(), 1);
        assert_eq!(diff[0].to_string(), "column t.c: default none, expected 0");
    }
}
