//! Another tool's history table kept in step with fleetmig_history (`history_compat:`):
//! the table as that tool creates it on each engine, and the statements that record a
//! migration there as the tool itself would, so its migrator finds nothing to do.
//!
//! Every statement is idempotent: a row already as wanted is left alone, and one left by a
//! step that failed part way is replaced.

use crate::driver::quote::{backtick, double};
use crate::model::fleet::Engine;
use crate::model::foreign::{ForeignChecksum, ForeignEntry, Tool};

/// What the tool's table is to say of one migration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mark {
    /// Applied, cleanly.
    Applied,
    /// Its up script runs outside a transaction now, or failed part way: sqlx and Flyway
    /// mark the row failed, golang-migrate dirty; diesel and dbmate, which write their row
    /// after the script, have none.
    Applying,
    /// Its down script runs outside a transaction now, or failed part way: sqlx and Flyway
    /// mark the row failed, golang-migrate dirty; diesel's and dbmate's row stays.
    Reverting,
    /// Not applied.
    Reverted,
}

/// One tenant's table of `tool`.
#[derive(Debug, Clone)]
pub struct Compat {
    tool: Tool,
    engine: Engine,
    /// The tool's table, qualified by the tenant's schema or database, quoted.
    table: String,
    /// fleetmig_history as the driver names it: golang-migrate's one row follows from it.
    history: String,
}

impl Compat {
    /// `tool`'s table in the tenant's `schema` (PostgreSQL) or `database` (MySQL), else
    /// in the session's own; `history`: the driver's name for fleetmig_history.
    pub fn new(tool: Tool, engine: Engine, namespace: Option<&str>, history: &str) -> Compat {
        let quote = |name: &str| match engine {
            Engine::MySql => backtick(name),
            Engine::Postgres | Engine::Sqlite => double(name),
        };
        let table = match namespace {
            Some(ns) => format!("{}.{}", quote(ns), quote(tool.table())),
            None => quote(tool.table()),
        };
        Compat {
            tool,
            engine,
            table,
            history: history.to_owned(),
        }
    }

    pub fn tool(&self) -> Tool {
        self.tool
    }

    /// The tool's table as the tool creates it on this engine, when it is missing.
    pub fn create_sql(&self) -> String {
        let t = &self.table;
        let pg = self.engine == Engine::Postgres;
        match self.tool {
            Tool::Sqlx => format!(
                "CREATE TABLE IF NOT EXISTS {t} (version BIGINT PRIMARY KEY, description TEXT NOT NULL, \
                 installed_on {} NOT NULL DEFAULT {}, success BOOLEAN NOT NULL, checksum {} NOT NULL, \
                 execution_time BIGINT NOT NULL);",
                if pg { "TIMESTAMPTZ" } else { "TIMESTAMP" },
                if pg { "now()" } else { "CURRENT_TIMESTAMP" },
                if pg { "BYTEA" } else { "BLOB" },
            ),
            Tool::Diesel => format!(
                "CREATE TABLE IF NOT EXISTS {t} (version VARCHAR(50) PRIMARY KEY NOT NULL, \
                 run_on TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP);"
            ),
            Tool::GolangMigrate if self.engine == Engine::Sqlite => format!(
                "CREATE TABLE IF NOT EXISTS {t} (version uint64, dirty bool); \
                 CREATE UNIQUE INDEX IF NOT EXISTS version_unique ON {t} (version);"
            ),
            Tool::GolangMigrate => {
                format!("CREATE TABLE IF NOT EXISTS {t} (version bigint not null primary key, dirty boolean not null);")
            }
            // As dbmate 2.36 writes it (checked against the real binary).
            Tool::Dbmate if pg => format!("CREATE TABLE IF NOT EXISTS {t} (version varchar primary key);"),
            Tool::Dbmate => format!("CREATE TABLE IF NOT EXISTS {t} (version varchar(128) primary key);"),
            Tool::Flyway => self.flyway_table(),
            Tool::Alembic => unreachable!("history_compat: alembic is refused when the fleet file loads"),
        }
    }

    fn flyway_table(&self) -> String {
        let t = &self.table;
        match self.engine {
            Engine::Postgres => format!(
                "CREATE TABLE IF NOT EXISTS {t} (installed_rank INT NOT NULL, version VARCHAR(50), \
                 description VARCHAR(200) NOT NULL, type VARCHAR(20) NOT NULL, script VARCHAR(1000) NOT NULL, \
                 checksum INTEGER, installed_by VARCHAR(100) NOT NULL, installed_on TIMESTAMP NOT NULL DEFAULT now(), \
                 execution_time INTEGER NOT NULL, success BOOLEAN NOT NULL, \
                 CONSTRAINT flyway_schema_history_pk PRIMARY KEY (installed_rank)); \
                 CREATE INDEX IF NOT EXISTS flyway_schema_history_s_idx ON {t} (success);"
            ),
            Engine::MySql => format!(
                "CREATE TABLE IF NOT EXISTS {t} (installed_rank INT NOT NULL, version VARCHAR(50), \
                 description VARCHAR(200) NOT NULL, type VARCHAR(20) NOT NULL, script VARCHAR(1000) NOT NULL, \
                 checksum INT, installed_by VARCHAR(100) NOT NULL, installed_on TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP, \
                 execution_time INT NOT NULL, success BOOL NOT NULL, \
                 CONSTRAINT flyway_schema_history_pk PRIMARY KEY (installed_rank), \
                 INDEX flyway_schema_history_s_idx (success)) ENGINE=InnoDB;"
            ),
            Engine::Sqlite => format!(
                "CREATE TABLE IF NOT EXISTS {t} (installed_rank INT NOT NULL PRIMARY KEY, version VARCHAR(50), \
                 description VARCHAR(200) NOT NULL, type VARCHAR(20) NOT NULL, script VARCHAR(1000) NOT NULL, \
                 checksum INT, installed_by VARCHAR(100) NOT NULL, \
                 installed_on TEXT NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f','now')), \
                 execution_time INT NOT NULL, success BOOLEAN NOT NULL); \
                 CREATE INDEX IF NOT EXISTS flyway_schema_history_s_idx ON {t} (success);"
            ),
        }
    }

    /// The statements, each ending in `;`, that make the tool's table say `mark` of the
    /// migration `entry` describes; `ms`: how long its script took, when known.
    pub fn record(&self, entry: &ForeignEntry, mark: Mark, ms: Option<i64>) -> String {
        let t = &self.table;
        let v = self.text(&entry.version);
        match (self.tool, mark) {
            (Tool::GolangMigrate, _) => self.current_version(entry, mark),
            (Tool::Diesel | Tool::Dbmate, Mark::Applied | Mark::Reverting) => format!(
                "INSERT INTO {t} (version) SELECT {v}{} WHERE NOT EXISTS (SELECT 1 FROM {t} WHERE version = {v});",
                self.dual()
            ),
            (Tool::Diesel | Tool::Dbmate, Mark::Applying | Mark::Reverted) | (Tool::Sqlx, Mark::Reverted) => {
                format!("DELETE FROM {t} WHERE version = {v};")
            }
            (Tool::Sqlx, _) => {
                let ok = self.boolean(mark == Mark::Applied);
                let sum = self.checksum(&entry.checksum);
                let ns = ms.map_or(-1, |ms| ms.saturating_mul(1_000_000));
                format!(
                    "DELETE FROM {t} WHERE version = {v} AND NOT (success = {ok} AND checksum = {sum}); \
                     INSERT INTO {t} (version, description, success, checksum, execution_time) \
                     SELECT {v}, {}, {ok}, {sum}, {ns}{} WHERE NOT EXISTS (SELECT 1 FROM {t} WHERE version = {v});",
                    self.text(&entry.description),
                    self.dual()
                )
            }
            (Tool::Flyway, Mark::Reverted) => format!("DELETE FROM {t} WHERE version = {v} AND type = 'SQL';"),
            (Tool::Flyway, _) => self.flyway_row(entry, mark == Mark::Applied, ms),
            (Tool::Alembic, _) => unreachable!("history_compat: alembic is refused when the fleet file loads"),
        }
    }

    /// Flyway's row: a new `installed_rank` after the last, `type` SQL, the database user.
    fn flyway_row(&self, entry: &ForeignEntry, ok: bool, ms: Option<i64>) -> String {
        let t = &self.table;
        let v = self.text(&entry.version);
        let ok = self.boolean(ok);
        let (desc, script) = (self.text(&entry.description), self.text(&entry.script));
        let sum = self.checksum(&entry.checksum);
        let user = match self.engine {
            Engine::Postgres => "current_user",
            Engine::MySql => "SUBSTRING_INDEX(USER(), '@', 1)",
            Engine::Sqlite => "''",
        };
        format!(
            "DELETE FROM {t} WHERE version = {v} AND type = 'SQL' AND NOT (success = {ok} AND checksum = {sum} \
             AND description = {desc} AND script = {script}); \
             INSERT INTO {t} (installed_rank, version, description, type, script, checksum, installed_by, \
             execution_time, success) SELECT (SELECT coalesce(max(installed_rank), 0) + 1 FROM {t}), {v}, {desc}, \
             'SQL', {script}, {sum}, {user}, {}, {ok}{} WHERE NOT EXISTS (SELECT 1 FROM {t} WHERE version = {v});",
            ms.unwrap_or(0).clamp(0, i64::from(i32::MAX)),
            self.dual()
        )
    }

    /// golang-migrate's one row, the tenant's current version and whether it is dirty,
    /// read off fleetmig_history as it is without this migration's row: after an up the
    /// newest of those and this one, after a down the newest of those (none left: no row,
    /// or -1 while dirty, as golang-migrate writes it).
    fn current_version(&self, entry: &ForeignEntry, mark: Mark) -> String {
        let int = match self.engine {
            Engine::Postgres => "BIGINT",
            Engine::MySql => "SIGNED",
            Engine::Sqlite => "INTEGER",
        };
        // A whole number, checked when the entry was made.
        let n = &entry.version;
        let (version, dirty, only) = match mark {
            Mark::Applied | Mark::Applying => (
                format!("CASE WHEN m IS NULL OR m < {n} THEN {n} ELSE m END"),
                mark == Mark::Applying,
                "",
            ),
            Mark::Reverting => ("coalesce(m, -1)".to_owned(), true, ""),
            Mark::Reverted => ("m".to_owned(), false, " WHERE m IS NOT NULL"),
        };
        format!(
            "DELETE FROM {t}; INSERT INTO {t} (version, dirty) SELECT {version}, {} FROM \
             (SELECT max(CAST(version AS {int})) AS m FROM {h} WHERE version <> '{n}') h{only};",
            self.boolean(dirty),
            t = self.table,
            h = self.history,
        )
    }

    /// MySQL wants a `FROM` before a `WHERE`.
    fn dual(&self) -> &'static str {
        if self.engine == Engine::MySql { " FROM DUAL" } else { "" }
    }

    fn boolean(&self, b: bool) -> &'static str {
        if b { "TRUE" } else { "FALSE" }
    }

    /// A text value: plain words as a literal, anything else spelt in hex, so no setting of
    /// the server (backslash escapes) can change what a quote means.
    fn text(&self, s: &str) -> String {
        if s.bytes().all(|b| b.is_ascii_alphanumeric() || b" ._-".contains(&b)) {
            return format!("'{s}'");
        }
        let hex = hex(s.as_bytes());
        match self.engine {
            Engine::Postgres => format!("convert_from(decode('{hex}', 'hex'), 'UTF8')"),
            Engine::MySql => format!("CONVERT(X'{hex}' USING utf8mb4)"),
            Engine::Sqlite => format!("CAST(X'{hex}' AS TEXT)"),
        }
    }

    fn checksum(&self, sum: &ForeignChecksum) -> String {
        match sum {
            ForeignChecksum::None => "NULL".to_owned(),
            ForeignChecksum::Crc32(n) => n.to_string(),
            ForeignChecksum::Sha384(bytes) if self.engine == Engine::Postgres => {
                format!("decode('{}', 'hex')", hex(bytes))
            }
            ForeignChecksum::Sha384(bytes) => format!("X'{}'", hex(bytes)),
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut out, b| {
        let _ = write!(out, "{b:02x}");
        out
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(version: &str, description: &str) -> ForeignEntry {
        ForeignEntry {
            version: version.into(),
            description: description.into(),
            script: format!("V{version}__x.sql"),
            checksum: ForeignChecksum::Sha384(vec![0xab, 0x01]),
        }
    }

    #[test]
    fn tables_are_qualified_by_the_tenants_schema_or_database_and_quoted() {
        let pg = Compat::new(
            Tool::Sqlx,
            Engine::Postgres,
            Some("t\"1"),
            "\"t\"\"1\".fleetmig_history",
        );
        assert!(
            pg.create_sql()
                .starts_with("CREATE TABLE IF NOT EXISTS \"t\"\"1\".\"_sqlx_migrations\" (")
        );
        let my = Compat::new(Tool::Dbmate, Engine::MySql, Some("db"), "`db`.fleetmig_history");
        assert!(
            my.create_sql().contains("`db`.`schema_migrations`"),
            "{}",
            my.create_sql()
        );
        let lite = Compat::new(Tool::Flyway, Engine::Sqlite, None, "fleetmig_history");
        assert!(lite.create_sql().contains("ON \"flyway_schema_history\" (success)"));
    }

    #[test]
    fn free_text_is_spelt_in_hex_on_every_engine() {
        let e = entry("1", "it's a \\ test");
        let pg = Compat::new(Tool::Sqlx, Engine::Postgres, None, "fleetmig_history").record(&e, Mark::Applied, None);
        assert!(!pg.contains("it's"), "{pg}");
        assert!(pg.contains("convert_from(decode('6974277320612"), "{pg}");
        assert!(pg.contains("decode('ab01', 'hex')") && pg.contains("-1"), "{pg}");
        let my = Compat::new(Tool::Sqlx, Engine::MySql, None, "fleetmig_history").record(&e, Mark::Applied, Some(2));
        assert!(
            my.contains("CONVERT(X'") && my.contains("X'ab01'") && my.contains("2000000"),
            "{my}"
        );
        assert!(my.contains("FROM DUAL WHERE NOT EXISTS"), "{my}");
    }

    #[test]
    fn marks_map_to_each_tools_own_states() {
        let e = entry("3", "c");
        let diesel = Compat::new(Tool::Diesel, Engine::Sqlite, None, "fleetmig_history");
        assert!(diesel.record(&e, Mark::Applying, None).starts_with("DELETE"));
        assert!(diesel.record(&e, Mark::Reverting, None).starts_with("INSERT"));
        let sqlx = Compat::new(Tool::Sqlx, Engine::Sqlite, None, "fleetmig_history");
        assert!(sqlx.record(&e, Mark::Reverting, None).contains("FALSE, X'ab01'"));
        assert!(sqlx.record(&e, Mark::Applying, None).contains("FALSE, X'ab01'"));
        assert!(sqlx.record(&e, Mark::Reverted, None).starts_with("DELETE"));
        let migrate = Compat::new(Tool::GolangMigrate, Engine::Postgres, None, "fleetmig_history");
        let gone = migrate.record(&e, Mark::Reverted, None);
        assert!(
            gone.contains("SELECT m, FALSE") && gone.ends_with("h WHERE m IS NOT NULL;"),
            "{gone}"
        );
        let dirty = migrate.record(&e, Mark::Reverting, None);
        assert!(dirty.contains("coalesce(m, -1), TRUE"), "{dirty}");
    }
}
