//! Other migration tools whose history a tenant may already hold, for `fleetmig adopt`,
//! and what their history rows say of a migration, for `history_compat`.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use serde::Serialize;
use sha2::{Digest, Sha384};

use crate::model::migration::{Migration, Version};

/// A migration tool whose history table fleetmig reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Tool {
    Diesel,
    Sqlx,
    GolangMigrate,
    Flyway,
    Dbmate,
    /// Alembic: its `alembic_version` holds only the current head revision id(s), which
    /// carry no order; a [`RevisionMap`] gives each the version it stands for.
    Alembic,
}

impl Tool {
    pub fn name(self) -> &'static str {
        match self {
            Tool::Diesel => "diesel",
            Tool::Sqlx => "sqlx",
            Tool::GolangMigrate => "golang-migrate",
            Tool::Flyway => "flyway",
            Tool::Dbmate => "dbmate",
            Tool::Alembic => "alembic",
        }
    }

    /// The table the tool keeps its history in, in the tenant's schema or database.
    pub fn table(self) -> &'static str {
        match self {
            Tool::Diesel => "__diesel_schema_migrations",
            Tool::Sqlx => "_sqlx_migrations",
            Tool::GolangMigrate | Tool::Dbmate => "schema_migrations",
            Tool::Flyway => "flyway_schema_history",
            Tool::Alembic => "alembic_version",
        }
    }
}

impl Tool {
    /// True for the tools whose versions are whole numbers (a `BIGINT` column).
    pub fn whole_numbers(self) -> bool {
        matches!(self, Tool::Sqlx | Tool::GolangMigrate)
    }
}

impl fmt::Display for Tool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A tool name fleetmig does not adopt from.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a tool fleetmig adopts from (known: diesel, sqlx, golang-migrate, flyway, dbmate, alembic)")]
pub struct BadTool(pub String);

impl FromStr for Tool {
    type Err = BadTool;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "diesel" => Ok(Tool::Diesel),
            "sqlx" => Ok(Tool::Sqlx),
            "golang-migrate" | "migrate" => Ok(Tool::GolangMigrate),
            "flyway" => Ok(Tool::Flyway),
            "dbmate" => Ok(Tool::Dbmate),
            "alembic" => Ok(Tool::Alembic),
            _ => Err(BadTool(s.to_owned())),
        }
    }
}

/// One row of another tool's history table, as text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForeignRow {
    /// The version as the tool wrote it.
    pub version: String,
    /// False for a row the tool marks failed (sqlx, Flyway) or dirty (golang-migrate).
    pub ok: bool,
    /// Flyway's row type (`SQL`, `BASELINE`, `UNDO_SQL`, ...); empty for the others.
    pub kind: String,
}

/// Alembic revision ids, each mapped to the version of the migration set it stands for
/// (`adopt --from alembic --map FILE`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevisionMap {
    /// The file it was read from, named in every refusal that involves it.
    pub file: PathBuf,
    pub versions: BTreeMap<String, Version>,
}

/// Where `adopt` reads a tenant's history: a tool's table, and for Alembic the revision
/// map its rows are read through. Only Alembic has a map, and it always has one. Borrowed,
/// so that a run's action stays `Copy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Adoption<'m> {
    tool: Tool,
    map: Option<&'m RevisionMap>,
}

/// A revision map given where none is needed, or missing where one is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MapMisuse {
    #[error(
        "--from alembic needs --map FILE: Alembic's revision ids carry no order, so the map says which version each stands for"
    )]
    Missing,
    #[error("--map is for --from alembic only: {0} keeps versions in its table")]
    NotAlembic(Tool),
}

impl MapMisuse {
    /// Whether `tool` is adopted with a map when `has_map` says there is one: checked
    /// before the map file is read, and again when the adoption is built.
    pub fn check(tool: Tool, has_map: bool) -> Result<(), MapMisuse> {
        match (tool, has_map) {
            (Tool::Alembic, false) => Err(MapMisuse::Missing),
            (Tool::Alembic, true) | (_, false) => Ok(()),
            (tool, true) => Err(MapMisuse::NotAlembic(tool)),
        }
    }
}

impl<'m> Adoption<'m> {
    pub fn new(tool: Tool, map: Option<&'m RevisionMap>) -> Result<Adoption<'m>, MapMisuse> {
        MapMisuse::check(tool, map.is_some())?;
        Ok(Adoption { tool, map })
    }

    pub fn tool(self) -> Tool {
        self.tool
    }

    /// The revision map, for Alembic.
    pub fn map(self) -> Option<&'m RevisionMap> {
        self.map
    }
}

/// `--from TOOL`, and `--map FILE` for Alembic: how the ledger and the report name it.
impl fmt::Display for Adoption<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.map {
            Some(map) => write!(f, "--from {} --map {}", self.tool, map.file.display()),
            None => write!(f, "--from {}", self.tool),
        }
    }
}

/// What `tool`'s history row says of one migration, in that tool's own formats, read from
/// the migration's file as the tool reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForeignEntry {
    /// The version as the tool writes it: a whole number (sqlx, golang-migrate), the file
    /// name's text (dbmate, diesel without its dashes, Flyway with `_` as `.`).
    pub version: String,
    /// sqlx's and Flyway's description: the file name's, `_` as a space.
    pub description: String,
    /// Flyway's `script`: the file's name.
    pub script: String,
    pub checksum: ForeignChecksum,
}

/// A tool's checksum of a migration's up script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ForeignChecksum {
    /// diesel, dbmate and golang-migrate keep none.
    None,
    /// sqlx: SHA-384 of the file's text as it is.
    Sha384(Vec<u8>),
    /// Flyway: CRC-32 of the file's lines without their line breaks (and without a leading
    /// byte-order mark), as a signed 32-bit number.
    Crc32(i32),
}

/// A version `tool` cannot write: sqlx and golang-migrate keep whole numbers only.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{tool} records whole-number versions only; `{version}` is not one")]
pub struct NotWhole {
    pub tool: Tool,
    pub version: String,
}

impl ForeignEntry {
    /// The row `tool` keeps for migration `m`.
    pub fn of(tool: Tool, m: &Migration) -> Result<ForeignEntry, NotWhole> {
        let file = m
            .path
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default();
        let spaced = |s: &str| s.replace('_', " ");
        let mut entry = ForeignEntry::version_only(tool, m.version)?;
        match tool {
            Tool::Sqlx => {
                entry.description = sqlx_description(&file).unwrap_or_else(|| spaced(&m.name));
                entry.checksum = ForeignChecksum::Sha384(Sha384::digest(m.up.file_text().as_bytes()).to_vec());
            }
            Tool::Flyway => {
                if let Some((version, desc)) = flyway_name(&file) {
                    entry.version = version;
                    entry.description = spaced(&desc);
                } else {
                    entry.description = spaced(&m.name);
                }
                entry.script = file;
                entry.checksum = ForeignChecksum::Crc32(flyway_checksum(&m.up.sql));
            }
            Tool::Dbmate => {
                if let Some((digits, _)) = file.split_once('_').filter(|(d, _)| is_digits(d)) {
                    entry.version = digits.to_owned();
                }
            }
            Tool::Diesel => {
                let folder = m
                    .path
                    .parent()
                    .and_then(|p| p.file_name())
                    .map(|f| f.to_string_lossy().into_owned());
                if let (true, Some(folder)) = (file == "up.sql", folder) {
                    if let Some((version, _)) = folder.split_once('_') {
                        entry.version = version.replace('-', "");
                    }
                }
            }
            // Alembic's table is not kept in step (refused as `history_compat`).
            Tool::GolangMigrate | Tool::Alembic => {}
        }
        Ok(entry)
    }

    /// What the tool's row of `version` is known by when its migration file is gone: the
    /// version alone.
    pub fn version_only(tool: Tool, version: Version) -> Result<ForeignEntry, NotWhole> {
        let text = version.text().into_owned();
        if tool.whole_numbers() && version.as_int().is_none() {
            return Err(NotWhole { tool, version: text });
        }
        Ok(ForeignEntry {
            version: text,
            description: String::new(),
            script: String::new(),
            checksum: ForeignChecksum::None,
        })
    }
}

fn is_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// sqlx's description of a file `VERSION_DESCRIPTION.sql` (or `.up.sql`): the part after
/// the first `_`, its suffix dropped, `_` as a space.
fn sqlx_description(file: &str) -> Option<String> {
    let (_, rest) = file.split_once('_')?;
    let stem = rest.strip_suffix(".up.sql").or_else(|| rest.strip_suffix(".sql"))?;
    Some(stem.replace('_', " "))
}

/// Flyway's version and description of `V1_2__add_price.sql`: `1.2`, `add_price`.
fn flyway_name(file: &str) -> Option<(String, String)> {
    let stem = file.strip_suffix(".sql")?.strip_prefix('V')?;
    let (version, desc) = stem.split_once("__")?;
    Some((version.replace('_', "."), desc.to_owned()))
}

/// Flyway's checksum: CRC-32 over the script's lines, each without its line break (Java's
/// `readLine` ends a line at `\n`, `\r` or `\r\n`), a leading byte-order mark dropped.
fn flyway_checksum(sql: &str) -> i32 {
    const CRC: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC);
    let text = sql.strip_prefix('\u{feff}').unwrap_or(sql);
    let mut digest = CRC.digest();
    for part in text.split(['\r', '\n']) {
        digest.update(part.as_bytes());
    }
    digest.finalize() as i32
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::migration::VersionStyle;

    fn migration(version: Version, path: &str, up: &str) -> Migration {
        Migration::new(version, "x".into(), up.into(), None, path.into())
    }

    #[test]
    fn sqlx_rows_take_the_file_names_description_and_sha384_of_its_text() {
        let m = migration(
            Version::int(1),
            "migrations/0001_add_users_table.up.sql",
            "\u{feff}SELECT 1;\n",
        );
        let e = ForeignEntry::of(Tool::Sqlx, &m).unwrap();
        assert_eq!((e.version.as_str(), e.description.as_str()), ("1", "add users table"));
        let ForeignChecksum::Sha384(sum) = e.checksum else {
            panic!()
        };
        assert_eq!(sum, Sha384::digest("\u{feff}SELECT 1;\n".as_bytes()).to_vec());
        let simple = migration(Version::int(2), "m/20220101000000_items.sql", "x");
        assert_eq!(ForeignEntry::of(Tool::Sqlx, &simple).unwrap().description, "items");
        let dotted = migration(Version::parse("1.2", VersionStyle::Dotted).unwrap(), "V1_2__a.sql", "x");
        assert_eq!(
            ForeignEntry::of(Tool::GolangMigrate, &dotted).unwrap_err().to_string(),
            "golang-migrate records whole-number versions only; `1.2` is not one"
        );
    }

    #[test]
    fn flyway_rows_take_the_file_names_version_and_crc32_over_lines() {
        let v = Version::parse("1.2", VersionStyle::Dotted).unwrap();
        let e = ForeignEntry::of(Tool::Flyway, &migration(v, "sql/V1_02__add_price.sql", "a\r\nb\n")).unwrap();
        assert_eq!(
            (e.version.as_str(), e.description.as_str(), e.script.as_str()),
            ("1.02", "add price", "V1_02__add_price.sql")
        );
        // Line breaks, of any kind, and a byte-order mark do not count: CRC-32 of "ab".
        assert_eq!(e.checksum, ForeignChecksum::Crc32(-1_635_563_411));
        assert_eq!(flyway_checksum("\u{feff}a\rb"), flyway_checksum("ab\n"));
        assert_eq!(flyway_checksum(""), 0);
    }

    #[test]
    fn dbmate_and_diesel_rows_keep_the_file_names_version_text() {
        let m = migration(Version::int(1), "db/0001_init.sql", "x");
        assert_eq!(ForeignEntry::of(Tool::Dbmate, &m).unwrap().version, "0001");
        let d = Version::parse("20160107082941", VersionStyle::Text).unwrap();
        let m = migration(d, "m/2016-01-07-082941_create_accounts/up.sql", "x");
        assert_eq!(ForeignEntry::of(Tool::Diesel, &m).unwrap().version, "20160107082941");
    }
}
