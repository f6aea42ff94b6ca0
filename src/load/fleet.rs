//! The fleet file (`tenants.yaml`), and `adopt --map`'s revision map: the only code that
//! reads YAML.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use url::Url;

use crate::model::bounds;
use crate::model::fleet::{
    BadIdent, Discover, Engine, Fleet, Host, Ident, MigrationsSource, Namespace, RolloutDefaults, Tenant, TenantId,
    quoted,
};
use crate::model::foreign::{RevisionMap, Tool};
use crate::model::migration::{Layout, Version, VersionStyle};
use crate::model::notify::{NotifyFormat, Webhook};
use crate::model::policy::{RollbackPolicy, WaveSpec};
use crate::model::secret::{DbUrl, redact, scrub};

/// Sessions per host when the fleet file does not say.
pub const DEFAULT_MAX_CONNECTIONS: u32 = 8;

/// What can be wrong with a fleet file. Rendered after "fleet file `PATH`: ".
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    #[error("reading fleet file `{}`", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The parser's message, passwords hidden: it quotes the YAML it choked on.
    #[error("fleet file `{}`: {message}", path.display())]
    Syntax { path: PathBuf, message: String },
    #[error("fleet file `{}`: {context}: {message}", path.display())]
    Invalid {
        path: PathBuf,
        context: String,
        message: String,
    },
}

/// The visitor methods of a value that may be a scalar, each building `Scalar` then `$wrap`.
macro_rules! scalar_visits {
    ($wrap:expr) => {
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
            Ok($wrap(Scalar::Str(v.to_owned())))
        }
        fn visit_string<E: serde::de::Error>(self, v: String) -> Result<Self::Value, E> {
            Ok($wrap(Scalar::Str(v)))
        }
        fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Self::Value, E> {
            Ok($wrap(Scalar::Int(v.into())))
        }
        fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Self::Value, E> {
            Ok($wrap(Scalar::Int(v.into())))
        }
        fn visit_i128<E: serde::de::Error>(self, v: i128) -> Result<Self::Value, E> {
            Ok($wrap(Scalar::Int(v)))
        }
        fn visit_u128<E: serde::de::Error>(self, v: u128) -> Result<Self::Value, E> {
            match i128::try_from(v) {
                Ok(v) => Ok($wrap(Scalar::Int(v))),
                Err(_) => Ok($wrap(Scalar::Str(v.to_string()))),
            }
        }
        fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Self::Value, E> {
            Ok($wrap(Scalar::Float(v)))
        }
        fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Self::Value, E> {
            Ok($wrap(Scalar::Bool(v)))
        }
    };
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileDoc {
    #[serde(default)]
    hosts: BTreeMap<String, HostDoc>,
    #[serde(default)]
    defaults: DefaultsDoc,
    #[serde(default)]
    rollout: RolloutDoc,
    /// Where runs are recorded: `postgres://...` or `sqlite://...`.
    ledger: Option<String>,
    /// Optional when `discover:` finds the tenants.
    tenants: Option<Vec<TenantDoc>>,
    discover: Option<DiscoverDoc>,
    /// Read through [`migrations_value`], whose error names the key and its two forms.
    migrations: Option<serde_yaml::Value>,
    /// Where `check` makes its scratch databases: a server URL or a host's name, or a
    /// list of them (one per engine).
    scratch: Option<ScratchDoc>,
    /// Webhooks told of the run's start, each wave's end, a stop and the finish.
    notify: Option<Vec<NotifyDoc>>,
}

/// A `notify:` entry: a URL (JSON bodies), or a URL and its body's format.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum NotifyDoc {
    Url(String),
    Map(NotifyMap),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NotifyMap {
    url: String,
    format: Option<String>,
}

/// `scratch:`: one server, or one per engine.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum ScratchDoc {
    One(String),
    Many(Vec<String>),
}

/// `migrations:`: a folder, or a folder and its layout.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum MigrationsDoc {
    Path(String),
    Map(MigrationsMap),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MigrationsMap {
    path: Option<String>,
    layout: Option<String>,
    #[serde(default)]
    out_of_order: bool,
    /// A folder per engine, instead of `path`.
    #[serde(alias = "postgresql")]
    postgres: Option<EngineFolderDoc>,
    #[serde(alias = "mariadb")]
    mysql: Option<EngineFolderDoc>,
    sqlite: Option<EngineFolderDoc>,
}

/// One engine's folder: a path, or a path and its layout.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum EngineFolderDoc {
    Path(String),
    Map { path: String, layout: Option<String> },
}

/// The `migrations:` entry, its path taken relative to the fleet file's folder `base`.
fn migrations_section(path: &Path, base: &Path, doc: MigrationsDoc) -> Result<MigrationsSource, FleetError> {
    let layout_of = |key: &str, l: Option<String>| {
        l.map(|l| l.parse::<Layout>().map_err(|e| invalid(path, key, e)))
            .transpose()
    };
    let folder = |key: &str, dir: String| {
        if dir.trim().is_empty() {
            return Err(invalid(path, key, "the path is empty: name the migrations folder"));
        }
        Ok(base.join(dir))
    };
    let m = match doc {
        MigrationsDoc::Path(dir) => {
            return Ok(MigrationsSource {
                path: folder("migrations", dir)?,
                layout: None,
                out_of_order: false,
                engines: Vec::new(),
            });
        }
        MigrationsDoc::Map(m) => m,
    };
    let mut engines = Vec::new();
    for (engine, doc) in [
        (Engine::Postgres, m.postgres),
        (Engine::MySql, m.mysql),
        (Engine::Sqlite, m.sqlite),
    ] {
        let key = format!("migrations.{engine}");
        let (dir, layout) = match doc {
            None => continue,
            Some(EngineFolderDoc::Path(dir)) => (dir, None),
            Some(EngineFolderDoc::Map { path, layout }) => (path, layout),
        };
        engines.push((engine, folder(&key, dir)?, layout_of(&format!("{key}.layout"), layout)?));
    }
    let dir = match (m.path, engines.is_empty()) {
        (Some(dir), true) => folder("migrations.path", dir)?,
        (None, false) => base.to_owned(),
        (Some(_), false) => {
            return Err(invalid(
                path,
                "migrations",
                "give either `path:` or a folder per engine (`postgres:`, `mysql:`, `sqlite:`), not both",
            ));
        }
        (None, true) => {
            return Err(invalid(
                path,
                "migrations",
                "name the folder with `path:`, or a folder per engine with `postgres:`, `mysql:`, `sqlite:`",
            ));
        }
    };
    Ok(MigrationsSource {
        path: dir,
        layout: layout_of("migrations.layout", m.layout)?,
        out_of_order: m.out_of_order,
        engines,
    })
}

/// Only the fleet file's `migrations:` entry, for commands that need the migrations before
/// (or without) the fleet: `None` when the file is missing, does not parse (loading the
/// fleet says why) or has no such entry; an error only for a `migrations:` entry that is
/// there and wrong.
pub fn migrations_entry(path: &Path) -> Result<Option<MigrationsSource>, FleetError> {
    #[derive(Deserialize)]
    struct Only {
        migrations: Option<serde_yaml::Value>,
    }
    let Ok(text) = fs::read_to_string(path) else {
        return Ok(None);
    };
    let Ok(Only {
        migrations: Some(value),
    }) = serde_yaml::from_str::<Only>(&text)
    else {
        return Ok(None);
    };
    migrations_value(path, &base_of(path), value).map(Some)
}

/// The `migrations:` entry from its YAML value, either form, or an error naming the key.
fn migrations_value(path: &Path, base: &Path, value: serde_yaml::Value) -> Result<MigrationsSource, FleetError> {
    let doc = serde_yaml::from_value::<MigrationsDoc>(value).map_err(|_| {
        invalid(
            path,
            "migrations",
            "write a folder (`migrations: db/migrations`), `{ path: db/migrations, layout: diesel, out_of_order: false }` \
             or a folder per engine (`{ postgres: db/pg, mysql: { path: db/mysql, layout: flyway } }`)",
        )
    })?;
    migrations_section(path, base, doc)
}

/// The folder relative paths in a fleet file are taken from: the file's own.
fn base_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DiscoverDoc {
    url: String,
    query: String,
    host: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RolloutDoc {
    /// `1,10%,100%` or a list of waves.
    waves: Option<OneOrMany>,
    bake: Option<String>,
    /// `Mon-Fri 02:00-05:00 Europe/Copenhagen`.
    window: Option<String>,
    check: Option<String>,
    max_failures: Option<Scalar>,
    max_skipped: Option<Scalar>,
    rollback: Option<String>,
    /// `--host-failures`: a whole number, 0 for never.
    host_failures: Option<Scalar>,
    #[serde(default)]
    check_migrations: bool,
    /// `warn`, `deny` or `off`: `up`'s lint before wave 1.
    lint: Option<String>,
}

/// `waves:` as one text (`1,10%,100%`) or a list of waves (sizes, selectors, `*`).
#[derive(Debug)]
enum OneOrMany {
    One(Scalar),
    Many(Vec<Scalar>),
}

impl<'de> Deserialize<'de> for OneOrMany {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = OneOrMany;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("waves, as text such as \"1,10%,100%\" or a list such as [\"canary=true\", 10%, \"region=eu\", \"*\"]")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<OneOrMany, A::Error> {
                let mut out = Vec::new();
                while let Some(item) = seq.next_element()? {
                    out.push(item);
                }
                Ok(OneOrMany::Many(out))
            }
            scalar_visits!(OneOrMany::One);
        }
        d.deserialize_any(V)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HostDoc {
    url: String,
    /// Checked against its range after parsing, so that any number gets the same message.
    max_connections: Option<Scalar>,
    #[serde(default)]
    init_sql: EngineStatements,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct DefaultsDoc {
    host: Option<String>,
    url: Option<String>,
    schema: Option<String>,
    database: Option<String>,
    #[serde(default)]
    labels: BTreeMap<String, Scalar>,
    #[serde(default)]
    init_sql: EngineStatements,
    /// For PostgreSQL schema-tenants: `"{schema}, public"`.
    search_path: Option<String>,
    create_database: Option<bool>,
    /// diesel, sqlx, golang-migrate, flyway or dbmate.
    history_compat: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TenantDoc {
    id: Scalar,
    host: Option<String>,
    url: Option<String>,
    schema: Option<String>,
    database: Option<String>,
    #[serde(default)]
    labels: BTreeMap<String, Scalar>,
    #[serde(default)]
    canary: bool,
    #[serde(default)]
    init_sql: Statements,
    search_path: Option<String>,
    create_database: Option<bool>,
    /// diesel, sqlx, golang-migrate, flyway or dbmate.
    history_compat: Option<String>,
}

/// A label value or id: YAML may write it as a string, a number or a boolean. Anything
/// else (a list, a map, null) is refused with "expected a string, number or boolean" and
/// the key path, where an untagged enum would only say it matched no variant.
#[derive(Debug)]
enum Scalar {
    Str(String),
    Int(i128),
    Bool(bool),
    Float(f64),
}

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Scalar;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string, number or boolean")
            }
            scalar_visits!(std::convert::identity);
        }
        d.deserialize_any(V)
    }
}

impl Scalar {
    fn text(&self) -> std::borrow::Cow<'_, str> {
        match self {
            Scalar::Str(s) => s.into(),
            Scalar::Int(i) => i.to_string().into(),
            Scalar::Bool(b) => b.to_string().into(),
            Scalar::Float(f) => f.to_string().into(),
        }
    }

    fn into_string(self) -> String {
        match self {
            Scalar::Str(s) => s,
            Scalar::Int(i) => i.to_string(),
            Scalar::Bool(b) => b.to_string(),
            Scalar::Float(f) => f.to_string(),
        }
    }
}

/// `init_sql:` as one statement or a list of them.
#[derive(Debug, Default)]
enum Statements {
    #[default]
    None,
    One(String),
    Many(Vec<String>),
}

impl<'de> Deserialize<'de> for Statements {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Statements;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a SQL statement or a list of them")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Statements, E> {
                Ok(Statements::One(v.to_owned()))
            }
            fn visit_unit<E: serde::de::Error>(self) -> Result<Statements, E> {
                Ok(Statements::None)
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Statements, A::Error> {
                let mut out = Vec::new();
                while let Some(item) = seq.next_element::<String>()? {
                    out.push(item);
                }
                Ok(Statements::Many(out))
            }
        }
        d.deserialize_any(V)
    }
}

impl Statements {
    fn into_vec(self) -> Vec<String> {
        match self {
            Statements::None => Vec::new(),
            Statements::One(s) => vec![s],
            Statements::Many(v) => v,
        }
    }
}

/// `init_sql:` of a host or of `defaults:`: statements for every engine (one or a list),
/// or a map of them by engine (`{ mysql: "SET ...", postgres: [...] }`). Keys are checked
/// after parsing, so that an unknown one is named with its key path.
#[derive(Debug)]
enum EngineStatements {
    All(Statements),
    ByEngine(BTreeMap<String, Statements>),
}

impl Default for EngineStatements {
    fn default() -> Self {
        EngineStatements::All(Statements::None)
    }
}

impl<'de> Deserialize<'de> for EngineStatements {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = EngineStatements;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a SQL statement, a list of them, or a map of them by engine (postgres, mysql, sqlite)")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<EngineStatements, E> {
                Ok(EngineStatements::All(Statements::One(v.to_owned())))
            }
            fn visit_unit<E: serde::de::Error>(self) -> Result<EngineStatements, E> {
                Ok(EngineStatements::All(Statements::None))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<EngineStatements, A::Error> {
                let mut out = Vec::new();
                while let Some(item) = seq.next_element::<String>()? {
                    out.push(item);
                }
                Ok(EngineStatements::All(Statements::Many(out)))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<EngineStatements, A::Error> {
                let mut out = BTreeMap::new();
                while let Some((engine, statements)) = map.next_entry::<String, Statements>()? {
                    out.insert(engine, statements);
                }
                Ok(EngineStatements::ByEngine(out))
            }
        }
        d.deserialize_any(V)
    }
}

/// Statements by engine: what a tenant of each engine runs.
type EngineInit = BTreeMap<Engine, Vec<String>>;

/// The engines an `init_sql:` map may name, by key.
const ENGINE_KEYS: [(&str, Engine); 3] = [
    ("postgres", Engine::Postgres),
    ("mysql", Engine::MySql),
    ("sqlite", Engine::Sqlite),
];

impl EngineStatements {
    /// The statements of each engine, `${VAR}`s expanded. `at` is the key path for
    /// messages (`defaults.init_sql`); an unknown engine key is an error naming it.
    fn by_engine(self, path: &Path, at: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<EngineInit, FleetError> {
        let expand =
            |at: &str, statements: Statements| expand_all(statements.into_vec(), env).map_err(|m| invalid(path, at, m));
        match self {
            EngineStatements::All(statements) => {
                let all = expand(at, statements)?;
                Ok(ENGINE_KEYS.iter().map(|(_, engine)| (*engine, all.clone())).collect())
            }
            EngineStatements::ByEngine(map) => {
                let mut out = EngineInit::new();
                for (key, statements) in map {
                    let at = format!("{at}.{key}");
                    let Some((_, engine)) = ENGINE_KEYS.iter().find(|(k, _)| *k == key) else {
                        return Err(invalid(
                            path,
                            at,
                            format!(
                                "`{}` is not an engine: the keys are postgres, mysql (for MySQL and MariaDB) and sqlite",
                                quoted(&key)
                            ),
                        ));
                    };
                    out.insert(*engine, expand(&at, statements)?);
                }
                Ok(out)
            }
        }
    }
}

/// A `search_path:` template refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SearchPathError {
    #[error(
        "`{}` must start with `{{schema}}`: the tenant's own schema comes first, where its tables \
         and fleetmig_history are made",
        quoted(.0)
    )]
    SchemaFirst(String),
    #[error("`{}` names `{{schema}}` twice", quoted(.0))]
    SchemaTwice(String),
    #[error("`{}`: {bad}", quoted(.template))]
    Entry { template: String, bad: BadIdent },
}

/// A `search_path:` template (`"{schema}, public"`): `{schema}` first, then schema names,
/// each letters, digits, `_` or `-`, optionally double-quoted. As in PostgreSQL, a name
/// without quotes is taken in lower case and a quoted one as written; the driver quotes
/// every one.
fn search_path(template: &str) -> Result<Vec<Ident>, SearchPathError> {
    let mut entries = template.split(',').map(str::trim);
    if entries.next() != Some("{schema}") {
        return Err(SearchPathError::SchemaFirst(template.to_owned()));
    }
    entries
        .map(|entry| {
            if entry == "{schema}" {
                return Err(SearchPathError::SchemaTwice(template.to_owned()));
            }
            let name = match entry.strip_prefix('"').and_then(|e| e.strip_suffix('"')) {
                Some(quoted) => quoted.to_owned(),
                None => entry.to_ascii_lowercase(),
            };
            Ident::new(&name).map_err(|bad| SearchPathError::Entry {
                template: template.to_owned(),
                bad,
            })
        })
        .collect()
}

/// Replaces `${VAR}` and `${VAR:-default}` with the variable's value; `$${` is a literal `${`.
pub fn expand_vars(text: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<String, VarError> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let tail = &rest[at..];
        if let Some(after) = tail.strip_prefix("$${") {
            out.push_str("${");
            rest = after;
        } else if let Some(after) = tail.strip_prefix("${") {
            let end = after
                .find('}')
                .ok_or_else(|| VarError::Unclosed { text: shown(text) })?;
            let (name, default) = match after[..end].split_once(":-") {
                Some((name, default)) => (name, Some(default)),
                None => (&after[..end], None),
            };
            if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                return Err(VarError::BadName { name: name.to_owned() });
            }
            match (lookup(name), default) {
                (Some(value), _) => out.push_str(&value),
                (None, Some(default)) => out.push_str(default),
                (None, None) => return Err(VarError::Unset { name: name.to_owned() }),
            }
            rest = &after[end + 1..];
        } else {
            out.push('$');
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// A `${VAR}` that cannot be filled in.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VarError {
    /// `text` is shown with its passwords hidden.
    #[error("`${{` without a closing `}}` in `{text}`")]
    Unclosed { text: String },
    #[error("`${{{name}}}` is not a variable name")]
    BadName { name: String },
    #[error("environment variable `{name}` is not set")]
    Unset { name: String },
}

/// Text for a message: a URL shows with its password hidden.
fn shown(text: &str) -> String {
    match Url::parse(text) {
        Ok(url) => redact(&url),
        Err(_) if text.contains('@') => "<a URL that does not parse>".to_owned(),
        Err(_) => scrub(text),
    }
}

/// Reads and checks the fleet file, expanding variables from the process environment.
/// Tenants of a `discover:` section are not looked up: see [`load_file`].
pub fn load(path: &Path) -> Result<Fleet, FleetError> {
    load_file(path).map(|file| file.fleet)
}

/// Parses fleet-file text; `path` is for messages and for resolving relative SQLite paths.
pub fn parse(path: &Path, text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Fleet, FleetError> {
    parse_file(path, text, env).map(|file| file.fleet)
}

/// A loaded fleet file that may find more tenants: its listed tenants, and what a
/// discovered tenant is built against (hosts and `defaults:`).
pub struct FleetFile {
    pub fleet: Fleet,
    pub(super) rules: Rules,
}

/// The largest fleet file read: `/dev/zero` or a runaway generator must not fill memory.
const MAX_FLEET_FILE: u64 = 64 << 20;

/// Reads and checks the fleet file, keeping what [`crate::load::discover::merge`] needs.
pub fn load_file(path: &Path) -> Result<FleetFile, FleetError> {
    let read = |source| FleetError::Read {
        path: path.to_owned(),
        source,
    };
    let mut bytes = Vec::new();
    io::Read::read_to_end(
        &mut io::Read::take(fs::File::open(path).map_err(read)?, MAX_FLEET_FILE + 1),
        &mut bytes,
    )
    .map_err(read)?;
    if bytes.len() as u64 > MAX_FLEET_FILE {
        return Err(FleetError::Syntax {
            path: path.to_owned(),
            message: format!(
                "is larger than {} MiB: a fleet file of 100,000 tenants takes a few; for more, use `discover:`",
                MAX_FLEET_FILE >> 20
            ),
        });
    }
    let text = String::from_utf8(bytes).map_err(|e| FleetError::Syntax {
        path: path.to_owned(),
        message: format!(
            "is not UTF-8 text: invalid byte at byte offset {}",
            e.utf8_error().valid_up_to()
        ),
    })?;
    parse_file(path, &text, &|name| std::env::var(name).ok())
}

/// One tenant as its source gives it, before `defaults:` apply: a `tenants:` entry (its
/// `${VAR}`s and `{id}` already filled in) or a `discover:` row (taken as it is).
#[derive(Default)]
pub(super) struct Entry {
    pub host: Option<String>,
    pub url: Option<String>,
    pub schema: Option<String>,
    pub database: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub canary: bool,
    pub init_sql: Vec<String>,
    /// The `search_path:` template, unchecked.
    pub search_path: Option<String>,
    pub create_database: Option<bool>,
    pub history_compat: Option<Tool>,
    /// True for a `discover:` row: its `url` may carry only the parameters its engine
    /// allows a registry ([`Engine::registry_params`]).
    pub registry: bool,
}

/// `defaults:` with its `${VAR}`s expanded; `{id}` is filled in per tenant. An unset
/// variable is an error only for a tenant that uses the value: the `Err` holds its message.
struct Defaults {
    host: Option<String>,
    url: Option<Result<String, VarError>>,
    schema: Option<Result<String, VarError>>,
    database: Option<Result<String, VarError>>,
    labels: BTreeMap<String, String>,
    init_sql: EngineInit,
    /// The `search_path:` template, checked: the schemas after the tenant's own.
    search_path: Vec<Ident>,
    create_database: Option<bool>,
    history_compat: Option<Tool>,
}

/// Each host's `init_sql`, by host name.
type HostInit = BTreeMap<String, Vec<String>>;

/// Where a tenant lives: the host it is on (if named), its engine and URL, and the host's
/// `init_sql`.
struct Place {
    host: Option<String>,
    engine: Engine,
    url: DbUrl,
    init_sql: Vec<String>,
}

/// What every tenant is built against, listed or discovered: one set of defaults and checks.
/// No `Debug`: it holds URLs with their passwords.
pub(super) struct Rules {
    path: PathBuf,
    /// The fleet file's folder, for relative SQLite paths.
    base: PathBuf,
    hosts: BTreeMap<String, Host>,
    /// Each host's `init_sql`, run before the defaults' and the tenant's.
    host_init: HostInit,
    defaults: Defaults,
}

impl Rules {
    pub fn invalid(&self, context: String, message: impl fmt::Display) -> FleetError {
        // The context may quote a registry row's value (an id column holding a URL).
        FleetError::Invalid {
            path: self.path.clone(),
            context: hide_passwords(&context),
            message: hide_passwords(&message.to_string()),
        }
    }

    /// A registry row's PostgreSQL or MySQL URL must name a server (host and port) that a
    /// host of the fleet file names: the client fills what a URL leaves out from this
    /// machine's environment (`PGPASSWORD`, `PGUSER`, `PGSSLKEY`), and a row must not be
    /// able to send those to a server of its choosing.
    fn listed_server(&self, engine: Engine, url: &DbUrl) -> Result<(), UrlError> {
        let default_port = match engine {
            Engine::Postgres => 5432,
            Engine::MySql => 3306,
            Engine::Sqlite => return Ok(()),
        };
        let server = |u: &Url| {
            (
                u.host_str().unwrap_or_default().to_ascii_lowercase(),
                u.port().unwrap_or(default_port),
            )
        };
        let wanted = server(url.url());
        if self
            .hosts
            .values()
            .any(|h| engine_of(&h.url) == engine && server(h.url.url()) == wanted)
        {
            return Ok(());
        }
        Err(UrlError::UnlistedServer {
            url: url.to_string(),
            host: wanted.0,
            port: wanted.1,
        })
    }

    /// Builds a tenant from its entry and the defaults, checking it. `context` names the
    /// entry in messages ("tenant `acme`", "discover row 3 (id `acme`)").
    pub fn tenant(&self, id: TenantId, entry: Entry, context: &str) -> Result<Tenant, FleetError> {
        let own_url = entry.url.is_some();
        let Place {
            host,
            engine,
            url,
            mut init_sql,
        } = self.place(&id, entry.url, entry.host, entry.registry, context)?;
        let (schema, database) = if entry.schema.is_some() || entry.database.is_some() {
            (entry.schema, entry.database)
        } else if own_url {
            (None, None)
        } else {
            let fill = |field: &str, value: &Option<Result<String, VarError>>| {
                value
                    .as_ref()
                    .map(|v| self.default_for(&id, context, field, v))
                    .transpose()
            };
            (
                fill("schema", &self.defaults.schema)?,
                fill("database", &self.defaults.database)?,
            )
        };
        let namespace = self.namespace(engine, schema, database, context)?;
        let search_path = self.search_path(engine, &namespace, entry.search_path, context)?;
        let mut labels = self.defaults.labels.clone();
        labels.extend(entry.labels);
        init_sql.extend(self.defaults.init_sql.get(&engine).into_iter().flatten().cloned());
        init_sql.extend(entry.init_sql);
        Ok(Tenant {
            id,
            labels,
            canary: entry.canary,
            engine,
            url,
            namespace,
            host,
            init_sql,
            search_path,
            create_database: entry
                .create_database
                .or(self.defaults.create_database)
                .unwrap_or(engine == Engine::MySql),
            history_compat: entry.history_compat.or(self.defaults.history_compat),
        })
    }

    /// The schemas a PostgreSQL schema-tenant searches after its own: from its own
    /// `search_path:` template, else the defaults'. A tenant that has no schema of its own
    /// takes none; naming one for it is an error.
    fn search_path(
        &self,
        engine: Engine,
        namespace: &Namespace,
        own: Option<String>,
        context: &str,
    ) -> Result<Vec<Ident>, FleetError> {
        let applies = engine == Engine::Postgres && namespace.schema.is_some();
        match own {
            Some(_) if !applies => Err(self.invalid(
                format!("{context} search_path"),
                "is for a PostgreSQL tenant with a `schema`: the tenant's schema comes first in it",
            )),
            Some(template) => search_path(&template).map_err(|m| self.invalid(format!("{context} search_path"), m)),
            None if applies => Ok(self.defaults.search_path.clone()),
            None => Ok(Vec::new()),
        }
    }

    /// A `defaults:` template for tenant `id`, `{id}` filled in; its unset variable is an
    /// error of this tenant's `field`.
    fn default_for(
        &self,
        id: &TenantId,
        context: &str,
        field: &str,
        value: &Result<String, VarError>,
    ) -> Result<String, FleetError> {
        match value {
            Ok(text) => Ok(text.replace("{id}", id.as_str())),
            Err(m) => Err(self.invalid(format!("{context} {field}"), m)),
        }
    }

    /// Where the tenant lives, from its own `url` or `host`, else the defaults': its host
    /// (if named), engine, URL and the host's `init_sql`. A registry row's own URL is held
    /// to what a registry may give.
    fn place(
        &self,
        id: &TenantId,
        url: Option<String>,
        host: Option<String>,
        registry: bool,
        context: &str,
    ) -> Result<Place, FleetError> {
        let url = match (url, host) {
            (Some(_), Some(_)) => return Err(self.invalid(context.into(), "give either `url` or `host`, not both")),
            (Some(url), None) => url,
            (None, Some(host)) => return self.on_host(host, context),
            (None, None) => match (&self.defaults.url, &self.defaults.host) {
                (Some(url), _) => self.default_for(id, context, "url", url)?,
                (None, Some(host)) => return self.on_host(host.clone(), context),
                (None, None) => {
                    return Err(self.invalid(context.into(), "no `url` or `host` here nor in `defaults`"));
                }
            },
        };
        let (engine, url) = parse_url_unchecked(&url, &self.base)
            .and_then(|(engine, url)| {
                if registry {
                    registry_params(engine, &url)?;
                    self.listed_server(engine, &url)?;
                }
                client_takes(engine, url)
            })
            .map_err(|m| self.invalid(format!("{context} url"), m))?;
        Ok(Place {
            host: None,
            engine,
            url,
            init_sql: Vec::new(),
        })
    }

    /// A tenant on host `name` of `hosts:`: its engine, URL and `init_sql`.
    fn on_host(&self, name: String, context: &str) -> Result<Place, FleetError> {
        let host = self
            .hosts
            .get(&name)
            .ok_or_else(|| self.invalid(context.into(), format!("host `{name}` is not in `hosts`")))?;
        let init = self.host_init[&name].clone();
        Ok(Place {
            engine: engine_of(&host.url),
            url: host.url.clone(),
            host: Some(name),
            init_sql: init,
        })
    }

    /// The tenant's schema and database, checked as identifiers and against its engine:
    /// SQLite takes neither, and in MySQL a schema is a database.
    fn namespace(
        &self,
        engine: Engine,
        schema: Option<String>,
        database: Option<String>,
        context: &str,
    ) -> Result<Namespace, FleetError> {
        let ident = |field: &str, value: Option<String>| -> Result<Option<Ident>, FleetError> {
            value
                .map(|v| Ident::new(&v).map_err(|m| self.invalid(format!("{context} {field}"), m)))
                .transpose()
        };
        let mut namespace = Namespace {
            schema: ident("schema", schema)?,
            database: ident("database", database)?,
        };
        match engine {
            Engine::Sqlite if namespace.schema.is_some() || namespace.database.is_some() => {
                return Err(self.invalid(
                    context.into(),
                    "a SQLite tenant takes no `schema` or `database`: its URL names its file",
                ));
            }
            Engine::MySql => {
                if namespace.schema.is_some() && namespace.database.is_some() {
                    return Err(self.invalid(
                        context.into(),
                        "in MySQL a schema is a database: give one of `schema` and `database`",
                    ));
                }
                if let Some(schema) = namespace.schema.take() {
                    namespace.database = Some(schema);
                }
            }
            _ => {}
        }
        Ok(namespace)
    }
}

/// The deepest `[`/`{` nesting a fleet file may have: the YAML reader refuses deeper
/// documents anyway, but only after a time that grows with the square of the depth
/// (100,000 levels took 17 s).
const MAX_NESTING: usize = 128;

/// Where `text` first nests `[` and `{` deeper than `limit` (line and column from 1),
/// outside quotes and comments; approximate in the safe direction: a quote it misreads
/// only hides brackets from the count.
fn nested_deeper_than(text: &str, limit: usize) -> Option<(usize, usize)> {
    let (mut depth, mut line, mut column) = (0usize, 1, 0);
    let mut quote = None;
    let mut comment = false;
    let mut after_space = true;
    for c in text.chars() {
        column += 1;
        if c == '\n' {
            (line, column, comment, after_space) = (line + 1, 0, false, true);
            continue;
        }
        match quote {
            _ if comment => {}
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None => match c {
                '"' | '\'' => quote = Some(c),
                '#' if after_space => comment = true,
                '[' | '{' => {
                    depth += 1;
                    if depth > limit {
                        return Some((line, column));
                    }
                }
                ']' | '}' => depth = depth.saturating_sub(1),
                _ => {}
            },
        }
        after_space = c.is_whitespace();
    }
    None
}

/// Parses fleet-file text, keeping what discovered tenants are built against.
pub fn parse_file(path: &Path, text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<FleetFile, FleetError> {
    let doc = read_doc(path, text)?;
    let base = path.parent().unwrap_or(Path::new("."));
    let base = if base.as_os_str().is_empty() {
        Path::new(".")
    } else {
        base
    };
    let (hosts, host_init) = hosts_section(path, base, doc.hosts, env)?;
    let rules = Rules {
        path: path.to_owned(),
        base: base.to_owned(),
        hosts,
        host_init,
        defaults: defaults_section(path, doc.defaults, env)?,
    };
    let discover = doc.discover.map(|d| discover_section(d, &rules, env)).transpose()?;
    let listed = match (doc.tenants, &discover) {
        (Some(listed), _) => listed,
        (None, Some(_)) => Vec::new(),
        (None, None) => {
            return Err(invalid(
                path,
                "tenants",
                "no `tenants:` list and no `discover:` section: the fleet has no tenants",
            ));
        }
    };
    let tenants = listed_tenants(listed, &rules, env)?;
    let rollout = rollout_defaults(path, doc.rollout)?;
    let ledger = doc
        .ledger
        .map(|text| ledger_section(path, &text, base, env))
        .transpose()?;
    let migrations = doc.migrations.map(|m| migrations_value(path, base, m)).transpose()?;
    let scratch = match doc.scratch {
        None => Vec::new(),
        Some(ScratchDoc::One(one)) => scratch_section(path, vec![one], &rules, env)?,
        Some(ScratchDoc::Many(many)) => scratch_section(path, many, &rules, env)?,
    };
    let notify = notify_section(path, doc.notify.unwrap_or_default(), env)?;
    Ok(FleetFile {
        fleet: Fleet {
            path: path.to_owned(),
            rollout,
            ledger,
            hosts: rules.hosts.clone(),
            tenants,
            discover,
            migrations,
            scratch,
            notify,
        },
        rules,
    })
}

/// `notify:`'s webhooks, their `${VAR}`s expanded (a token belongs in the environment).
fn notify_section(
    path: &Path,
    entries: Vec<NotifyDoc>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<Webhook>, FleetError> {
    entries
        .into_iter()
        .enumerate()
        .map(|(i, entry)| {
            let invalid = |m: &dyn fmt::Display| invalid(path, format!("notify[{i}]"), m);
            let (text, format) = match entry {
                NotifyDoc::Url(url) => (url, NotifyFormat::Json),
                NotifyDoc::Map(NotifyMap { url, format }) => {
                    let format = format
                        .as_deref()
                        .unwrap_or("json")
                        .parse()
                        .map_err(|e: String| invalid(&e))?;
                    (url, format)
                }
            };
            let text = expand_vars(&text, env).map_err(|e| invalid(&e))?;
            Webhook::parse(&text, format).map_err(|e| invalid(&e))
        })
        .collect()
}

/// The `scratch:` servers, each a URL (`${VAR}`s expanded) or the name of a host in
/// `hosts:`; at most one per engine, SQLite none (it checks in a temporary file).
fn scratch_section(
    path: &Path,
    entries: Vec<String>,
    rules: &Rules,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<(Engine, DbUrl)>, FleetError> {
    let mut out: Vec<(Engine, DbUrl)> = Vec::new();
    for entry in entries {
        let invalid = |m: &dyn fmt::Display| invalid(path, "scratch", m);
        let (engine, url) = match rules.hosts.get(&entry) {
            Some(host) if engine_of(&host.url) == Engine::Sqlite => return Err(invalid(&UrlError::ScratchEngine)),
            Some(host) => (engine_of(&host.url), host.url.clone()),
            None => {
                let text = expand_vars(&entry, env).map_err(|e| invalid(&e))?;
                scratch_url(&text, &rules.base).map_err(|e| invalid(&e))?
            }
        };
        if out.iter().any(|(e, _)| *e == engine) {
            return Err(invalid(&format!("names two {engine} servers: give one per engine")));
        }
        out.push((engine, url));
    }
    Ok(out)
}

/// A scratch server's URL for `check`: PostgreSQL or MySQL (SQLite checks in a temporary
/// file).
pub fn scratch_url(text: &str, base: &Path) -> Result<(Engine, DbUrl), UrlError> {
    match parse_url(text, base)? {
        (Engine::Sqlite, _) => Err(UrlError::ScratchEngine),
        found => Ok(found),
    }
}

/// A fleet file's problem with a value, at `context` ("host `main` url"), passwords hidden.
fn invalid(path: &Path, context: impl Into<String>, message: impl fmt::Display) -> FleetError {
    FleetError::Invalid {
        path: path.to_owned(),
        context: context.into(),
        message: hide_passwords(&message.to_string()),
    }
}

/// The YAML document, refused before parsing when it nests too deep and after when any of
/// its SQL texts holds a NUL byte.
fn read_doc(path: &Path, text: &str) -> Result<FileDoc, FleetError> {
    // A byte-order mark is no content: editors on Windows write one.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    if let Some((line, column)) = nested_deeper_than(text, MAX_NESTING) {
        return Err(FleetError::Syntax {
            path: path.to_owned(),
            message: format!(
                "nests `[` and `{{` more than {MAX_NESTING} levels deep at line {line} column {column}: \
                 a fleet file needs a few"
            ),
        });
    }
    let doc: FileDoc = serde_yaml::from_str(text).map_err(|e| FleetError::Syntax {
        path: path.to_owned(),
        message: hide_passwords(&yaml_message(&e)),
    })?;
    for (context, text) in doc_texts(&doc) {
        if let Some(offset) = text.find('\0') {
            return Err(FleetError::Invalid {
                path: path.to_owned(),
                context,
                message: format!("holds a NUL byte at offset {offset}: SQL text cannot hold one"),
            });
        }
    }
    Ok(doc)
}

/// The `hosts:` section: each host by name, and each host's `init_sql` (`${VAR}`s expanded).
fn hosts_section(
    path: &Path,
    base: &Path,
    docs: BTreeMap<String, HostDoc>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(BTreeMap<String, Host>, HostInit), FleetError> {
    let mut hosts = BTreeMap::new();
    let mut host_init = BTreeMap::new();
    for (name, host) in docs {
        let context = format!("host `{name}`");
        let url_text = expand_vars(&host.url, env).map_err(|m| invalid(path, format!("{context} url"), m))?;
        let (engine, url) = parse_url(&url_text, base).map_err(|m| invalid(path, format!("{context} url"), m))?;
        let mut init = host.init_sql.by_engine(path, &format!("hosts.{name}.init_sql"), env)?;
        let init = init.remove(&engine).unwrap_or_default();
        let max_connections = match host.max_connections {
            None => DEFAULT_MAX_CONNECTIONS,
            Some(n) => bounds::number(&n.into_string(), 1, bounds::MAX_CONNECTIONS)
                .map_err(|m| invalid(path, format!("{context} max_connections"), m))?,
        };
        host_init.insert(name.clone(), init);
        hosts.insert(
            name.clone(),
            Host {
                name,
                url,
                max_connections,
            },
        );
    }
    Ok((hosts, host_init))
}

/// The `defaults:` section, its `${VAR}`s expanded: an unset variable in a template is an
/// error only for a tenant that uses it, one in `init_sql` is an error now.
fn defaults_section(
    path: &Path,
    doc: DefaultsDoc,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Defaults, FleetError> {
    let expand = |template: Option<String>| template.map(|t| expand_vars(&t, env));
    Ok(Defaults {
        host: doc.host,
        url: expand(doc.url),
        schema: expand(doc.schema),
        database: expand(doc.database),
        labels: doc.labels.into_iter().map(|(k, v)| (k, v.into_string())).collect(),
        init_sql: doc.init_sql.by_engine(path, "defaults.init_sql", env)?,
        search_path: doc
            .search_path
            .map(|t| search_path(&t).map_err(|m| invalid(path, "defaults search_path", m)))
            .transpose()?
            .unwrap_or_default(),
        create_database: doc.create_database,
        history_compat: history_compat(path, "defaults history_compat", doc.history_compat)?,
    })
}

/// The `tenants:` list, each built against the rules; an id listed twice is refused.
fn listed_tenants(
    listed: Vec<TenantDoc>,
    rules: &Rules,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<Tenant>, FleetError> {
    let mut seen = HashSet::new();
    let mut tenants = Vec::with_capacity(listed.len());
    for (index, entry) in listed.into_iter().enumerate() {
        let id = TenantId::new(&entry.id.text()).map_err(|m| invalid(&rules.path, format!("tenants[{index}]"), m))?;
        if !seen.insert(id.clone()) {
            return Err(invalid(
                &rules.path,
                format!("tenants[{index}]"),
                format!("tenant id `{id}` is listed twice"),
            ));
        }
        let context = format!("tenant `{id}`");
        let own = listed_entry(entry, &id, &context, &rules.path, env)?;
        tenants.push(rules.tenant(id, own, &context)?);
    }
    Ok(tenants)
}

/// A `tenants:` entry as an [`Entry`]: its `${VAR}`s expanded and `{id}` filled in.
fn listed_entry(
    entry: TenantDoc,
    id: &TenantId,
    context: &str,
    path: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Entry, FleetError> {
    let fill = |field: &str, value: Option<String>| -> Result<Option<String>, FleetError> {
        value
            .map(|v| {
                expand_vars(&v, env)
                    .map(|v| v.replace("{id}", id.as_str()))
                    .map_err(|m| invalid(path, format!("{context} {field}"), m))
            })
            .transpose()
    };
    Ok(Entry {
        url: fill("url", entry.url)?,
        schema: fill("schema", entry.schema)?,
        database: fill("database", entry.database)?,
        host: entry.host,
        labels: entry.labels.into_iter().map(|(k, v)| (k, v.into_string())).collect(),
        canary: entry.canary,
        init_sql: expand_all(entry.init_sql.into_vec(), env)
            .map_err(|m| invalid(path, format!("{context} init_sql"), m))?,
        search_path: entry.search_path,
        create_database: entry.create_database,
        history_compat: history_compat(path, &format!("{context} history_compat"), entry.history_compat)?,
        registry: false,
    })
}

/// A `history_compat:` value: the tool whose history table fleetmig keeps in step.
fn history_compat(path: &Path, context: &str, value: Option<String>) -> Result<Option<Tool>, FleetError> {
    value
        .map(|name| {
            match name.parse::<Tool>() {
                Ok(Tool::Alembic) => Err(invalid(
                    path,
                    context,
                    "alembic keeps only its head revision id, which fleetmig cannot name from a migration: \
                     run `alembic stamp` after a rollout instead (known: diesel, sqlx, golang-migrate, flyway, dbmate)",
                )),
                Ok(tool) => Ok(tool),
                Err(_) => Err(invalid(
                    path,
                    context,
                    format!(
                        "`{}` is not a tool whose history fleetmig keeps (known: diesel, sqlx, golang-migrate, flyway, dbmate)",
                        name.escape_debug()
                    ),
                )),
            }
        })
        .transpose()
}

/// The `ledger:` URL, its `${VAR}`s expanded.
fn ledger_section(
    path: &Path,
    text: &str,
    base: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<DbUrl, FleetError> {
    let invalid = |m: &dyn fmt::Display| invalid(path, "ledger", m);
    let text = expand_vars(text, env).map_err(|e| invalid(&e))?;
    ledger_url(&text, base).map_err(|e| invalid(&e))
}

/// The parser's message in an operator's words: what was expected, with the line and column
/// always (serde_yaml leaves them out of some messages) and no Rust type names.
fn yaml_message(e: &serde_yaml::Error) -> String {
    let mut message = e.to_string();
    if message.contains("control characters are not allowed") {
        message.push_str(
            " (a fleet file is text: remove the control character, or write it as an escape in a double-quoted string)",
        );
    }
    if message.contains("more than one document") {
        message = "holds more than one YAML document (a second `---` line): a fleet file is one document".into();
    }
    for (name, shown) in [
        (
            "struct FileDoc",
            "a map of sections (hosts, defaults, rollout, ledger, tenants, discover, migrations, scratch, notify)",
        ),
        (
            "struct HostDoc",
            "a host: a map with `url` and optionally `max_connections`, `init_sql`",
        ),
        (
            "struct DefaultsDoc",
            "a map of defaults (host, url, schema, database, labels, init_sql, search_path, create_database, history_compat)",
        ),
        (
            "struct RolloutDoc",
            "a map of rollout settings (waves, bake, window, check, max_failures, max_skipped, rollback, host_failures, check_migrations, lint)",
        ),
        (
            "struct TenantDoc",
            "a tenant: a map with `id` and `url` or `host` (and schema, database, labels, canary, init_sql, search_path, create_database, history_compat)",
        ),
        ("struct DiscoverDoc", "a map with `url`, `query` and optionally `host`"),
        ("field identifier", "a key name"),
        (
            "invalid type: enum",
            "invalid type: a tagged value (`!name`; a fleet file takes no YAML tags)",
        ),
        ("unit value", "nothing (null)"),
    ] {
        message = message.replace(name, shown);
    }
    if !message.contains(" line ") {
        if let Some(at) = e.location() {
            message.push_str(&format!(" at line {} column {}", at.line(), at.column()));
        }
    }
    if message.contains("found character that cannot start any token") {
        message.push_str(" (YAML indents with spaces, never tabs; quote a value that begins with `@`, `` ` `` or `%`)");
    }
    message
}

/// Every text of the file that reaches a database as SQL, with its key path.
fn doc_texts(doc: &FileDoc) -> Vec<(String, &str)> {
    fn statements<'a>(out: &mut Vec<(String, &'a str)>, at: String, s: &'a Statements) {
        match s {
            Statements::None => {}
            Statements::One(one) => out.push((at, one)),
            Statements::Many(many) => out.extend(many.iter().map(|m| (at.clone(), m.as_str()))),
        }
    }
    fn by_engine<'a>(out: &mut Vec<(String, &'a str)>, at: String, s: &'a EngineStatements) {
        match s {
            EngineStatements::All(all) => statements(out, at, all),
            EngineStatements::ByEngine(map) => {
                for (key, one) in map {
                    statements(out, format!("{at}.{key}"), one);
                }
            }
        }
    }
    let mut out = Vec::new();
    for (name, host) in &doc.hosts {
        by_engine(&mut out, format!("hosts.{name}.init_sql"), &host.init_sql);
    }
    by_engine(&mut out, "defaults.init_sql".into(), &doc.defaults.init_sql);
    for (i, t) in doc.tenants.iter().flatten().enumerate() {
        statements(&mut out, format!("tenants[{i}].init_sql"), &t.init_sql);
    }
    if let Some(check) = &doc.rollout.check {
        out.push(("rollout.check".into(), check));
    }
    if let Some(discover) = &doc.discover {
        out.push(("discover.query".into(), &discover.query));
    }
    out
}

/// The `discover:` section: its registry URL (`${VAR}`s expanded) and its default host.
fn discover_section(
    doc: DiscoverDoc,
    rules: &Rules,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Discover, FleetError> {
    let url_text = expand_vars(&doc.url, env).map_err(|m| rules.invalid("discover url".into(), m))?;
    let (_, url) = parse_url(&url_text, &rules.base).map_err(|m| rules.invalid("discover url".into(), m))?;
    if doc.query.trim().is_empty() {
        return Err(rules.invalid("discover query".into(), "the query is empty"));
    }
    if let Some(host) = &doc.host {
        if !rules.hosts.contains_key(host) {
            return Err(rules.invalid("discover host".into(), format!("host `{host}` is not in `hosts`")));
        }
    }
    Ok(Discover {
        url,
        query: doc.query,
        host: doc.host,
    })
}

/// `text` with every credential of a URL in it hidden: see [`scrub`].
fn hide_passwords(text: &str) -> String {
    scrub(text)
}

/// The `rollout:` section, each value parsed as its flag would be.
fn rollout_defaults(path: &Path, doc: RolloutDoc) -> Result<RolloutDefaults, FleetError> {
    let invalid = |field: &str, m: &dyn fmt::Display| invalid(path, format!("rollout {field}"), m);
    let waves = match doc.waves {
        None => None,
        Some(OneOrMany::One(s)) => Some(vec![s.into_string()]),
        Some(OneOrMany::Many(v)) => Some(v.into_iter().map(Scalar::into_string).collect::<Vec<_>>()),
    };
    Ok(RolloutDefaults {
        waves: waves
            .map(|parts| WaveSpec::from_parts(&parts))
            .transpose()
            .map_err(|m| invalid("waves", &m))?,
        bake: doc
            .bake
            .map(|b| bounds::duration(&b, std::time::Duration::ZERO, bounds::BAKE_MAX))
            .transpose()
            .map_err(|m| invalid("bake", &m))?,
        window: doc
            .window
            .map(|w| w.parse::<crate::model::window::Window>())
            .transpose()
            .map_err(|m| invalid("window", &m))?,
        check: doc.check,
        max_failures: doc
            .max_failures
            .map(|m| m.into_string().parse())
            .transpose()
            .map_err(|m| invalid("max_failures", &m))?,
        max_skipped: doc
            .max_skipped
            .map(|m| m.into_string().parse())
            .transpose()
            .map_err(|m| invalid("max_skipped", &m))?,
        rollback: doc
            .rollback
            .map(|r| r.parse::<RollbackPolicy>())
            .transpose()
            .map_err(|m| invalid("rollback", &m))?,
        host_failures: doc
            .host_failures
            .map(|k| bounds::number(&k.into_string(), 0u32, 100_000))
            .transpose()
            .map_err(|m| invalid("host_failures", &m))?,
        check_migrations: doc.check_migrations,
        lint: doc
            .lint
            .map(|l| l.parse::<crate::model::lint::LintMode>())
            .transpose()
            .map_err(|m| invalid("lint", &m))?,
    })
}

fn expand_all(statements: Vec<String>, env: &dyn Fn(&str) -> Option<String>) -> Result<Vec<String>, VarError> {
    statements.iter().map(|s| expand_vars(s, env)).collect()
}

fn engine_of(url: &DbUrl) -> Engine {
    Engine::from_scheme(url.scheme()).expect("host URLs are checked when loaded")
}

/// Checks a registry row's URL parameters against what its engine allows a registry.
fn registry_params(engine: Engine, url: &DbUrl) -> Result<(), UrlError> {
    let allowed = engine.registry_params();
    let names = || {
        allowed
            .iter()
            .map(|(k, _)| format!("`{k}`"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    for (key, value) in url.url().query_pairs() {
        let Some((_, values)) = allowed.iter().find(|(k, _)| *k == key) else {
            return Err(UrlError::RegistryParam {
                key: scrub(&key).escape_debug().to_string(),
                engine,
                allowed: names(),
            });
        };
        let ok = match values {
            Some(values) => values.iter().any(|v| v.eq_ignore_ascii_case(&value)),
            None => crate::model::fleet::is_plain_word(&value),
        };
        if !ok {
            let expected = match values {
                Some(values) => format!("one of {}", values.join(", ")),
                None => "1 to 63 letters, digits, `_`, `.`, `+` or `-`".into(),
            };
            return Err(UrlError::RegistryValue {
                key: key.into_owned(),
                value: value.escape_debug().to_string(),
                expected,
            });
        }
    }
    Ok(())
}

/// A database URL refused. Every URL and value it holds is shown with its password hidden.
#[derive(Debug, thiserror::Error)]
pub enum UrlError {
    #[error("`{url}` has an unknown scheme `{scheme}`: use postgres://, mysql:// or sqlite://")]
    UnknownScheme { url: String, scheme: String },
    #[error("`{url}` names no file")]
    NoFile { url: String },
    #[error("resolving `{path}`: {cause}")]
    Resolving { path: String, cause: io::Error },
    #[error(
        "`{url}`: SQLite URL parameters are PRAGMAs, and `{key}={value}` is not a name (letters \
         and `_`) with a plain value (letters, digits, `_`, `.`, `+`, `-`)"
    )]
    NotPragma { url: String, key: String, value: String },
    #[error(
        "`{url}`: `{key}` is not a SQLite PRAGMA a URL may set{hint}; SQLite would silently ignore it. \
         Known: {}",
        crate::model::fleet::SQLITE_PRAGMAS.join(", ")
    )]
    UnknownPragma {
        url: String,
        key: String,
        hint: &'static str,
    },
    #[error("`{url}`: `{setting}` is not taken: {why}")]
    PragmaConflict {
        url: String,
        setting: String,
        why: &'static str,
    },
    /// Building an empty SQLite URL failed: never expected.
    #[error("{0}")]
    Base(url::ParseError),
    #[error("`{url}` is not a URL: {cause}")]
    NotAUrl { url: String, cause: url::ParseError },
    #[error("`{url}` names no host")]
    NoHost { url: String },
    #[error("`{url}`: URL parameter `{key}` is `{value}`: expected a time zone such as UTC, +00:00 or Europe/Paris")]
    TimeZone { url: String, key: String, value: String },
    /// The engine's client would refuse the URL (`driver::connect::url_problem`).
    #[error("`{url}`: {why}")]
    ClientRefuses { url: String, why: String },
    #[error("the ledger lives in PostgreSQL or SQLite")]
    LedgerEngine,
    #[error("a scratch server is PostgreSQL or MySQL; SQLite is checked in a temporary file")]
    ScratchEngine,
    #[error(
        "`{url}` names server {host}:{port}, which no host in `hosts:` names: a registry row may \
         only place a tenant on a server the fleet file lists (its session would get this \
         machine's PGPASSWORD, PGUSER and client certificate); list the server under \
         `hosts:` or give the row a `host` column instead"
    )]
    UnlistedServer { url: String, host: String, port: u16 },
    #[error("URL parameter `{key}` is not one a registry row may give; for {engine} only {allowed}")]
    RegistryParam {
        key: String,
        engine: Engine,
        allowed: String,
    },
    #[error("URL parameter `{key}` is `{value}`: expected {expected}")]
    RegistryValue {
        key: String,
        value: String,
        expected: String,
    },
}

/// A ledger's URL: PostgreSQL, or SQLite with a relative path taken from `base`.
pub fn ledger_url(text: &str, base: &Path) -> Result<DbUrl, UrlError> {
    match parse_url(text, base)? {
        (Engine::Postgres | Engine::Sqlite, url) => Ok(url),
        (Engine::MySql, _) => Err(UrlError::LedgerEngine),
    }
}

/// Parses a database URL, naming its engine. A relative SQLite path is taken from `base`.
/// A SQLite URL's parameters are PRAGMAs: each must be a name and a plain value. A
/// PostgreSQL or MySQL URL must be one its client takes (`sslmode=bogus` is refused here).
fn parse_url(text: &str, base: &Path) -> Result<(Engine, DbUrl), UrlError> {
    parse_url_unchecked(text, base).and_then(|(engine, url)| client_takes(engine, url))
}

/// [`parse_url`] but for the client's own checks.
fn parse_url_unchecked(text: &str, base: &Path) -> Result<(Engine, DbUrl), UrlError> {
    let scheme = text.split_once(':').map(|(s, _)| s).unwrap_or("");
    let engine = Engine::from_scheme(scheme).ok_or_else(|| UrlError::UnknownScheme {
        url: shown(text),
        scheme: scheme.to_owned(),
    })?;
    let url = match engine {
        Engine::Sqlite => sqlite_file_url(text, base)?,
        Engine::Postgres | Engine::MySql => server_url(engine, text)?,
    };
    Ok((engine, url))
}

/// A SQLite URL: its file made absolute (from `base` when relative), its parameters
/// PRAGMAs fleetmig knows and takes.
fn sqlite_file_url(text: &str, base: &Path) -> Result<DbUrl, UrlError> {
    let rest = text
        .strip_prefix("sqlite://")
        .or_else(|| text.strip_prefix("sqlite:"))
        .unwrap_or_default();
    let (file, query) = match rest.split_once('?') {
        Some((file, query)) => (file, Some(query)),
        None => (rest, None),
    };
    if file.is_empty() {
        return Err(UrlError::NoFile { url: scrub(text) });
    }
    let path = if Path::new(file).is_absolute() {
        PathBuf::from(file)
    } else {
        base.join(file)
    };
    let path = std::path::absolute(&path).map_err(|cause| UrlError::Resolving {
        path: path.display().to_string(),
        cause,
    })?;
    sqlite_pragmas(text, query.unwrap_or_default())?;
    let mut url = Url::parse("sqlite://").map_err(UrlError::Base)?;
    url.set_path(&path.to_string_lossy());
    url.set_query(query);
    Ok(DbUrl::new(url))
}

/// Each parameter of a SQLite URL (`text`, for messages) must be a PRAGMA fleetmig knows,
/// with a plain value, and none may undo what fleetmig needs of the file.
fn sqlite_pragmas(text: &str, query: &str) -> Result<(), UrlError> {
    for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
        if !crate::model::fleet::is_sqlite_pragma(&key, &value) {
            return Err(UrlError::NotPragma {
                url: scrub(text),
                key: key.escape_debug().to_string(),
                value: scrub(&value).escape_debug().to_string(),
            });
        }
        let pragma = key.to_ascii_lowercase();
        if !crate::model::fleet::SQLITE_PRAGMAS.contains(&pragma.as_str()) {
            let hint = match pragma.as_str() {
                "mode" | "immutable" | "vfs" | "cache" => {
                    " (a sqlx URL option, which fleetmig does not take: it opens every tenant file to write)"
                }
                _ => "",
            };
            return Err(UrlError::UnknownPragma {
                url: scrub(text),
                key: key.escape_debug().to_string(),
                hint,
            });
        }
    }
    for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
        if let Some(why) = crate::model::fleet::sqlite_pragma_conflict(&key, &value) {
            return Err(UrlError::PragmaConflict {
                url: scrub(text),
                setting: format!("{key}={value}"),
                why,
            });
        }
    }
    Ok(())
}

/// A PostgreSQL or MySQL URL: it names a host, and a MySQL `timezone` is a zone's name or
/// offset.
fn server_url(engine: Engine, text: &str) -> Result<DbUrl, UrlError> {
    let url = Url::parse(text).map_err(|cause| UrlError::NotAUrl {
        url: shown(text),
        cause,
    })?;
    if url.host_str().is_none_or(str::is_empty) {
        return Err(UrlError::NoHost { url: redact(&url) });
    }
    // sqlx pastes a MySQL `timezone` into `SET time_zone = '...'`: a time zone name or
    // offset only (`UTC`, `+00:00`, `Europe/Paris`).
    for (key, value) in url.query_pairs() {
        let zone = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'+' | b'-' | b':' | b'/' | b'.');
        if engine == Engine::MySql
            && matches!(&*key, "timezone" | "time-zone")
            && !(value.len() <= 64 && !value.is_empty() && value.bytes().all(zone))
        {
            return Err(UrlError::TimeZone {
                url: redact(&url),
                key: key.into_owned(),
                value: value.escape_debug().to_string(),
            });
        }
    }
    Ok(DbUrl::new(url))
}

/// `url` if its client would take it: see [`crate::driver::connect::url_problem`].
fn client_takes(engine: Engine, url: DbUrl) -> Result<(Engine, DbUrl), UrlError> {
    match crate::driver::connect::url_problem(engine, &url) {
        Some(why) => Err(UrlError::ClientRefuses {
            url: url.to_string(),
            why,
        }),
        None => Ok((engine, url)),
    }
}

/// What can be wrong with `adopt --map`'s revision map file.
#[derive(Debug, thiserror::Error)]
pub enum MapError {
    #[error("reading revision map `{}`", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("revision map `{}`: {message}", path.display())]
    Invalid { path: PathBuf, message: String },
}

/// `adopt --from alembic --map FILE`: a YAML mapping of Alembic revision ids to versions of
/// the set, each read in its `style` (`ae1027a6acf: 3`, `"1.10"` for a dotted one). Keys
/// and values are taken as written, so `1.10` stays `1.10`; a revision twice, an empty
/// map or a version the set's style cannot read is refused, naming the file.
pub fn revision_map(path: &Path, style: VersionStyle) -> Result<RevisionMap, MapError> {
    let text = fs::read_to_string(path).map_err(|source| MapError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse_revision_map(path, &text, style)
}

/// [`revision_map`] of the file `path`'s `text`.
fn parse_revision_map(path: &Path, text: &str, style: VersionStyle) -> Result<RevisionMap, MapError> {
    let invalid = |message: String| MapError::Invalid {
        path: path.to_owned(),
        message,
    };
    if text.trim().is_empty() {
        return Err(invalid(
            "is empty: it maps each Alembic revision id to a version, `ae1027a6acf: 3`".into(),
        ));
    }
    let pairs = serde_yaml::from_str::<Pairs>(text).map_err(|e| invalid(map_yaml_message(&e)))?;
    let mut versions = BTreeMap::new();
    for (revision, version) in pairs.0 {
        let version = Version::parse(&version, style).map_err(|e| invalid(format!("revision `{revision}`: {e}")))?;
        if versions.insert(revision.clone(), version).is_some() {
            let lines = key_lines(text, &revision);
            return Err(invalid(format!("revision `{revision}` is mapped twice{lines}")));
        }
    }
    Ok(RevisionMap {
        file: path.to_owned(),
        versions,
    })
}

/// ` (lines 2 and 5)`: where the plain mapping `text` has `key` as a key, when that is
/// more than once; empty when it cannot tell (a key written another way).
fn key_lines(text: &str, key: &str) -> String {
    let quotes: &[char] = &['"', '\''];
    let lines: Vec<String> = (1..)
        .zip(text.lines())
        .filter(|(_, line)| {
            let line = line.trim_start().trim_start_matches(quotes);
            line.strip_prefix(key)
                .is_some_and(|rest| rest.trim_start_matches(quotes).trim_start().starts_with(':'))
        })
        .map(|(n, _)| n.to_string())
        .collect();
    match lines.as_slice() {
        [_, _, ..] => format!(" (lines {})", lines.join(" and ")),
        _ => String::new(),
    }
}

/// A mapping's entries as written, in order: each key and value a scalar taken as its text.
struct Pairs(Vec<(String, String)>);

impl<'de> Deserialize<'de> for Pairs {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = Pairs;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a mapping of Alembic revision ids to versions (`ae1027a6acf: 3`)")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Pairs, A::Error> {
                let mut pairs = Vec::new();
                while let Some(pair) = map.next_entry::<String, String>()? {
                    pairs.push(pair);
                }
                Ok(Pairs(pairs))
            }
        }
        d.deserialize_map(Visit)
    }
}

/// The parser's message with its line and column, which serde_yaml leaves out of some.
fn map_yaml_message(e: &serde_yaml::Error) -> String {
    let mut message = e.to_string();
    if !message.contains(" line ") {
        if let Some(at) = e.location() {
            message.push_str(&format!(" at line {} column {}", at.line(), at.column()));
        }
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "PGPASS" => Some("hunter2".into()),
            _ => None,
        }
    }

    fn parse_str(text: &str) -> Result<Fleet, FleetError> {
        parse(Path::new("/fleet/tenants.yaml"), text, &env)
    }

    fn message(err: FleetError) -> String {
        let mut out = err.to_string();
        let mut source = std::error::Error::source(&err);
        while let Some(s) = source {
            out.push_str(": ");
            out.push_str(&s.to_string());
            source = s.source();
        }
        out
    }

    const EXAMPLE: &str = r#"
hosts:
  main:
    url: postgres://postgres:${PGPASS}@127.0.0.1:5432/app
    max_connections: 4
    init_sql: "SET lock_timeout = '5s'"
defaults:
  host: main
  schema: "tenant_{id}"
  labels: { tier: free }
tenants:
  - id: acme
    labels: { tier: enterprise, region: eu }
    canary: true
  - id: globex
    database: "globex_db"
  - id: initech
    url: "sqlite://data/initech.db"
  - id: 42
"#;

    #[test]
    fn scratch_names_a_host_or_a_url_one_per_engine() {
        let fleet = parse_str(&format!("scratch: main\n{EXAMPLE}")).unwrap();
        assert_eq!(fleet.scratch.len(), 1);
        assert_eq!(fleet.scratch[0].0, Engine::Postgres);
        assert_eq!(fleet.scratch[0].1.password(), Some("hunter2"));
        let both = "scratch: [main, \"mysql://root@127.0.0.1:3306/\"]\n";
        let fleet = parse_str(&format!("{both}{EXAMPLE}")).unwrap();
        assert_eq!(fleet.scratch[1].0, Engine::MySql);
        assert!(parse_str(EXAMPLE).unwrap().scratch.is_empty());
        for (bad, says) in [
            ("scratch: \"sqlite://x.db\"\n", "SQLite is checked in a temporary file"),
            ("scratch: [main, \"postgres://h/db\"]\n", "names two postgres servers"),
            ("scratch: nowhere\n", "unknown scheme"),
        ] {
            let err = message(parse_str(&format!("{bad}{EXAMPLE}")).unwrap_err());
            assert!(err.contains("scratch") && err.contains(says), "{err}");
        }
    }

    #[test]
    fn the_documented_shape_loads() {
        let fleet = parse_str(EXAMPLE).unwrap();
        let acme = fleet.tenant("acme").unwrap();
        assert_eq!(acme.engine, Engine::Postgres);
        assert!(acme.canary);
        assert_eq!(acme.namespace.schema.as_ref().unwrap().as_str(), "tenant_acme");
        assert_eq!(acme.labels["tier"], "enterprise");
        assert_eq!(acme.url.password(), Some("hunter2"));
        assert_eq!(acme.init_sql, ["SET lock_timeout = '5s'"]);
        assert_eq!(acme.host.as_deref(), Some("main"));
        let globex = fleet.tenant("globex").unwrap();
        assert_eq!(globex.namespace.database.as_ref().unwrap().as_str(), "globex_db");
        assert!(globex.namespace.schema.is_none());
        assert_eq!(globex.labels["tier"], "free");
        let initech = fleet.tenant("initech").unwrap();
        assert_eq!(initech.engine, Engine::Sqlite);
        assert_eq!(initech.url.url().path(), "/fleet/data/initech.db");
        assert!(fleet.tenant("42").is_some());
        assert_eq!(fleet.hosts["main"].max_connections, 4);
    }

    #[test]
    fn bad_files_get_precise_messages() {
        let cases: &[(&str, &str)] = &[
            ("tenants: [ {id: a", "line 1 column"),
            (
                "tenants:\n  - id: a\n    url: sqlite://a.db\n    sceham: x\n",
                "unknown field `sceham`",
            ),
            (
                "tenants:\n  - id: a\n    url: sqlite://a.db\n    sceham: x\n",
                "line 4 column 5",
            ),
            (
                "tenants:\n  - {id: a, url: \"sqlite://a.db\"}\n  - {id: a, url: \"sqlite://b.db\"}\n",
                "tenant id `a` is listed twice",
            ),
            (
                "tenants:\n  - {id: a, url: \"postgres://u:${NOPE}@h/db\"}\n",
                "tenant `a` url: environment variable `NOPE` is not set",
            ),
            (
                "tenants:\n  - {id: a, url: \"postgres://h/db\", schema: 'a\"; drop table x; --'}\n",
                "tenant `a` schema: `a\\\"; drop table x; --` holds `\\\"`",
            ),
            (
                "tenants:\n  - {id: a, url: \"oracle://h/db\"}\n",
                "unknown scheme `oracle`",
            ),
            (
                "tenants:\n  - {id: a, url: \"mysql://h/db?timezone=x';DROP DATABASE y;--\"}\n",
                "URL parameter `timezone` is `x\\';DROP DATABASE y;--`: expected a time zone",
            ),
            (
                "tenants:\n  - {id: \"o'brien\", url: \"sqlite://a.db\"}\n",
                "tenant id `o\\'brien` holds",
            ),
            ("tenants:\n  - {id: a, host: nope}\n", "host `nope` is not in `hosts`"),
            (
                "tenants:\n  - {id: a, url: \"sqlite://a.db\", schema: s}\n",
                "takes no `schema`",
            ),
        ];
        for (text, expected) in cases {
            let err = message(parse_str(text).unwrap_err());
            assert!(err.contains(expected), "for {text:?}: `{err}` lacks `{expected}`");
            assert!(err.contains("/fleet/tenants.yaml"), "{err}");
        }
    }

    #[test]
    fn passwords_stay_out_of_url_errors() {
        let text = "tenants:\n  - {id: a, url: \"oracle://u:${PGPASS}@h/db\"}\n";
        let err = message(parse_str(text).unwrap_err());
        assert!(!err.contains("hunter2"), "{err}");
        let text = "tenants:\n  - {id: a, url: \"postgres://u:${PGPASS}@h:notaport/db\"}\n";
        let err = message(parse_str(text).unwrap_err());
        assert!(!err.contains("hunter2"), "{err}");
        let text = "hosts:\n  main: \"postgres://u:hunter2@h/db\"\ntenants: []\n";
        let err = message(parse_str(text).unwrap_err());
        assert!(
            !err.contains("hunter2") && err.contains("postgres://u:***@h/db"),
            "{err}"
        );
    }

    #[cfg(unix)]
    #[test]
    fn an_endless_fleet_file_is_refused_not_read_to_the_end() {
        let err = load(Path::new("/dev/zero")).map(|_| ()).unwrap_err().to_string();
        assert_eq!(
            err,
            "fleet file `/dev/zero`: is larger than 64 MiB: a fleet file of 100,000 tenants takes a few; for more, use `discover:`"
        );
    }

    #[test]
    fn a_file_nested_past_any_use_is_refused_at_once() {
        let deep = format!("tenants: {}{}\n", "[".repeat(100_000), "]".repeat(100_000));
        let started = std::time::Instant::now();
        let err = message(parse_str(&deep).unwrap_err());
        assert!(
            err.contains("nests `[` and `{` more than 128 levels deep at line 1 column 138"),
            "{err}"
        );
        assert!(
            started.elapsed() < std::time::Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
        let quoted = format!(
            "tenants:\n  - {{id: a, url: 'sqlite://a.db', labels: {{x: \"{0}\", y: '{0}'}}}} # {0}\n",
            "[".repeat(500)
        );
        assert!(parse_str(&quoted).is_ok());
    }

    #[test]
    fn a_sqlite_url_sets_only_pragmas_sqlite_knows() {
        for (param, expected) in [
            (
                "mode=ro",
                "`mode` is not a SQLite PRAGMA a URL may set (a sqlx URL option",
            ),
            (
                "immutable=1",
                "`immutable` is not a SQLite PRAGMA a URL may set (a sqlx URL option",
            ),
            (
                "jornal_mode=wal",
                "`jornal_mode` is not a SQLite PRAGMA a URL may set; SQLite would silently",
            ),
        ] {
            let text = format!("tenants:\n  - {{id: a, url: \"sqlite://a.db?{param}\"}}\n");
            let err = message(parse_str(&text).unwrap_err());
            assert!(
                err.contains("tenant `a` url: `sqlite://a.db?") && err.contains(expected),
                "{err}"
            );
        }
        let text = "tenants:\n  - {id: a, url: \"sqlite://a.db?journal_mode=wal&Synchronous=normal&cache_size=500\"}\n";
        assert!(parse_str(text).is_ok());
    }

    #[test]
    fn urls_the_database_client_would_refuse_are_refused_when_loaded() {
        for (text, expected) in [
            (
                "tenants:\n  - {id: a, url: \"postgres://u:hunter2@h/db?sslmode=bogus\", schema: s}\n",
                "tenant `a` url: `postgres://u:***@h/db?sslmode=bogus`: unknown value \"bogus\" for `ssl_mode`",
            ),
            (
                "hosts:\n  m: {url: \"mysql://u:hunter2@h/?ssl-mode=no\"}\ntenants: []\n",
                "host `m` url: `mysql://u:***@h/?ssl-mode=no`: unknown value \"no\" for `ssl_mode`",
            ),
            (
                "ledger: \"postgres://u@h/db?port=x&password=hunter2\"\ntenants: []\n",
                "ledger: `postgres://u@h/db?port=x&password=***`: invalid digit found in string",
            ),
            (
                "tenants:\n  - {id: a, url: \"postgres://u@h/db?sslpassword=hunter2\", schema: s}\n",
                "tenant `a` url: `postgres://u@h/db?sslpassword=***`: URL parameter `sslpassword` is not one the postgres client takes",
            ),
            (
                "tenants:\n  - {id: a, url: \"mysql://u@h/db?password=hunter2\"}\n",
                "URL parameter `password` is not one the mysql client takes, and would be silently ignored (give the password in the user info",
            ),
            (
                "tenants:\n  - {id: a, url: \"postgres://u@h/db?connect_timeout=5&options[search_path]=x\", schema: s}\n",
                "URL parameter `connect_timeout` is not one the postgres client takes",
            ),
            (
                "discover: {url: \"postgres://u:hunter2@h/db?statement-cache-capacity=-1\", query: q}\n",
                "discover url: `postgres://u:***@h/db?statement-cache-capacity=-1`: invalid digit",
            ),
        ] {
            let err = message(parse_str(text).unwrap_err());
            assert!(err.contains(expected) && !err.contains("hunter2"), "{text}: {err}");
        }
    }

    #[test]
    fn the_discover_section_is_checked_when_loaded() {
        let file = parse_file(
            Path::new("/fleet/tenants.yaml"),
            "hosts: { main: { url: \"postgres://h/db\" } }\n\
             discover: { url: \"postgres://reg:${PGPASS}@r/reg\", query: \"SELECT id FROM t\", host: main }\n",
            &env,
        )
        .unwrap();
        let discover = file.fleet.discover.as_ref().unwrap();
        assert_eq!(discover.url.password(), Some("hunter2"));
        assert_eq!(discover.host.as_deref(), Some("main"));
        assert!(file.fleet.tenants.is_empty(), "`tenants:` may be left out");

        let cases: &[(&str, &str)] = &[
            (
                "discover: { url: \"sqlite://r.db\", query: q, sceham: x }\n",
                "unknown field `sceham`",
            ),
            ("discover: { url: \"sqlite://r.db\" }\n", "missing field `query`"),
            (
                "discover: { url: \"sqlite://r.db\", query: q, host: nope }\n",
                "discover host: host `nope` is not in `hosts`",
            ),
            (
                "discover: { url: \"postgres://u:${NOPE}@h/db\", query: q }\n",
                "discover url: environment variable `NOPE` is not set",
            ),
            (
                "discover: { url: \"oracle://u:${PGPASS}@h/db\", query: q }\n",
                "discover url: `oracle://u:***@h/db` has an unknown scheme",
            ),
            (
                "discover: { url: \"sqlite://r.db\", query: \" \" }\n",
                "discover query: the query is empty",
            ),
            ("defaults: {}\n", "no `tenants:` list and no `discover:` section"),
        ];
        for (text, expected) in cases {
            let err = message(parse_str(text).unwrap_err());
            assert!(err.contains(expected), "for {text:?}: `{err}` lacks `{expected}`");
            assert!(!err.contains("hunter2"), "{err}");
        }
    }

    #[test]
    fn an_unset_variable_in_defaults_matters_only_to_tenants_that_use_it() {
        let text = "hosts: { main: { url: \"postgres://h/db\" } }\n\
                    defaults: { url: \"postgres://u:${NOPE}@h/db\" }\n\
                    tenants:\n  - { id: a, host: main }\n";
        assert!(parse_str(text).is_ok());
        let err = message(parse_str(&format!("{text}  - {{ id: b }}\n")).unwrap_err());
        assert!(
            err.contains("tenant `b` url: environment variable `NOPE` is not set"),
            "{err}"
        );
    }

    #[test]
    fn malformed_files_get_the_key_path_and_what_was_expected() {
        let cases: &[(&str, &str)] = &[
            (
                "tenants: []\n---\ntenants: []\n",
                "holds more than one YAML document (a second `---` line)",
            ),
            (
                "[]",
                "expected a map of sections (hosts, defaults, rollout, ledger, tenants, discover, migrations, scratch, notify) at line 1",
            ),
            (
                "tenants:\n  - {id: [1]}\n",
                "tenants[0].id: invalid type: sequence, expected a string, number or boolean at line 2 column 10",
            ),
            (
                "tenants:\n  - {id: a, url: 'sqlite://a.db', labels: {x: {y: 1}}}\n",
                "tenants[0].labels.x: invalid type: map, expected a string, number or boolean",
            ),
            (
                "rollout: {waves: {a: 1}}\ntenants: []\n",
                "rollout.waves: invalid type: map, expected waves, as text",
            ),
            (
                "tenants:\n  - {id: a, url: 'sqlite://a.db', init_sql: 5}\n",
                "tenants[0].init_sql: invalid type: integer `5`, expected a SQL statement or a list of them",
            ),
            (
                "hosts: {m: 5}\ntenants: []\n",
                "hosts.m: invalid type: integer `5`, expected a host: a map with `url`",
            ),
            (
                "hosts: {m: {url: 'postgres://h/d', max_connections: 4294967295}}\ntenants: []\n",
                "host `m` max_connections: `4294967295` is not a whole number from 1 to 1000",
            ),
            (
                "hosts: {m: {url: 'postgres://h/d', max_connections: 0}}\ntenants: []\n",
                "host `m` max_connections: `0` is not a whole number from 1 to 1000",
            ),
            (
                "rollout: {bake: 500us}\ntenants: []\n",
                "rollout bake: `500us` is not a whole number of milliseconds",
            ),
            (
                "rollout: {bake: 99999999999999h}\ntenants: []\n",
                "rollout bake: `99999999999999h` is out of range: give a duration from 0s to 7days",
            ),
            (
                "rollout: {waves: '5,2'}\ntenants: []\n",
                "rollout waves: wave sizes `5,2` are cumulative",
            ),
            (
                "rollout: {host_failures: -1}\ntenants: []\n",
                "rollout host_failures: `-1` is not a whole number from 0 to 100000",
            ),
            (
                "tenants:\n  - {id: a, url: 'sqlite://a.db', init_sql: \"select 1\\0\"}\n",
                "tenants[0].init_sql: holds a NUL byte at offset 8",
            ),
            (
                "\t",
                "found character that cannot start any token, while scanning for the next token at line 1 column 1",
            ),
            ("? [a]\n: b\n", "expected a key name at line 1 column 3"),
        ];
        for (text, expected) in [
            (
                "tenants:\n  - {id: !foo a, url: 'sqlite://a.db'}\n",
                "tenants[0].id: invalid type: a tagged value (`!name`; a fleet file takes no YAML tags), expected",
            ),
            (
                "tenants:\n\t- {id: a, url: 'sqlite://a.db'}\n",
                "line 2 column 1, while scanning for the next token (YAML indents with spaces, never tabs",
            ),
        ] {
            let err = message(parse_str(text).unwrap_err());
            assert!(err.contains(expected) && !err.contains("enum"), "{text}: {err}");
        }
        assert!(parse_str("\u{feff}tenants:\n  - {id: a, url: 'sqlite://a.db'}\n").is_ok());
        let breaker = parse_str("rollout: {host_failures: 0}\ntenants: []\n").unwrap();
        assert_eq!(breaker.rollout.host_failures, Some(0));
        for (text, expected) in cases {
            let got = parse_str(text).err().map(message).unwrap_or_default();
            assert!(got.contains(expected), "for {text:?}: `{got}` lacks `{expected}`");
            assert!(!got.contains("Doc") && !got.contains("untagged"), "{got}");
        }
    }

    #[test]
    fn init_sql_by_engine_reaches_only_the_tenants_of_that_engine() {
        let text = "hosts:\n  pg: { url: \"postgres://h/db\", init_sql: { postgres: \"SET a = 1\", mysql: \"SET x = 1\" } }\n\
                    defaults:\n  init_sql: { mysql: \"SET FOREIGN_KEY_CHECKS = 0\", postgres: [\"SET b = '${PGPASS}'\"], sqlite: [] }\n\
                    tenants:\n  - { id: p, host: pg, schema: p, init_sql: \"SET c = 3\" }\n\
                    \x20 - { id: m, url: \"mysql://h/\", database: m }\n  - { id: s, url: \"sqlite://s.db\" }\n";
        let fleet = parse_str(text).unwrap();
        assert_eq!(
            fleet.tenant("p").unwrap().init_sql,
            ["SET a = 1", "SET b = 'hunter2'", "SET c = 3"],
            "host's, then defaults', then the tenant's"
        );
        assert_eq!(fleet.tenant("m").unwrap().init_sql, ["SET FOREIGN_KEY_CHECKS = 0"]);
        assert!(fleet.tenant("s").unwrap().init_sql.is_empty());
        let plain = "defaults: { init_sql: [\"SET a = 1\"] }\ntenants:\n  - { id: s, url: \"sqlite://s.db\" }\n";
        assert_eq!(parse_str(plain).unwrap().tenant("s").unwrap().init_sql, ["SET a = 1"]);

        let cases: &[(&str, &str)] = &[
            (
                "defaults: { init_sql: { oracle: \"SET x = 1\" } }\ntenants: []\n",
                "defaults.init_sql.oracle: `oracle` is not an engine: the keys are postgres, mysql (for MySQL and MariaDB) and sqlite",
            ),
            (
                "hosts: { m: { url: \"mysql://h/\", init_sql: { mariadb: [] } } }\ntenants: []\n",
                "hosts.m.init_sql.mariadb: `mariadb` is not an engine",
            ),
            (
                "defaults: { init_sql: { mysql: 5 } }\ntenants: []\n",
                "defaults.init_sql.mysql: invalid type: integer `5`, expected a SQL statement or a list of them",
            ),
            (
                "defaults: { init_sql: { mysql: \"SET a = ${NOPE}\" } }\ntenants: []\n",
                "defaults.init_sql.mysql: environment variable `NOPE` is not set",
            ),
            (
                "defaults: { init_sql: { sqlite: \"x\\0\" } }\ntenants: []\n",
                "defaults.init_sql.sqlite: holds a NUL byte",
            ),
            (
                "tenants:\n  - { id: a, url: \"sqlite://a.db\", init_sql: { sqlite: \"x\" } }\n",
                "tenants[0].init_sql: invalid type: map, expected a SQL statement or a list of them",
            ),
        ];
        for (text, expected) in cases {
            let err = message(parse_str(text).unwrap_err());
            assert!(err.contains(expected), "for {text:?}: `{err}` lacks `{expected}`");
            assert!(err.starts_with("fleet file `/fleet/tenants.yaml`: "), "{err}");
        }
    }

    #[test]
    fn search_path_puts_the_tenant_schema_first_and_checks_the_rest() {
        let text = "hosts: { pg: { url: \"postgres://h/db\" } }\n\
                    defaults: { host: pg, schema: \"t_{id}\", search_path: \"{schema}, public, \\\"Shared-1\\\", Ext\" }\n\
                    tenants:\n  - { id: a }\n  - { id: b, search_path: \"{schema}\" }\n  - { id: c, database: c }\n\
                    \x20 - { id: m, url: \"mysql://h/\", database: m }\n";
        let fleet = parse_str(text).unwrap();
        let names = |id: &str| -> Vec<String> {
            let tenant = fleet.tenant(id).unwrap();
            tenant.search_path.iter().map(|s| s.as_str().to_owned()).collect()
        };
        assert_eq!(names("a"), ["public", "Shared-1", "ext"]);
        assert!(names("b").is_empty(), "the tenant's own template wins");
        assert!(
            names("c").is_empty() && names("m").is_empty(),
            "only schema-tenants take one"
        );

        let cases: &[(&str, &str)] = &[
            (
                "defaults: { search_path: \"public, {schema}\" }\ntenants: []\n",
                "defaults search_path: `public, {schema}` must start with `{schema}`: the tenant's own schema comes first",
            ),
            (
                "defaults: { search_path: \"{schema}, {schema}\" }\ntenants: []\n",
                "defaults search_path: `{schema}, {schema}` names `{schema}` twice",
            ),
            (
                "defaults: { search_path: \"{schema}, public; DROP TABLE x\" }\ntenants: []\n",
                "defaults search_path: `{schema}, public; DROP TABLE x`: `public; drop table x` holds `;`",
            ),
            (
                "defaults: { search_path: \"{schema}, \\\"a\\\"b\\\"\" }\ntenants: []\n",
                "holds `\\\"`",
            ),
            (
                "defaults: { search_path: \"{schema},,public\" }\ntenants: []\n",
                "must be 1 to 63 characters long",
            ),
            (
                "tenants:\n  - { id: a, url: \"postgres://h/db\", schema: a, search_path: \"x\" }\n",
                "tenant `a` search_path: `x` must start with `{schema}`",
            ),
            (
                "tenants:\n  - { id: a, url: \"postgres://h/db\", search_path: \"{schema}, public\" }\n",
                "tenant `a` search_path: is for a PostgreSQL tenant with a `schema`",
            ),
        ];
        for (text, expected) in cases {
            let err = message(parse_str(text).unwrap_err());
            assert!(err.contains(expected), "for {text:?}: `{err}` lacks `{expected}`");
            assert!(err.starts_with("fleet file `/fleet/tenants.yaml`: "), "{err}");
        }
    }

    #[test]
    fn create_database_is_mysqls_default_and_postgres_only_when_asked() {
        let text = "hosts: { pg: { url: \"postgres://h/db\" }, my: { url: \"mysql://h/\" } }\n\
                    defaults: { database: \"d_{id}\" }\n\
                    tenants:\n  - { id: p, host: pg }\n  - { id: q, host: pg, create_database: true }\n\
                    \x20 - { id: m, host: my }\n  - { id: n, host: my, create_database: false }\n";
        let fleet = parse_str(text).unwrap();
        let creates = |id: &str| fleet.tenant(id).unwrap().create_database;
        assert!(!creates("p") && creates("q") && creates("m") && !creates("n"));
        let text = text.replace("database: \"d_{id}\"", "database: \"d_{id}\", create_database: true");
        let fleet = parse_str(&text).unwrap();
        assert!(fleet.tenant("p").unwrap().create_database && !fleet.tenant("n").unwrap().create_database);
        let err = message(parse_str("defaults: { create_database: yes please }\ntenants: []\n").unwrap_err());
        assert!(err.contains("defaults.create_database: invalid type"), "{err}");
    }

    #[test]
    fn the_readme_fleet_file_loads_as_it_says() {
        let readme = fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
        let section = &readme[readme.find("## The fleet file").unwrap()..];
        let start = section.find("```yaml\n").unwrap() + "```yaml\n".len();
        let yaml = &section[start..start + section[start..].find("```").unwrap()];
        let env = |name: &str| (name == "PGPASSWORD").then(|| "hunter2".to_owned());
        let fleet = parse(Path::new("/fleet/tenants.yaml"), yaml, &env).unwrap();
        let acme = fleet.tenant("acme").unwrap();
        assert_eq!(
            acme.init_sql,
            ["SET lock_timeout = '3s'", "SET lock_timeout = '3s'"],
            "the host's, then the defaults' for PostgreSQL"
        );
        assert_eq!(
            acme.search_path.iter().map(Ident::as_str).collect::<Vec<_>>(),
            ["public"]
        );
        let globex = fleet.tenant("globex").unwrap();
        assert!(globex.create_database && globex.search_path.is_empty());
        let hooli = fleet.tenant("hooli").unwrap();
        assert_eq!(hooli.init_sql, ["SET FOREIGN_KEY_CHECKS = 0"]);
        assert!(hooli.create_database);
        assert!(fleet.tenant("initech").unwrap().init_sql.is_empty());
    }

    #[test]
    fn variables_expand_with_defaults_and_escapes() {
        let lookup = |n: &str| (n == "A").then(|| "1".to_owned());
        assert_eq!(expand_vars("x${A}y${B:-2}z$${A}$", &lookup).unwrap(), "x1y2z${A}$");
        assert!(
            expand_vars("${B}", &lookup)
                .unwrap_err()
                .to_string()
                .contains("`B` is not set")
        );
    }

    #[test]
    fn a_revision_map_takes_versions_as_written_and_refuses_what_is_wrong_naming_file_and_line() {
        let path = Path::new("/fleet/revisions.yaml");
        let map = parse_revision_map(
            path,
            "# alembic history\n1975ea83b712: 1.2\nae1027a6acf: \"1.10\"\n27c6a30d7c24: 1.10\n",
            VersionStyle::Dotted,
        )
        .unwrap();
        let texts: Vec<(&str, String)> = map.versions.iter().map(|(r, v)| (r.as_str(), v.to_string())).collect();
        assert_eq!(
            texts,
            [
                ("1975ea83b712", "1.2".to_owned()),
                ("27c6a30d7c24", "1.10".to_owned()),
                ("ae1027a6acf", "1.10".to_owned())
            ]
        );
        assert_eq!(map.file, path);
        let numeric = parse_revision_map(path, "123456789012: 0003\n", VersionStyle::Integer).unwrap();
        assert_eq!(numeric.versions["123456789012"], Version::int(3));
        for (text, says) in [
            ("", "revision map `/fleet/revisions.yaml`: is empty"),
            ("a: 1\nb: 2\n'a': 3\n", "revision `a` is mapped twice (lines 1 and 3)"),
            ("a: 1\nb: [2]\n", "line 2"),
            ("- a\n- b\n", "a mapping of Alembic revision ids to versions"),
            ("a: 1\n  b: 2\n", "line 2"),
            ("a: 1\nb: two\n", "revision `b`: `two` is not a migration version"),
        ] {
            let err = parse_revision_map(path, text, VersionStyle::Integer)
                .unwrap_err()
                .to_string();
            assert!(
                err.starts_with("revision map `/fleet/revisions.yaml`: "),
                "{text:?}: {err}"
            );
            assert!(err.contains(says), "{text:?}: {err}");
        }
    }
}
