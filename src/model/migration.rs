//! Versions, checksums, migrations and the ordered migration set.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// A migration's version: the number in its file name. `Version(0)` means "nothing applied".
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Version(pub i64);

impl Version {
    pub const ZERO: Version = Version(0);
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl FromStr for Version {
    type Err = BadVersion;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.parse::<i64>() {
            Ok(v) if v >= 0 => Ok(Version(v)),
            _ => Err(BadVersion(s.to_owned())),
        }
    }
}

/// Text that is not a migration version, as written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a migration version (a whole number from 0 to {max})", max = i64::MAX)]
pub struct BadVersion(pub String);

/// SHA-256 of a migration's up script, shown and stored as 64 lowercase hex digits.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Checksum([u8; 32]);

impl Checksum {
    pub fn of(script: &str) -> Self {
        Checksum(Sha256::digest(script.as_bytes()).into())
    }

    pub fn to_hex(&self) -> String {
        self.to_string()
    }

    /// The first 12 hex digits, for tables meant for people.
    pub fn short(&self) -> String {
        self.to_string()[..12].to_owned()
    }
}

impl fmt::Display for Checksum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl fmt::Debug for Checksum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Checksum({})", self.short())
    }
}

impl Serialize for Checksum {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// One SQL script, sent to the database whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Script {
    pub sql: String,
    /// False when the script opts out with `-- fleetmig: no-transaction` on its first line.
    pub transactional: bool,
    /// True when it declares itself safe to run again (`rerun-if-dirty` in the marker): a
    /// tenant left dirty at it is run again instead of refused.
    pub rerun_if_dirty: bool,
}

/// The marker, on a script's first line, that runs it outside a transaction.
pub const NO_TRANSACTION_MARKER: &str = "-- fleetmig: no-transaction";

/// What the first line's `-- fleetmig: a, b` marker may say.
const MARKER_PREFIX: &str = "-- fleetmig:";

impl Script {
    /// A script from its file's text. A leading byte-order mark (which editors on Windows
    /// write) is no SQL: it is dropped here, so the marker on the first line counts and
    /// PostgreSQL (which refuses one) gets the script; the checksum stays that of the file.
    pub fn new(sql: String) -> Self {
        let sql = match sql.strip_prefix('\u{feff}') {
            Some(rest) => rest.to_owned(),
            None => sql,
        };
        let first = sql.lines().next().map(str::trim).unwrap_or_default();
        let options: Vec<&str> = first
            .strip_prefix(MARKER_PREFIX)
            .map(|rest| rest.split(',').map(str::trim).collect())
            .unwrap_or_default();
        let known = options
            .iter()
            .all(|o| matches!(*o, "no-transaction" | "rerun-if-dirty"));
        let has = |o: &str| known && options.contains(&o);
        Script {
            transactional: !has("no-transaction"),
            rerun_if_dirty: has("rerun-if-dirty"),
            sql,
        }
    }

    /// Why the script's `-- fleetmig:` marker would not do what it seems to, if it would not:
    /// an unknown or misspelt option, `rerun-if-dirty` without `no-transaction`, a marker
    /// written another way, or one below the first line. Each of these would otherwise run
    /// the script as if it had no marker.
    pub fn marker_problem(sql: &str) -> Option<String> {
        let sql = sql.strip_prefix('\u{feff}').unwrap_or(sql);
        for (n, line) in sql.lines().enumerate() {
            let text = line.trim();
            let Some(comment) = text.strip_prefix("--") else {
                continue;
            };
            let lower = comment.trim_start().to_ascii_lowercase();
            let Some(after) = lower.strip_prefix("fleetmig") else {
                continue;
            };
            // `-- fleetmig: ...`, or the options without the colon; prose that mentions
            // fleetmig is left alone.
            let after = after.trim_start();
            if !(after.starts_with(':') || after.starts_with("no-transaction") || after.starts_with("rerun-if-dirty")) {
                continue;
            }
            if n > 0 {
                return Some(format!(
                    "line {}: a `{MARKER_PREFIX}` marker counts only on the first line",
                    n + 1
                ));
            }
            let Some(rest) = text.strip_prefix(MARKER_PREFIX) else {
                return Some(format!(
                    "line 1: `{text}`: write the marker as `{NO_TRANSACTION_MARKER}`"
                ));
            };
            let options: Vec<&str> = rest.split(',').map(str::trim).collect();
            if let Some(bad) = options
                .iter()
                .find(|o| !matches!(**o, "no-transaction" | "rerun-if-dirty"))
            {
                return Some(format!(
                    "line 1: unknown fleetmig option `{bad}` (known: no-transaction, rerun-if-dirty)"
                ));
            }
            if options.contains(&"rerun-if-dirty") && !options.contains(&"no-transaction") {
                return Some(
                    "line 1: `rerun-if-dirty` goes with `no-transaction`: a transactional migration never stays dirty"
                        .into(),
                );
            }
        }
        None
    }

    /// True when the script holds no statement: nothing but white space, SQL comments and
    /// empty statements (`;`).
    pub fn is_blank(&self) -> bool {
        let mut rest = self.sql.as_str();
        loop {
            rest = rest.trim_start().trim_start_matches(';').trim_start();
            if let Some(after) = rest.strip_prefix("--") {
                rest = after.split_once('\n').map_or("", |(_, tail)| tail);
            } else if let Some(after) = rest.strip_prefix("/*") {
                match after.split_once("*/") {
                    Some((_, tail)) => rest = tail,
                    None => return false,
                }
            } else {
                return rest.is_empty();
            }
        }
    }
}

/// Which way a migration runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Up,
    Down,
}

/// A migration: its up script and, when it is reversible, its down script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Migration {
    pub version: Version,
    pub name: String,
    pub up: Script,
    /// `None` when the down script is missing or holds only comments.
    pub down: Option<Script>,
    pub checksum: Checksum,
    /// The up script's file, for messages.
    pub path: PathBuf,
}

impl Migration {
    pub fn new(version: Version, name: String, up: String, down: Option<String>, path: PathBuf) -> Self {
        let checksum = Checksum::of(&up);
        let down = down.map(Script::new).filter(|s| !s.is_blank());
        Migration {
            version,
            name,
            up: Script::new(up),
            down,
            checksum,
            path,
        }
    }

    pub fn is_reversible(&self) -> bool {
        self.down.is_some()
    }

    /// `0003_add_email`, the way files and people name it.
    pub fn label(&self) -> String {
        format!("{:04}_{}", self.version.0, self.name)
    }

    pub fn script(&self, direction: Direction) -> Option<&Script> {
        match direction {
            Direction::Up => Some(&self.up),
            Direction::Down => self.down.as_ref(),
        }
    }
}

/// One row of a tenant's history table, as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    pub version: Version,
    pub name: String,
    /// The checksum recorded when it was applied, as hex.
    pub checksum: String,
    /// Set while a migration that cannot roll back (MySQL DDL, no-transaction) is running,
    /// and left set when it failed part way.
    pub dirty: bool,
}

/// Two migrations with one version.
#[derive(Debug, thiserror::Error)]
#[error("version {version} is used by both `{}` and `{}`", first.display(), second.display())]
pub struct DuplicateVersion {
    pub version: Version,
    pub first: PathBuf,
    pub second: PathBuf,
}

/// Migrations in ascending version order, each version once.
#[derive(Debug, Clone, Default)]
pub struct MigrationSet {
    migrations: Vec<Migration>,
}

impl MigrationSet {
    pub fn new(mut migrations: Vec<Migration>) -> Result<Self, DuplicateVersion> {
        migrations.sort_by(|a, b| a.version.cmp(&b.version).then_with(|| a.path.cmp(&b.path)));
        if let Some(pair) = migrations.windows(2).find(|w| w[0].version == w[1].version) {
            return Err(DuplicateVersion {
                version: pair[0].version,
                first: pair[0].path.clone(),
                second: pair[1].path.clone(),
            });
        }
        Ok(MigrationSet { migrations })
    }

    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &Migration> {
        self.migrations.iter()
    }

    pub fn len(&self) -> usize {
        self.migrations.len()
    }

    pub fn is_empty(&self) -> bool {
        self.migrations.is_empty()
    }

    /// The newest version, or 0 for an empty set.
    pub fn head(&self) -> Version {
        self.migrations.last().map_or(Version::ZERO, |m| m.version)
    }

    pub fn get(&self, version: Version) -> Option<&Migration> {
        self.migrations
            .binary_search_by(|m| m.version.cmp(&version))
            .ok()
            .map(|i| &self.migrations[i])
    }

    /// True for 0 and for every version a migration has: the versions one can migrate to.
    pub fn is_target(&self, version: Version) -> bool {
        version == Version::ZERO || self.get(version).is_some()
    }

    /// How many migrations have a version above `version`, up to `head`.
    pub fn count_between(&self, above: Version, up_to: Version) -> usize {
        self.migrations
            .iter()
            .filter(|m| m.version > above && m.version <= up_to)
            .count()
    }
}

/// A test set: migrations 1..=`reversible.len()`, each `create table tN`, with a down
/// script where `reversible` says so.
#[cfg(test)]
pub(crate) fn test_set(reversible: &[bool]) -> MigrationSet {
    MigrationSet::new(
        reversible
            .iter()
            .enumerate()
            .map(|(i, rev)| {
                let v = i as i64 + 1;
                Migration::new(
                    Version(v),
                    format!("m{v}"),
                    format!("create table t{v} (id int);"),
                    rev.then(|| format!("drop table t{v};")),
                    format!("migrations/{v:04}_m{v}.up.sql").into(),
                )
            })
            .collect(),
    )
    .unwrap()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(v: i64, name: &str) -> Migration {
        Migration::new(
            Version(v),
            name.into(),
            format!("-- {name}"),
            None,
            format!("{v}_{name}.up.sql").into(),
        )
    }

    #[test]
    fn set_sorts_and_refuses_duplicates() {
        let set = MigrationSet::new(vec![m(3, "c"), m(1, "a"), m(2, "b")]).unwrap();
        let versions: Vec<_> = set.iter().map(|m| m.version.0).collect();
        assert_eq!(versions, [1, 2, 3]);
        assert_eq!(set.head(), Version(3));
        let err = MigrationSet::new(vec![m(1, "a"), m(1, "b")]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "version 1 is used by both `1_a.up.sql` and `1_b.up.sql`"
        );
    }

    #[test]
    fn blank_down_scripts_make_a_migration_irreversible() {
        for blank in ["", "  \n", "-- nothing to undo\n", "/* no */\n-- still nothing"] {
            let mig = Migration::new(
                Version(1),
                "a".into(),
                "select 1".into(),
                Some(blank.into()),
                "x".into(),
            );
            assert!(!mig.is_reversible(), "{blank:?}");
        }
        let mig = Migration::new(
            Version(1),
            "a".into(),
            "x".into(),
            Some("-- undo\ndrop table t;".into()),
            "x".into(),
        );
        assert!(mig.is_reversible());
    }

    #[test]
    fn no_transaction_marker_is_read_from_the_first_line_only() {
        assert!(!Script::new("-- fleetmig: no-transaction\ncreate index concurrently i on t(a);".into()).transactional);
        assert!(Script::new("select 1;\n-- fleetmig: no-transaction".into()).transactional);
        let rerun = Script::new(
            "-- fleetmig: no-transaction, rerun-if-dirty\ncreate index concurrently if not exists i on t(a);".into(),
        );
        assert!(!rerun.transactional && rerun.rerun_if_dirty);
        let plain = Script::new("-- fleetmig: no-transaction\nselect 1".into());
        assert!(!plain.rerun_if_dirty);
    }

    #[test]
    fn a_byte_order_mark_is_no_sql_but_stays_in_the_checksum() {
        let text = "\u{feff}-- fleetmig: no-transaction, rerun-if-dirty\nCREATE INDEX CONCURRENTLY i ON t (a);\n";
        let m = Migration::new(
            Version(1),
            "i".into(),
            text.into(),
            Some(text.into()),
            PathBuf::from("x"),
        );
        assert!(!m.up.transactional && m.up.rerun_if_dirty, "{:?}", m.up);
        assert!(m.up.sql.starts_with("-- fleetmig:"));
        assert_eq!(m.checksum, Checksum::of(text));
        assert!(!m.down.unwrap().transactional);
        assert_eq!(
            Script::marker_problem("\u{feff}-- fleetmig: no-transactoin\n"),
            Some("line 1: unknown fleetmig option `no-transactoin` (known: no-transaction, rerun-if-dirty)".into())
        );
    }

    #[test]
    fn checksum_is_sha256_hex() {
        assert_eq!(
            Checksum::of("").to_hex(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
