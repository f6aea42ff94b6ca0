//! Versions, checksums, migrations and the ordered migration set.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// How a migration set's versions are written and ordered, fixed by its layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum VersionStyle {
    /// A whole number (fleetmig, sqlx, golang-migrate, dbmate): `0002` is 2, 9 < 10.
    #[default]
    Integer,
    /// Numbers separated by dots (Flyway): `1.2` < `1.10`, `1.02` is `1.2`.
    Dotted,
    /// Text compared as a string (diesel): `20170101` sorts after `20160107082941`.
    Text,
}

impl fmt::Display for VersionStyle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            VersionStyle::Integer => "whole numbers",
            VersionStyle::Dotted => "dotted numbers, 1.2 before 1.10",
            VersionStyle::Text => "text, compared as text",
        })
    }
}

/// How a migrations folder is laid out: fleetmig's own (which sqlx's reversible files and
/// golang-migrate's share) or another tool's, read as that tool writes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Layout {
    /// `V_name.up.sql` and `V_name.down.sql` (fleetmig, sqlx reversible, golang-migrate).
    #[default]
    Fleetmig,
    /// sqlx's one-way `V_name.sql`.
    SqlxSimple,
    /// diesel's `VERSION_name/up.sql`, `down.sql`, `metadata.toml`.
    Diesel,
    /// Flyway's `V1_2__desc.sql` and undo `U1_2__desc.sql`.
    Flyway,
    /// dbmate's `V_name.sql` with `-- migrate:up` / `-- migrate:down` sections.
    Dbmate,
}

impl Layout {
    pub const ALL: [Layout; 5] = [
        Layout::Fleetmig,
        Layout::SqlxSimple,
        Layout::Diesel,
        Layout::Flyway,
        Layout::Dbmate,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Layout::Fleetmig => "fleetmig",
            Layout::SqlxSimple => "sqlx-simple",
            Layout::Diesel => "diesel",
            Layout::Flyway => "flyway",
            Layout::Dbmate => "dbmate",
        }
    }
}

impl fmt::Display for Layout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A layout name that fleetmig does not read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "`{0}` is not a migrations layout (known: fleetmig, sqlx, golang-migrate, sqlx-simple, diesel, flyway, dbmate)"
)]
pub struct BadLayout(pub String);

impl FromStr for Layout {
    type Err = BadLayout;
    /// A layout's name; `sqlx` and `golang-migrate` are fleetmig's (their reversible
    /// `.up.sql`/`.down.sql` files).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "fleetmig" | "sqlx" | "golang-migrate" | "migrate" => Ok(Layout::Fleetmig),
            "sqlx-simple" => Ok(Layout::SqlxSimple),
            "diesel" => Ok(Layout::Diesel),
            "flyway" => Ok(Layout::Flyway),
            "dbmate" => Ok(Layout::Dbmate),
            _ => Err(BadLayout(s.to_owned())),
        }
    }
}

/// A migration's version. `Version::ZERO` means "nothing applied".
///
/// Versions are ordered as their set's [`VersionStyle`] says; the style is chosen when
/// the text is read ([`Version::parse`]). Two versions are equal when their texts are,
/// whatever style read them. Text is interned: a fleet has few distinct versions, and a
/// `Version` stays `Copy`.
#[derive(Clone, Copy)]
pub struct Version(Key);

#[derive(Debug, Clone, Copy)]
enum Key {
    Zero,
    /// Each set's own newest version: the target of a fleet whose engines have their own
    /// folders, resolved per tenant.
    Head,
    Integer(i64),
    /// The canonical text and its parts.
    Dotted(&'static intern::Interned),
    Text(&'static intern::Interned),
}

/// The longest version text taken: diesel's and Flyway's history tables hold 50.
pub const MAX_VERSION_LEN: usize = 50;

impl Version {
    pub const ZERO: Version = Version(Key::Zero);
    /// The newest version of whichever set a tenant is measured against (`--to head`),
    /// after every other version. Never a migration's own version.
    pub const HEAD: Version = Version(Key::Head);

    /// A whole-number version (1 and up; 0 is [`Version::ZERO`]).
    pub const fn int(n: i64) -> Version {
        if n == 0 {
            Version::ZERO
        } else {
            Version(Key::Integer(n))
        }
    }

    /// Reads `text` in `style`. `0` is [`Version::ZERO`] in every style.
    pub fn parse(text: &str, style: VersionStyle) -> Result<Version, BadVersion> {
        let bad = || BadVersion(text.to_owned(), style);
        if text == "0" {
            return Ok(Version::ZERO);
        }
        match style {
            VersionStyle::Integer => match text.parse::<i64>() {
                Ok(v) if v >= 0 && text.bytes().all(|b| b.is_ascii_digit()) => Ok(Version::int(v)),
                _ => Err(bad()),
            },
            VersionStyle::Dotted => {
                let parts: Option<Vec<u64>> = text
                    .split('.')
                    .map(|p| {
                        (!p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
                            .then(|| p.parse::<u64>().ok())
                            .flatten()
                    })
                    .collect();
                let mut parts = parts.ok_or_else(bad)?;
                // Flyway's `1.0` is `1`.
                while parts.len() > 1 && parts.last() == Some(&0) {
                    parts.pop();
                }
                if parts == [0] {
                    return Ok(Version::ZERO);
                }
                let canonical = parts.iter().map(u64::to_string).collect::<Vec<_>>().join(".");
                if canonical.len() > MAX_VERSION_LEN {
                    return Err(bad());
                }
                Ok(Version(Key::Dotted(intern::dotted(&canonical, &parts))))
            }
            VersionStyle::Text => {
                let plain = text != "head"
                    && (1..=MAX_VERSION_LEN).contains(&text.len())
                    && text
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-');
                if !plain {
                    return Err(bad());
                }
                Ok(Version(Key::Text(intern::text(text))))
            }
        }
    }

    /// A version as a history table or the ledger holds it, before its set's style is
    /// known: a whole number written plainly is an integer, any other text is kept as
    /// written, so [`Version::restyled`] can read it again in the set's style.
    pub fn read(text: &str) -> Result<Version, BadVersion> {
        if text == "head" {
            return Ok(Version::HEAD);
        }
        let plain_int = text == "0" || (!text.starts_with('0') && text.bytes().all(|b| b.is_ascii_digit()));
        match text.parse::<i64>() {
            Ok(n) if plain_int && n >= 0 => Ok(Version::int(n)),
            _ => Version::parse(text, VersionStyle::Text),
        }
    }

    /// This version read again in `style`: a version from a history table or the ledger,
    /// once its set is known.
    pub fn restyled(self, style: VersionStyle) -> Result<Version, BadVersion> {
        if self.style().is_none_or(|s| s == style) {
            return Ok(self);
        }
        Version::parse(&self.text(), style)
    }

    /// The style that read this version (`None` for [`Version::ZERO`] and [`Version::HEAD`]).
    pub fn style(self) -> Option<VersionStyle> {
        match self.0 {
            Key::Zero | Key::Head => None,
            Key::Integer(_) => Some(VersionStyle::Integer),
            Key::Dotted(..) => Some(VersionStyle::Dotted),
            Key::Text(_) => Some(VersionStyle::Text),
        }
    }

    /// The whole number, for an integer version (and 0 for [`Version::ZERO`]).
    pub fn as_int(self) -> Option<i64> {
        match self.0 {
            Key::Zero => Some(0),
            Key::Integer(n) => Some(n),
            _ => None,
        }
    }

    /// The version as text: what history tables, the ledger and `--to` hold.
    pub fn text(self) -> std::borrow::Cow<'static, str> {
        match self.0 {
            Key::Zero => "0".into(),
            Key::Head => "head".into(),
            Key::Integer(n) => n.to_string().into(),
            Key::Dotted(t) | Key::Text(t) => t.text.as_str().into(),
        }
    }
}

/// Interned version texts: a fleet has a few hundred distinct versions at most, read once
/// per tenant; keeping them lets `Version` be `Copy`.
mod intern {
    use std::collections::HashMap;
    use std::sync::{Mutex, OnceLock};

    /// A version's text and, for a dotted one, its numbers. One pointer in a `Version`.
    #[derive(Debug)]
    pub(super) struct Interned {
        pub text: String,
        pub parts: Vec<u64>,
    }

    type Table = HashMap<String, &'static Interned>;

    /// Dotted versions and text versions apart: `1.2` read as text has no parts.
    fn table(dotted: bool) -> &'static Mutex<Table> {
        static DOTTED: OnceLock<Mutex<Table>> = OnceLock::new();
        static TEXT: OnceLock<Mutex<Table>> = OnceLock::new();
        if dotted { &DOTTED } else { &TEXT }.get_or_init(Default::default)
    }

    fn intern(dotted: bool, text: &str, parts: &[u64]) -> &'static Interned {
        let mut table = table(dotted).lock().unwrap_or_else(|e| e.into_inner());
        if let Some(hit) = table.get(text) {
            return hit;
        }
        let entry: &'static Interned = Box::leak(Box::new(Interned {
            text: text.to_owned(),
            parts: parts.to_vec(),
        }));
        table.insert(text.to_owned(), entry);
        entry
    }

    pub(super) fn dotted(text: &str, parts: &[u64]) -> &'static Interned {
        intern(true, text, parts)
    }

    pub(super) fn text(text: &str) -> &'static Interned {
        intern(false, text, &[])
    }
}

impl PartialEq for Version {
    fn eq(&self, other: &Self) -> bool {
        match (self.0, other.0) {
            (Key::Zero, Key::Zero) | (Key::Head, Key::Head) => true,
            (Key::Integer(a), Key::Integer(b)) => a == b,
            (Key::Dotted(a) | Key::Text(a), Key::Dotted(b) | Key::Text(b)) => a.text == b.text,
            _ => self.text() == other.text(),
        }
    }
}

impl Eq for Version {}

impl std::hash::Hash for Version {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        // By text, as equality is.
        self.text().hash(state)
    }
}

impl Ord for Version {
    /// In the versions' style; [`Version::ZERO`] first, [`Version::HEAD`] last. Versions read in different styles
    /// (which one set never holds) compare as text.
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        use std::cmp::Ordering;
        match (self.0, other.0) {
            (Key::Zero, Key::Zero) | (Key::Head, Key::Head) => Ordering::Equal,
            (Key::Zero, _) | (_, Key::Head) => Ordering::Less,
            (_, Key::Zero) | (Key::Head, _) => Ordering::Greater,
            (Key::Integer(a), Key::Integer(b)) => a.cmp(&b),
            (Key::Dotted(a), Key::Dotted(b)) => a.parts.cmp(&b.parts).then_with(|| a.text.cmp(&b.text)),
            (Key::Text(a), Key::Text(b)) => a.text.cmp(&b.text),
            _ => self.text().cmp(&other.text()),
        }
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Debug for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Version({})", self.text())
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text())
    }
}

impl FromStr for Version {
    type Err = BadVersion;
    /// A version given before its set is known (`--to`, `stamp`): read as
    /// [`Version::read`] does, losslessly, and read again in the set's style once the set
    /// is loaded (`0002` is 2 in a fleetmig set, `00000000000000` stays itself in diesel's).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Version::read(s)
    }
}

impl Serialize for Version {
    /// A whole number as a JSON number, as before versions could be text; others as strings.
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.as_int() {
            Some(n) => s.serialize_i64(n),
            None => s.collect_str(self),
        }
    }
}

impl<'de> Deserialize<'de> for Version {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Int(i64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Int(n) if n >= 0 => Ok(Version::int(n)),
            Raw::Int(n) => Err(serde::de::Error::custom(BadVersion(
                n.to_string(),
                VersionStyle::Integer,
            ))),
            Raw::Text(t) => t.parse().map_err(serde::de::Error::custom),
        }
    }
}

/// Text that is not a migration version in its style, as written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a migration version ({hint})", hint = style_hint(*.1))]
pub struct BadVersion(pub String, pub VersionStyle);

/// What a version looks like in `style`, for error messages.
fn style_hint(style: VersionStyle) -> String {
    match style {
        VersionStyle::Integer => format!("a whole number from 0 to {}", i64::MAX),
        VersionStyle::Dotted => "numbers separated by dots, like 1.2".to_owned(),
        VersionStyle::Text => format!("1 to {MAX_VERSION_LEN} letters, digits, `.` or `-`"),
    }
}

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
    /// The file began with a byte-order mark, dropped from `sql`: other tools' checksums
    /// (sqlx's) take the file's text as it is.
    pub bom: bool,
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
        let (sql, bom) = match sql.strip_prefix('\u{feff}') {
            Some(rest) => (rest.to_owned(), true),
            None => (sql, false),
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
            bom,
        }
    }

    /// The script's file text as read, byte-order mark and all.
    pub fn file_text(&self) -> std::borrow::Cow<'_, str> {
        if self.bom {
            format!("\u{feff}{}", self.sql).into()
        } else {
            self.sql.as_str().into()
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
            // `-- fleetmig: allow <rule-id> <reason>` is `lint`'s, on any line.
            if is_allow(after) {
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

/// Whether a `-- fleetmig` comment's text after `fleetmig` (`: allow rule reason`) is a
/// `lint` suppression rather than a marker.
fn is_allow(after: &str) -> bool {
    let Some(rest) = after.strip_prefix(':') else {
        return false;
    };
    let rest = rest.trim_start();
    rest.strip_prefix("allow")
        .is_some_and(|a| a.is_empty() || a.starts_with(char::is_whitespace))
}

/// Which way a migration runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Up,
    Down,
}

/// A repeatable migration (Flyway's `R__name.sql`): no version; run after the versioned
/// ones, in name order, whenever its checksum differs from the one the tenant last ran.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repeatable {
    pub name: String,
    pub script: Script,
    pub checksum: Checksum,
    pub path: PathBuf,
}

impl Repeatable {
    pub fn new(name: String, sql: String, path: PathBuf) -> Self {
        Repeatable {
            name,
            checksum: Checksum::of(&sql),
            script: Script::new(sql),
            path,
        }
    }
}

/// A migration: its up script and, when it is reversible, its down script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Migration {
    pub version: Version,
    pub name: String,
    pub up: Script,
    /// `None` when the down script is missing or holds only comments.
    pub down: Option<Script>,
    /// True when its down script is there but holds no statement (so `down` is `None`).
    pub empty_down: bool,
    pub checksum: Checksum,
    /// The up script's file, for messages.
    pub path: PathBuf,
}

impl Migration {
    pub fn new(version: Version, name: String, up: String, down: Option<String>, path: PathBuf) -> Self {
        let checksum = Checksum::of(&up);
        let given = down.is_some();
        let down = down.map(Script::new).filter(|s| !s.is_blank());
        Migration {
            version,
            name,
            up: Script::new(up),
            empty_down: given && down.is_none(),
            down,
            checksum,
            path,
        }
    }

    pub fn is_reversible(&self) -> bool {
        self.down.is_some()
    }

    /// The history row that records this migration as applied, cleanly.
    pub fn applied(&self) -> Applied {
        Applied {
            version: self.version,
            name: self.name.clone(),
            checksum: self.checksum.to_hex(),
            dirty: false,
        }
    }

    /// Why `down` cannot pass this migration: no down script, or an empty one.
    pub fn irreversible(&self) -> crate::model::refusal::Refusal {
        crate::model::refusal::Refusal::Irreversible {
            version: self.version,
            path: self.path.clone(),
            empty: self.empty_down,
        }
    }

    /// `0003_add_email`, the way files and people name it.
    pub fn label(&self) -> String {
        match self.version.as_int() {
            Some(n) => format!("{n:04}_{}", self.name),
            None => format!("{}_{}", self.version, self.name),
        }
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
    style: VersionStyle,
    layout: Layout,
    /// Entries of the folder that are not migrations (a README, a loose `.sql` beside
    /// diesel's folders), left alone.
    ignored: Vec<PathBuf>,
    /// Whether a pending migration older than a tenant's newest applied one runs (as
    /// Flyway's `outOfOrder` and diesel do) instead of refusing the tenant.
    out_of_order: bool,
    /// Flyway's repeatable migrations, in name order.
    repeatables: Vec<Repeatable>,
}

impl MigrationSet {
    /// A set of whole-number versions.
    pub fn new(migrations: Vec<Migration>) -> Result<Self, DuplicateVersion> {
        Self::with_style(migrations, VersionStyle::Integer)
    }

    /// A set whose versions were read in `style`.
    pub fn with_style(mut migrations: Vec<Migration>, style: VersionStyle) -> Result<Self, DuplicateVersion> {
        migrations.sort_by(|a, b| a.version.cmp(&b.version).then_with(|| a.path.cmp(&b.path)));
        if let Some(pair) = migrations.windows(2).find(|w| w[0].version == w[1].version) {
            return Err(DuplicateVersion {
                version: pair[0].version,
                first: pair[0].path.clone(),
                second: pair[1].path.clone(),
            });
        }
        Ok(MigrationSet {
            migrations,
            style,
            layout: Layout::Fleetmig,
            ignored: Vec::new(),
            repeatables: Vec::new(),
            out_of_order: false,
        })
    }

    /// This set with `repeatables`, run in name order after the versioned migrations.
    pub fn with_repeatables(mut self, mut repeatables: Vec<Repeatable>) -> Self {
        repeatables.sort_by(|a, b| a.name.cmp(&b.name));
        self.repeatables = repeatables;
        self
    }

    /// The repeatable migrations, in the order they run.
    pub fn repeatables(&self) -> &[Repeatable] {
        &self.repeatables
    }

    /// This set, read from a folder in `layout` that also held `ignored`.
    pub fn with_layout(mut self, layout: Layout, ignored: Vec<PathBuf>) -> Self {
        self.layout = layout;
        self.ignored = ignored;
        self
    }

    /// This set, letting pending migrations older than a tenant's newest applied one run
    /// (`--out-of-order`) or not.
    pub fn with_out_of_order(mut self, allowed: bool) -> Self {
        self.out_of_order = allowed;
        self
    }

    /// Whether pending migrations older than a tenant's newest applied one run.
    pub fn out_of_order(&self) -> bool {
        self.out_of_order
    }

    /// The folder's entries that are not migrations, left alone.
    pub fn ignored(&self) -> &[PathBuf] {
        &self.ignored
    }

    /// The layout of the folder it was read from.
    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// How this set's versions are written and ordered.
    pub fn style(&self) -> VersionStyle {
        self.style
    }

    /// Reads a version in this set's style (from a history table, the ledger or `--to`).
    pub fn parse_version(&self, text: &str) -> Result<Version, BadVersion> {
        Version::parse(text, self.style)
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
                    Version::int(v),
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
            Version::int(v),
            name.into(),
            format!("-- {name}"),
            None,
            format!("{v}_{name}.up.sql").into(),
        )
    }

    #[test]
    fn versions_order_in_their_style_and_read_back_losslessly() {
        use VersionStyle::{Dotted, Integer, Text};
        let p = |t: &str, s| Version::parse(t, s).unwrap();
        assert!(p("9", Integer) < p("10", Integer));
        assert_eq!(p("0002", Integer), Version::int(2));
        assert!(p("1.2", Dotted) < p("1.10", Dotted));
        assert!(p("1.9.9", Dotted) < p("1.10", Dotted));
        assert_eq!(p("1.0", Dotted), p("1", Dotted));
        assert_eq!(p("1.02", Dotted).text(), "1.2");
        // diesel's: compared as text, so 8-, 14- and 18-character versions interleave.
        let mut v = ["20170101", "20160107082941", "201601070829410000", "00000000000000"].map(|t| p(t, Text));
        v.sort();
        assert_eq!(
            v.map(|v| v.text().into_owned()),
            ["00000000000000", "20160107082941", "201601070829410000", "20170101"]
        );
        assert_ne!(p("00000000000000", Text), Version::ZERO);
        // A history table's or the ledger's text, read before the set is known.
        assert_eq!(
            Version::read("0002").unwrap().restyled(Integer).unwrap(),
            Version::int(2)
        );
        assert_eq!(
            "00000000000000"
                .parse::<Version>()
                .unwrap()
                .restyled(Text)
                .unwrap()
                .text(),
            "00000000000000"
        );
        assert_eq!(
            "3".parse::<Version>().unwrap().restyled(Dotted).unwrap(),
            p("3", Dotted)
        );
        // Text read first, then the same text as a dotted version: ordered by its parts.
        let early = Version::read("7.2").unwrap();
        assert!(early.restyled(Dotted).unwrap() > p("7", Dotted));
        assert!(p("7.2", Dotted) < p("7.10", Dotted));
        assert_eq!(
            Version::parse("1.x", Dotted).unwrap_err().to_string(),
            "`1.x` is not a migration version (numbers separated by dots, like 1.2)"
        );
        assert!(Version::parse("a b", Text).is_err());
        assert!(Version::parse(&"9".repeat(MAX_VERSION_LEN + 1), Text).is_err());
        // Copied everywhere a plan or report names a version: kept to two words.
        assert!(std::mem::size_of::<Version>() <= 16);
        // JSON: whole numbers stay numbers, as before versions could be text.
        assert_eq!(serde_json::to_string(&Version::int(7)).unwrap(), "7");
        assert_eq!(serde_json::to_string(&p("1.10", Dotted)).unwrap(), "\"1.10\"");
        assert_eq!(serde_json::from_str::<Version>("7").unwrap(), Version::int(7));
    }

    #[test]
    fn set_sorts_and_refuses_duplicates() {
        let set = MigrationSet::new(vec![m(3, "c"), m(1, "a"), m(2, "b")]).unwrap();
        let versions: Vec<_> = set.iter().map(|m| m.version.as_int().unwrap()).collect();
        assert_eq!(versions, [1, 2, 3]);
        assert_eq!(set.head(), Version::int(3));
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
                Version::int(1),
                "a".into(),
                "select 1".into(),
                Some(blank.into()),
                "x".into(),
            );
            assert!(!mig.is_reversible(), "{blank:?}");
        }
        let mig = Migration::new(
            Version::int(1),
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
            Version::int(1),
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
    fn a_lint_allow_is_no_marker_problem_on_any_line() {
        let text = "-- fleetmig: allow drop-table the table was never used\nDROP TABLE t;\n";
        assert_eq!(Script::marker_problem(text), None);
        assert!(Script::new(text.into()).transactional);
        let below = "-- fleetmig: no-transaction\n-- fleetmig: allow index-without-concurrently small table\nCREATE INDEX i ON t (a);\n";
        assert_eq!(Script::marker_problem(below), None);
        assert!(!Script::new(below.into()).transactional);
        // Still a misplaced marker when it is not an allow.
        assert!(Script::marker_problem("SELECT 1;\n-- fleetmig: allowance\n").is_some());
    }

    #[test]
    fn checksum_is_sha256_hex() {
        assert_eq!(
            Checksum::of("").to_hex(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
