//! Tenants, the hosts they live on, and the fleet.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

use super::secret::DbUrl;
use crate::model::policy::WaveSpec;
use crate::model::policy::{MaxFailures, MaxSkipped, RollbackPolicy};

/// Database engines fleetmig speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Engine {
    Postgres,
    MySql,
    Sqlite,
}

impl Engine {
    /// The engine a URL scheme names, if any.
    pub fn from_scheme(scheme: &str) -> Option<Engine> {
        match scheme {
            "postgres" | "postgresql" => Some(Engine::Postgres),
            "mysql" | "mariadb" => Some(Engine::MySql),
            "sqlite" => Some(Engine::Sqlite),
            _ => None,
        }
    }

    /// Whether DDL commits with the transaction it runs in.
    pub fn has_transactional_ddl(self) -> bool {
        !matches!(self, Engine::MySql)
    }

    /// The URL query parameters a `discover:` registry row may give for this engine, each
    /// with the values it may take (`None`: a plain name, see [`is_plain_word`]). Anything
    /// else in a row's URL is refused: a registry is data, and must not be able to set
    /// what a session runs (a SQLite parameter is a PRAGMA; PostgreSQL's `options` sets any
    /// server setting).
    pub fn registry_params(self) -> &'static [(&'static str, Option<&'static [&'static str]>)] {
        match self {
            Engine::Postgres => &[
                ("sslmode", Some(PG_SSL_MODES)),
                ("ssl-mode", Some(PG_SSL_MODES)),
                ("application_name", None),
            ],
            Engine::MySql => &[("ssl-mode", Some(MYSQL_SSL_MODES)), ("sslmode", Some(MYSQL_SSL_MODES))],
            Engine::Sqlite => &[
                (
                    "journal_mode",
                    Some(&["delete", "truncate", "persist", "memory", "wal", "off"]),
                ),
                (
                    "synchronous",
                    Some(&["off", "normal", "full", "extra", "0", "1", "2", "3"]),
                ),
            ],
        }
    }
}

const PG_SSL_MODES: &[&str] = &["disable", "allow", "prefer", "require", "verify-ca", "verify-full"];
const MYSQL_SSL_MODES: &[&str] = &["disabled", "preferred", "required", "verify_ca", "verify_identity"];

/// 1 to 63 ASCII letters, digits, `_`, `.`, `+` or `-`: a value that can be pasted into a
/// statement without quoting (a SQLite PRAGMA value) and carries no SQL.
pub fn is_plain_word(text: &str) -> bool {
    (1..=63).contains(&text.len())
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'+' | b'-'))
}

/// The PRAGMAs a SQLite URL may set (`sqlite://a.db?journal_mode=wal`): SQLite ignores a
/// PRAGMA it does not know, so a misspelt one, or sqlx's own URL options (`mode=ro`,
/// `immutable=1`, `vfs=...`, `cache=shared`, which fleetmig does not take), would silently
/// do nothing.
pub const SQLITE_PRAGMAS: &[&str] = &[
    "analysis_limit",
    "application_id",
    "auto_vacuum",
    "automatic_index",
    "busy_timeout",
    "cache_size",
    "cache_spill",
    "case_sensitive_like",
    "cell_size_check",
    "checkpoint_fullfsync",
    "defer_foreign_keys",
    "encoding",
    "foreign_keys",
    "fullfsync",
    "hard_heap_limit",
    "ignore_check_constraints",
    "journal_mode",
    "journal_size_limit",
    "legacy_alter_table",
    "locking_mode",
    "max_page_count",
    "mmap_size",
    "page_size",
    "query_only",
    "read_uncommitted",
    "recursive_triggers",
    "reverse_unordered_selects",
    "secure_delete",
    "soft_heap_limit",
    "synchronous",
    "temp_store",
    "threads",
    "trusted_schema",
    "user_version",
    "wal_autocheckpoint",
];

/// Why a SQLite URL may not set this PRAGMA, when it would undercut what fleetmig relies
/// on: its tenant lock (exclusive locking mode, its own wait), rolling a failed migration
/// back, and its handling of foreign keys during a migration.
pub fn sqlite_pragma_conflict(pragma: &str, value: &str) -> Option<&'static str> {
    match (
        pragma.to_ascii_lowercase().as_str(),
        value.to_ascii_lowercase().as_str(),
    ) {
        ("locking_mode", _) => {
            Some("fleetmig holds each tenant file in exclusive locking mode: that is how a second runner is kept out")
        }
        ("busy_timeout", _) => Some("fleetmig waits for another runner's lock itself: use --lock-wait"),
        ("journal_mode", "off") => {
            Some("without a journal SQLite cannot roll a failed migration back, and the report would say it did")
        }
        ("foreign_keys", _) => Some(
            "fleetmig turns foreign keys off while a migration runs (SQLite's way to change a schema) and checks them before the commit",
        ),
        _ => None,
    }
}

/// A SQLite URL parameter, which fleetmig runs as `PRAGMA key = value`: the key a name of
/// ASCII letters and `_`, the value a plain word. Nothing else is ever pasted into SQL.
pub fn is_sqlite_pragma(key: &str, value: &str) -> bool {
    !key.is_empty() && key.bytes().all(|b| b.is_ascii_alphabetic() || b == b'_') && is_plain_word(value)
}

impl fmt::Display for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Engine::Postgres => "postgres",
            Engine::MySql => "mysql",
            Engine::Sqlite => "sqlite",
        })
    }
}

/// A value for a message: escaped, and cut after 80 characters so that a runaway value (a
/// whole file pasted into an id) does not become a message nobody can read.
pub fn quoted(text: &str) -> String {
    const SHOWN: usize = 80;
    match text.char_indices().nth(SHOWN) {
        Some((cut, _)) => format!(
            "{}... ({} characters)",
            text[..cut].escape_debug(),
            text.chars().count()
        ),
        None => text.escape_debug().to_string(),
    }
}

/// The longest identifier accepted: PostgreSQL's limit (MySQL's is 64).
pub const MAX_IDENT_LEN: usize = 63;

/// A schema or database name: 1 to 63 ASCII letters, digits, `_` or `-`.
/// Drivers still quote it every time; the check keeps surprises out of quoting.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct Ident(String);

impl Ident {
    pub fn new(name: &str) -> Result<Self, BadIdent> {
        if name.is_empty() || name.len() > MAX_IDENT_LEN {
            return Err(BadIdent::Length(name.to_owned()));
        }
        if let Some(bad) = name
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-'))
        {
            return Err(BadIdent::Char {
                name: name.to_owned(),
                bad,
            });
        }
        Ok(Ident(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Ident {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A schema or database name refused by [`Ident::new`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadIdent {
    #[error("`{}` must be 1 to {MAX_IDENT_LEN} characters long", quoted(.0))]
    Length(String),
    #[error(
        "`{}` holds `{}`; only ASCII letters, digits, `_` and `-` are allowed",
        quoted(.name),
        .bad.escape_debug()
    )]
    Char { name: String, bad: char },
}

/// A tenant id refused by [`TenantId::new`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadTenantId {
    #[error("tenant id `{}` must be 1 to {MAX_IDENT_LEN} characters long", quoted(.0))]
    Length(String),
    #[error(
        "tenant id `{}` holds `{}`; only ASCII letters, digits, `_`, `-` and `.` are allowed",
        quoted(.id),
        .bad.escape_debug()
    )]
    Char { id: String, bad: char },
}

/// A tenant's id: 1 to 63 ASCII letters, digits, `_`, `-` or `.`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct TenantId(String);

impl TenantId {
    pub fn new(id: &str) -> Result<Self, BadTenantId> {
        if id.is_empty() || id.len() > MAX_IDENT_LEN {
            return Err(BadTenantId::Length(id.to_owned()));
        }
        if let Some(bad) = id
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')))
        {
            return Err(BadTenantId::Char { id: id.to_owned(), bad });
        }
        Ok(TenantId(id.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where in its server a tenant's tables live.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Namespace {
    /// The database on the server (PostgreSQL, MySQL); `None`: the one the URL names.
    pub database: Option<Ident>,
    /// The schema in that database (PostgreSQL); `None`: the connection's default.
    pub schema: Option<Ident>,
}

/// A named server shared by many tenants.
#[derive(Debug, Clone)]
pub struct Host {
    pub name: String,
    pub url: DbUrl,
    /// Never more concurrent sessions to this server.
    pub max_connections: u32,
}

/// One tenant: who it is and where its tables live.
#[derive(Debug, Clone)]
pub struct Tenant {
    pub id: TenantId,
    pub labels: BTreeMap<String, String>,
    pub canary: bool,
    pub engine: Engine,
    /// The server (or SQLite file) the tenant lives on, password included.
    pub url: DbUrl,
    pub namespace: Namespace,
    /// The named host, when the tenant lives on one.
    pub host: Option<String>,
    /// Statements run on every connection before it migrates.
    pub init_sql: Vec<String>,
    /// A PostgreSQL schema-tenant's `search_path` after its own schema, which always comes
    /// first (`search_path: "{schema}, public"` gives `[public]`); empty: its own only.
    pub search_path: Vec<Ident>,
    /// A session that writes creates the tenant's `database` when it is missing: what
    /// MySQL does unless the fleet file says `create_database: false`, and PostgreSQL only
    /// when it says `create_database: true`.
    pub create_database: bool,
    /// Another tool whose history table fleetmig keeps in step with its own
    /// (`history_compat:`), so that tool's migrator finds nothing to do.
    pub history_compat: Option<crate::model::foreign::Tool>,
}

impl Tenant {
    /// A SQLite tenant with `labels`, for the unit tests of what reads tenants.
    #[cfg(test)]
    pub fn for_test(id: &str, labels: &[(&str, &str)], canary: bool) -> Tenant {
        Tenant {
            id: TenantId::new(id).expect("a valid test id"),
            labels: labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            canary,
            engine: Engine::Sqlite,
            url: DbUrl::new(url::Url::parse("sqlite:///x.db").expect("a valid URL")),
            namespace: Namespace::default(),
            host: None,
            init_sql: vec![],
            search_path: vec![],
            create_database: false,
            history_compat: None,
        }
    }

    /// The server this tenant's sessions count against: the named host, or its URL's
    /// host and port (the file, for SQLite).
    pub fn server_key(&self) -> String {
        match (&self.host, self.engine) {
            (Some(host), _) => format!("host:{host}"),
            (None, Engine::Sqlite) => format!("sqlite:{}", self.url.url().path()),
            (None, _) => {
                let url = self.url.url();
                format!(
                    "{}://{}:{}",
                    self.engine,
                    url.host_str().unwrap_or(""),
                    url.port().unwrap_or(0)
                )
            }
        }
    }

    /// Where the tenant lives, for people: URL (password hidden) plus database and schema.
    pub fn location(&self) -> String {
        let mut out = self.url.redacted();
        if let Some(db) = &self.namespace.database {
            out.push_str(&format!(" database={db}"));
        }
        if let Some(schema) = &self.namespace.schema {
            out.push_str(&format!(" schema={schema}"));
        }
        out
    }
}

/// The fleet file's `rollout:` section: defaults for `up` and `down` that flags override.
#[derive(Debug, Clone, Default)]
pub struct RolloutDefaults {
    pub waves: Option<WaveSpec>,
    pub bake: Option<Duration>,
    /// `window: "Mon-Fri 02:00-05:00 Europe/Copenhagen"`: tenants start only then.
    pub window: Option<crate::model::window::Window>,
    pub check: Option<String>,
    pub max_failures: Option<MaxFailures>,
    pub max_skipped: Option<MaxSkipped>,
    pub rollback: Option<RollbackPolicy>,
    /// `host_failures: 3`: the breaker for dead hosts (`--host-failures`).
    pub host_failures: Option<u32>,
    /// `check_migrations: true`: `up` runs `check` over the pending migrations first.
    pub check_migrations: bool,
    /// `lint: warn|deny|off`: what `up`'s lint before wave 1 does [default: warn].
    pub lint: Option<crate::model::lint::LintMode>,
}

/// The fleet file's `discover:` section: a query on a registry database whose rows are
/// tenants.
#[derive(Debug, Clone)]
pub struct Discover {
    /// The registry database.
    pub url: DbUrl,
    /// Sent as written; each row is a tenant, each column a field or a label.
    pub query: String,
    /// The host of a discovered tenant whose row names no `url` or `host`, before `defaults:`.
    pub host: Option<String>,
}

/// One row of the `discover:` query in its column order: name, and value as text (`None`
/// for NULL).
pub type RegistryRow = Vec<(String, Option<String>)>;

/// The fleet file, loaded and checked.
#[derive(Debug, Clone)]
pub struct Fleet {
    /// The file it was read from.
    pub path: PathBuf,
    pub rollout: RolloutDefaults,
    /// The ledger's URL from the fleet file, if it names one.
    pub ledger: Option<DbUrl>,
    pub hosts: BTreeMap<String, Host>,
    /// Listed tenants first, then discovered ones in the query's order.
    pub tenants: Vec<Tenant>,
    /// Where more tenants are found; `tenants` holds them once discovery ran.
    pub discover: Option<Discover>,
    /// The fleet file's `migrations:`, if it names the folder.
    pub migrations: Option<MigrationsSource>,
    /// The fleet file's `scratch:`: the servers `check` makes its scratch databases on, one
    /// per engine at most.
    pub scratch: Vec<(Engine, DbUrl)>,
    /// The fleet file's `notify:`: webhooks told of each run's start, waves, stop and end.
    pub notify: Vec<crate::model::notify::Webhook>,
}

/// Where a fleet's migrations are: the fleet file's `migrations: DIR` or
/// `migrations: { path: DIR, layout: diesel }`, the path relative to the fleet file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationsSource {
    /// The folder: of migrations, or of a folder per engine (unless `engines` names them).
    pub path: PathBuf,
    /// `None`: detected from the folder.
    pub layout: Option<crate::model::migration::Layout>,
    /// `out_of_order: true`: pending migrations older than a tenant's newest run.
    pub out_of_order: bool,
    /// `{ postgres: DIR, mysql: { path: DIR, layout: flyway } }`: each engine's folder and
    /// its layout (`None`: detected, or `layout`), when the fleet file names them.
    pub engines: Vec<(Engine, PathBuf, Option<crate::model::migration::Layout>)>,
}

impl Fleet {
    pub fn tenant(&self, id: &str) -> Option<&Tenant> {
        self.tenants.iter().find(|t| t.id.as_str() == id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_refuse_quotes_and_separators() {
        assert!(Ident::new("tenant_acme-1").is_ok());
        let err = Ident::new("a\"; drop table x; --").unwrap_err().to_string();
        assert!(err.contains("holds `\\\"`"), "{err}");
        assert!(Ident::new("").is_err());
        assert!(Ident::new(&"x".repeat(64)).is_err());
        assert!(
            TenantId::new("o'brien")
                .unwrap_err()
                .to_string()
                .contains("holds `\\'`")
        );
        assert!(TenantId::new("acme.eu-1").is_ok());
    }

    #[test]
    fn a_runaway_name_is_cut_in_its_message() {
        let long = "a".repeat(1_000_000);
        let err = TenantId::new(&long).unwrap_err().to_string();
        assert!(err.len() < 200 && err.contains("(1000000 characters)"), "{err}");
        let err = Ident::new(&long).unwrap_err().to_string();
        assert!(err.len() < 200 && err.contains("must be 1 to 63"), "{err}");
    }
}
