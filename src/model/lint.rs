//! `lint`'s vocabulary: its rules (stable ids, engines, severity, why, the safe pattern),
//! a finding with where it is and whether the file allows it, and on how many tenants a
//! finding's migration will run.

use std::path::PathBuf;

use serde::Serialize;

use crate::model::fleet::Engine;
use crate::model::migration::Version;

/// How much a finding matters: an error refuses `plan` and `up`; a warning is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Warning,
    Error,
}

impl Severity {
    pub fn name(self) -> &'static str {
        match self {
            Severity::Warning => "warning",
            Severity::Error => "error",
        }
    }
}

const PG: &[Engine] = &[Engine::Postgres];
const MYSQL: &[Engine] = &[Engine::MySql];
const SQLITE: &[Engine] = &[Engine::Sqlite];
const ALL: &[Engine] = &[Engine::Postgres, Engine::MySql, Engine::Sqlite];
const PG_MYSQL: &[Engine] = &[Engine::Postgres, Engine::MySql];

/// One lint rule. Its id is stable: suppressions and CI configurations name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Rule {
    IndexWithoutConcurrently,
    ConcurrentlyInTransaction,
    NotNullColumnWithoutDefault,
    ColumnTypeRewrite,
    SetNotNullWithoutCheck,
    ConstraintWithoutNotValid,
    RenameColumn,
    RenameTable,
    DropColumn,
    DropTable,
    DropTableLeavesEnum,
    UnbatchedDataChange,
    MissingLockTimeout,
    MysqlDdlWithData,
    SqliteRebuildWithoutFkCheck,
    BadSuppression,
    UnparsedStatement,
}

/// What a rule is, for people: the rule table in the README and every finding's text.
#[derive(Debug, Clone, Copy)]
pub struct RuleInfo {
    pub id: &'static str,
    pub engines: &'static [Engine],
    pub severity: Severity,
    pub why: &'static str,
    pub safe: &'static str,
}

impl Rule {
    /// Every rule, in the README's order.
    pub const ALL: [Rule; 17] = [
        Rule::IndexWithoutConcurrently,
        Rule::ConcurrentlyInTransaction,
        Rule::NotNullColumnWithoutDefault,
        Rule::ColumnTypeRewrite,
        Rule::SetNotNullWithoutCheck,
        Rule::ConstraintWithoutNotValid,
        Rule::RenameColumn,
        Rule::RenameTable,
        Rule::DropColumn,
        Rule::DropTable,
        Rule::DropTableLeavesEnum,
        Rule::UnbatchedDataChange,
        Rule::MissingLockTimeout,
        Rule::MysqlDdlWithData,
        Rule::SqliteRebuildWithoutFkCheck,
        Rule::BadSuppression,
        Rule::UnparsedStatement,
    ];

    /// The rule a suppression names, if there is one by that id.
    pub fn from_id(id: &str) -> Option<Rule> {
        Rule::ALL.into_iter().find(|r| r.id() == id)
    }

    pub fn id(self) -> &'static str {
        self.info().id
    }

    pub fn severity(self) -> Severity {
        self.info().severity
    }

    /// Whether the rule looks at `engine`'s migrations.
    pub fn applies_to(self, engine: Engine) -> bool {
        self.info().engines.contains(&engine)
    }

    pub fn info(self) -> RuleInfo {
        RULES[self as usize]
    }
}

/// Each rule's description, in the order of [`Rule`]'s variants.
const RULES: [RuleInfo; 17] = [
    // Rule::IndexWithoutConcurrently
    RuleInfo {
        id: "index-without-concurrently",
        engines: PG,
        severity: Severity::Warning,
        why: "CREATE INDEX blocks every write to the table until the index is built, on every tenant",
        safe: "CREATE INDEX CONCURRENTLY in a migration marked `-- fleetmig: no-transaction` (an index on a table created in the same migration is fine)",
    },
    // Rule::ConcurrentlyInTransaction
    RuleInfo {
        id: "concurrently-in-transaction",
        engines: PG,
        severity: Severity::Error,
        why: "CONCURRENTLY cannot run inside a transaction block: the migration fails on every tenant",
        safe: "put `-- fleetmig: no-transaction` on the first line, with the CONCURRENTLY statement alone in its migration",
    },
    // Rule::NotNullColumnWithoutDefault
    RuleInfo {
        id: "not-null-column-without-default",
        engines: ALL,
        severity: Severity::Warning,
        why: "ADD COLUMN ... NOT NULL without a default fails on a tenant whose table has rows (or fills them with an implicit value on MySQL)",
        safe: "add the column nullable (or with a DEFAULT), backfill in batches, then add the NOT NULL constraint",
    },
    // Rule::ColumnTypeRewrite
    RuleInfo {
        id: "column-type-rewrite",
        engines: PG_MYSQL,
        severity: Severity::Warning,
        why: "changing a column's type rewrites the table under an exclusive lock, on every tenant",
        safe: "add a new column of the new type, backfill it in batches, switch the application, then drop the old column",
    },
    // Rule::SetNotNullWithoutCheck
    RuleInfo {
        id: "set-not-null-without-check",
        engines: PG,
        severity: Severity::Warning,
        why: "SET NOT NULL scans the whole table under an ACCESS EXCLUSIVE lock",
        safe: "ADD CONSTRAINT ... CHECK (col IS NOT NULL) NOT VALID, VALIDATE CONSTRAINT, then SET NOT NULL (which then skips the scan)",
    },
    // Rule::ConstraintWithoutNotValid
    RuleInfo {
        id: "constraint-without-not-valid",
        engines: PG,
        severity: Severity::Warning,
        why: "ADD FOREIGN KEY or CHECK validates every row while holding a lock that blocks writes",
        safe: "ADD CONSTRAINT ... NOT VALID, then ALTER TABLE ... VALIDATE CONSTRAINT in a later migration",
    },
    // Rule::RenameColumn
    RuleInfo {
        id: "rename-column",
        engines: ALL,
        severity: Severity::Warning,
        why: "the running application still uses the old name: it breaks between the migration and its deploy",
        safe: "expand/contract: add the new column, write both, backfill, switch reads, drop the old one later",
    },
    // Rule::RenameTable
    RuleInfo {
        id: "rename-table",
        engines: ALL,
        severity: Severity::Warning,
        why: "the running application still uses the old name: it breaks between the migration and its deploy",
        safe: "expand/contract: create the new table (or a view under the old name), move the application, then drop the old one",
    },
    // Rule::DropColumn
    RuleInfo {
        id: "drop-column",
        engines: ALL,
        severity: Severity::Warning,
        why: "the running application may still read or write the column",
        safe: "expand/contract: stop using the column in a deploy first, then drop it in a later migration",
    },
    // Rule::DropTable
    RuleInfo {
        id: "drop-table",
        engines: ALL,
        severity: Severity::Warning,
        why: "the running application may still use the table, and its data is gone",
        safe: "expand/contract: stop using the table in a deploy first, then drop it in a later migration",
    },
    // Rule::DropTableLeavesEnum
    RuleInfo {
        id: "drop-table-leaves-enum",
        engines: PG,
        severity: Severity::Warning,
        why: "the set created an enum type for this table; dropping the table leaves the type behind, and a later CREATE TYPE of the same name fails",
        safe: "DROP TYPE the enum in the same migration (and recreate it in the down)",
    },
    // Rule::UnbatchedDataChange
    RuleInfo {
        id: "unbatched-data-change",
        engines: ALL,
        severity: Severity::Warning,
        why: "UPDATE or DELETE of a whole table that already holds data locks every row in one long transaction",
        safe: "change rows in batches (WHERE id BETWEEN ...), from a job or a no-transaction migration",
    },
    // Rule::MissingLockTimeout
    RuleInfo {
        id: "missing-lock-timeout",
        engines: PG,
        severity: Severity::Warning,
        why: "a statement that waits for an ACCESS EXCLUSIVE lock queues every query behind it",
        safe: "SET lock_timeout = '2s'; before it in the migration (fleetmig's `--lock-timeout` also sets it per session)",
    },
    // Rule::MysqlDdlWithData
    RuleInfo {
        id: "mysql-ddl-with-data",
        engines: MYSQL,
        severity: Severity::Warning,
        why: "MySQL commits implicitly at each DDL statement: a failure after it leaves the tenant dirty, half applied",
        safe: "put DDL and data changes (INSERT, UPDATE, DELETE) in separate migrations",
    },
    // Rule::SqliteRebuildWithoutFkCheck
    RuleInfo {
        id: "sqlite-rebuild-without-fk-check",
        engines: SQLITE,
        severity: Severity::Warning,
        why: "a table rebuild (create new, copy, drop old, rename) can leave rows that break foreign keys, unnoticed",
        safe: "end the rebuild with PRAGMA foreign_key_check (it fails the migration when a row breaks a key)",
    },
    // Rule::BadSuppression
    RuleInfo {
        id: "bad-suppression",
        engines: ALL,
        severity: Severity::Warning,
        why: "a suppression must name a known rule and say why, or it hides a finding nobody can judge",
        safe: "-- fleetmig: allow <rule-id> <reason>",
    },
    // Rule::UnparsedStatement
    RuleInfo {
        id: "unparsed-statement",
        engines: ALL,
        severity: Severity::Warning,
        why: "fleetmig's SQL parser could not read this statement, so no rule checked it",
        safe: "check the statement by hand; suppress with a reason once reviewed",
    },
];

/// A finding: a rule a statement breaks, where, and whether the file allows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub rule: Rule,
    pub file: PathBuf,
    /// The migration the file is (none for a file given on the command line).
    pub version: Option<Version>,
    /// 1-based line and column (in characters) of the statement or clause.
    pub line: usize,
    pub column: usize,
    pub message: String,
    /// The statement, as written (its first lines).
    pub statement: String,
    /// The reason of the `-- fleetmig: allow` that silences it, when one does.
    pub suppressed: Option<String>,
}

impl Finding {
    /// True when it counts: not suppressed.
    pub fn is_live(&self) -> bool {
        self.suppressed.is_none()
    }
}

/// On how many tenants a finding's migration will run, and how many at once per host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Reach {
    /// The fleet was surveyed.
    Surveyed {
        /// Selected tenants for which the migration is pending.
        tenants: usize,
        /// Selected tenants of the engine whose history could not be read: the migration
        /// may be pending there too.
        unreachable: usize,
        hosts: Vec<HostReach>,
    },
    /// No fleet counts: why (files given without a fleet, no fleet file).
    Unknown { why: String },
}

/// One host's share of a finding's tenants.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HostReach {
    pub host: String,
    pub tenants: usize,
    /// At most this many run it at once: the least of `-j`, the host's
    /// `max_connections` and its pending tenants.
    pub at_once: usize,
}

/// A finding and where its migration will run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Linted {
    pub finding: Finding,
    pub reach: Reach,
}

/// What `lint` found in the files it read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LintReport {
    pub findings: Vec<Linted>,
    /// How many files were read.
    pub files: usize,
    /// Selected tenants whose history could not be read: every migration up to the
    /// target is linted for them, and the counts may be short.
    pub unsurveyed: usize,
}

impl LintReport {
    /// The findings no `allow` silences.
    pub fn live(&self) -> impl Iterator<Item = &Finding> {
        self.findings.iter().map(|l| &l.finding).filter(|f| f.is_live())
    }

    /// The live findings of error severity.
    pub fn errors(&self) -> impl Iterator<Item = &Finding> {
        self.live().filter(|f| f.rule.severity() == Severity::Error)
    }

    /// True when nothing fails the lint: no live error (with `deny_warnings`, no live
    /// finding at all).
    pub fn passes(&self, deny_warnings: bool) -> bool {
        match deny_warnings {
            true => self.live().next().is_none(),
            false => self.errors().next().is_none(),
        }
    }
}

/// What `up` does with the lint of its pending migrations before wave 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LintMode {
    /// Print the findings and go on.
    #[default]
    Warn,
    /// Refuse the run when any finding is not allowed.
    Deny,
    /// Do not lint (an error still refuses the run: it would fail on every tenant).
    Off,
}

impl LintMode {
    pub fn name(self) -> &'static str {
        match self {
            LintMode::Warn => "warn",
            LintMode::Deny => "deny",
            LintMode::Off => "off",
        }
    }
}

/// A `lint:` mode that is none of warn, deny, off.
#[derive(Debug, thiserror::Error)]
#[error("`{0}`: expected warn, deny or off")]
pub struct BadLintMode(pub String);

impl std::str::FromStr for LintMode {
    type Err = BadLintMode;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [LintMode::Warn, LintMode::Deny, LintMode::Off]
            .into_iter()
            .find(|m| m.name() == s)
            .ok_or_else(|| BadLintMode(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rule_table_follows_the_variants_and_ids_are_unique_kebab_case() {
        for (i, rule) in Rule::ALL.into_iter().enumerate() {
            assert_eq!(rule as usize, i, "{rule:?}");
            let id = rule.id();
            assert!(id.chars().all(|c| c.is_ascii_lowercase() || c == '-'), "{id}");
            assert_eq!(Rule::from_id(id), Some(rule));
        }
    }
}
