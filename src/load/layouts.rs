//! Other tools' migration folders, read as they are: sqlx's simple (one-way) files,
//! diesel's folders, Flyway's versioned and undo scripts, dbmate's two-section files. The
//! fleetmig layout (also sqlx's reversible and golang-migrate's) is read by
//! [`super::migrations`]; this module detects which layout a folder has and reads the
//! others into the same [`Migration`]s.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use super::migrations::{MigrationsError, not_a_file, read};
use crate::model::fleet::Engine;
use crate::model::migration::{
    DuplicateVersion, Layout, Migration, MigrationSet, Repeatable, Script, Version, VersionStyle,
};

/// What a folder's entries look like, per layout: counts and a first example, for
/// detection and its error.
#[derive(Debug, Default)]
struct Evidence {
    found: BTreeMap<Layout, (usize, String)>,
}

impl Evidence {
    fn add(&mut self, layout: Layout, example: &str) {
        let e = self.found.entry(layout).or_insert_with(|| (0, example.to_owned()));
        e.0 += 1;
    }

    fn describe(&self) -> String {
        self.found
            .iter()
            .map(|(layout, (n, example))| format!("{n} {layout} (`{example}`)"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// The folder's hidden entries (`.gitkeep`, `.DS_Store`): never migrations, listed with
/// what a set leaves alone.
fn hidden(dir: &Path) -> Result<Vec<PathBuf>, MigrationsError> {
    Ok(named(dir, true)?.into_iter().map(|(_, path)| path).collect())
}

/// The folder's entries that are not hidden, sorted by name.
fn entries(dir: &Path) -> Result<Vec<(String, PathBuf)>, MigrationsError> {
    named(dir, false)
}

/// The folder's hidden entries, or the others, with their names, sorted by name.
fn named(dir: &Path, hidden: bool) -> Result<Vec<(String, PathBuf)>, MigrationsError> {
    let read_err = |source| MigrationsError::Read {
        path: dir.to_owned(),
        source,
    };
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).map_err(read_err)? {
        let entry = entry.map_err(read_err)?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') == hidden {
            out.push((name, entry.path()));
        }
    }
    out.sort();
    Ok(out)
}

/// The engine folders of `dir` (`postgres/` or `postgresql/`, `mysql/` or `mariadb/`,
/// `sqlite/`), when it holds a folder of migrations per engine; empty when it is itself
/// one folder of migrations. Migrations beside engine folders, or two folders for one
/// engine, are an error: which tenants would they be for?
pub fn engine_folders(dir: &Path) -> Result<Vec<(Engine, PathBuf)>, MigrationsError> {
    if !dir.is_dir() {
        return Ok(Vec::new());
    }
    let mut folders: Vec<(Engine, PathBuf)> = Vec::new();
    let mut beside = Vec::new();
    for (name, path) in entries(dir)? {
        match Engine::from_scheme(&name).filter(|_| path.is_dir()) {
            Some(engine) => {
                if let Some((_, first)) = folders.iter().find(|(e, _)| *e == engine) {
                    return Err(MigrationsError::SameEngine {
                        first: first.clone(),
                        second: path,
                        engine,
                    });
                }
                folders.push((engine, path));
            }
            None if name.ends_with(".sql") || path.join("up.sql").is_file() => beside.push(name),
            None => {}
        }
    }
    if !folders.is_empty() && !beside.is_empty() {
        return Err(MigrationsError::MixedEngineFolders {
            dir: dir.to_owned(),
            engines: folders
                .iter()
                .map(|(e, _)| e.to_string())
                .collect::<Vec<_>>()
                .join(", "),
            beside: beside.join(", "),
        });
    }
    folders.sort_by_key(|(e, _)| *e);
    Ok(folders)
}

/// `V1_2__add_users.sql` → (`V`, `1_2`, `add_users`).
fn flyway_name(file: &str) -> Option<(char, &str, &str)> {
    let stem = file.strip_suffix(".sql")?;
    let kind = stem.chars().next().filter(|c| matches!(c, 'V' | 'U' | 'R'))?;
    let (version, desc) = stem[1..].split_once("__")?;
    let ok = match kind {
        'R' => version.is_empty(),
        _ => !version.is_empty() && version.bytes().all(|b| b.is_ascii_digit() || b == b'.' || b == b'_'),
    };
    ok.then_some((kind, version, desc))
}

/// `20240101120000_add_users.sql` → (`20240101120000`, `add_users`): sqlx's simple files
/// and dbmate's.
fn plain_name(file: &str) -> Option<(&str, &str)> {
    let stem = file.strip_suffix(".sql")?;
    if stem.ends_with(".up") || stem.ends_with(".down") {
        return None;
    }
    let (digits, name) = stem.split_once('_')?;
    (!digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) && !name.is_empty()).then_some((digits, name))
}

/// `2017-01-01-000000_create_users` → (`20170101000000`, `create_users`).
fn diesel_name(folder: &str) -> Option<(String, &str)> {
    let (version, name) = folder.split_once('_')?;
    let version = version.replace('-', "");
    (!version.is_empty() && !name.is_empty()).then_some((version, name))
}

/// True when `text` has a dbmate section marker (`-- migrate:up`, `-- migrate:down`, or a
/// misspelt one, which the dbmate reader then refuses: a file of dbmate's must never run
/// whole as a one-way sqlx file, its down section with it).
fn is_dbmate(text: &str) -> bool {
    text.lines().any(|l| l.trim_start().starts_with("-- migrate:"))
}

/// The layout of `dir`: the one its entries fit. Diesel's folders win over loose files
/// beside them (a `schema.sql`), fleetmig's `.up.sql` files over `V_name.sql` files beside
/// them (misnamed, and reported so); files of two layouts otherwise are an error naming
/// what was found. A folder with nothing any layout takes is fleetmig's (an empty set; a misnamed
/// file is reported by its reader).
pub fn detect(dir: &Path) -> Result<Layout, MigrationsError> {
    if !dir.is_dir() {
        return Err(MigrationsError::MissingDir { dir: dir.to_owned() });
    }
    let mut evidence = Evidence::default();
    for (name, path) in entries(dir)? {
        if path.is_dir() {
            if diesel_name(&name).is_some() && path.join("up.sql").is_file() {
                evidence.add(Layout::Diesel, &format!("{name}/up.sql"));
            }
        } else if name.ends_with(".up.sql") || name.ends_with(".down.sql") {
            evidence.add(Layout::Fleetmig, &name);
        } else if flyway_name(&name).is_some() {
            evidence.add(Layout::Flyway, &name);
        } else if plain_name(&name).is_some() {
            let dbmate = read(&path).is_ok_and(|t| is_dbmate(&t));
            evidence.add(if dbmate { Layout::Dbmate } else { Layout::SqlxSimple }, &name);
        }
    }
    if evidence.found.contains_key(&Layout::Diesel) {
        return Ok(Layout::Diesel);
    }
    // `0003_x.sql` among `.up.sql` files is a misnamed fleetmig file (sqlx, too, reads a
    // folder as one kind or the other): its reader says what is wrong with the name.
    if evidence.found.len() == 2
        && evidence.found.contains_key(&Layout::Fleetmig)
        && evidence.found.contains_key(&Layout::SqlxSimple)
    {
        return Ok(Layout::Fleetmig);
    }
    let mut found = evidence.found.keys().copied();
    match (found.next(), found.next()) {
        (None, _) => Ok(Layout::Fleetmig),
        (Some(one), None) => Ok(one),
        (Some(_), Some(_)) => Err(MigrationsError::Ambiguous {
            dir: dir.to_owned(),
            found: evidence.describe(),
        }),
    }
}

/// A migration set read from `dir` in `layout` (not fleetmig's own); the entries that are
/// not migrations are left alone and listed in the set ([`MigrationSet::ignored`]).
pub fn load(dir: &Path, layout: Layout) -> Result<MigrationSet, MigrationsError> {
    if !dir.is_dir() {
        return Err(MigrationsError::MissingDir { dir: dir.to_owned() });
    }
    let (migrations, ignored, style) = match layout {
        Layout::Fleetmig => unreachable!("fleetmig's own layout is read by migrations::load"),
        Layout::SqlxSimple => (plain_files(dir, false)?, Vec::new(), VersionStyle::Integer),
        Layout::Dbmate => (plain_files(dir, true)?, Vec::new(), VersionStyle::Integer),
        Layout::Diesel => {
            let (m, ignored) = diesel(dir)?;
            (m, ignored, VersionStyle::Text)
        }
        Layout::Flyway => (flyway(dir)?, Vec::new(), VersionStyle::Dotted),
    };
    let mut ignored = match layout {
        Layout::Diesel => ignored,
        _ => not_taken(dir, layout)?,
    };
    ignored.extend(hidden(dir)?);
    ignored.sort();
    let repeatables = match layout {
        Layout::Flyway => flyway_repeatables(dir)?,
        _ => Vec::new(),
    };
    Ok(MigrationSet::with_style(migrations, style)?
        .with_layout(layout, ignored)
        .with_repeatables(repeatables))
}

/// Flyway's repeatable migrations in `dir`: `R__name.sql`, each run again whenever its
/// checksum changes. The name is what the tenant records, so it keeps to letters, digits,
/// `_`, `-`, `.` and spaces.
fn flyway_repeatables(dir: &Path) -> Result<Vec<Repeatable>, MigrationsError> {
    let mut out = Vec::new();
    for (name, path) in entries(dir)? {
        let Some(('R', _, desc)) = flyway_name(&name) else {
            continue;
        };
        if let Some(kind) = not_a_file(&path)? {
            return Err(MigrationsError::NotAFile { path, kind });
        }
        let plain = !desc.is_empty()
            && desc.len() <= 200
            && desc
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ' '));
        if !plain {
            return Err(MigrationsError::BadVersion {
                path,
                why: "a repeatable migration's name keeps to letters, digits, `_`, `-`, `.` and spaces (200 at most)"
                    .into(),
            });
        }
        let sql = written(read(&path)?, &path)?;
        out.push(Repeatable::new(desc.to_owned(), sql, path));
    }
    Ok(out)
}

/// The entries of a flat layout's folder that are not its migrations.
fn not_taken(dir: &Path, layout: Layout) -> Result<Vec<PathBuf>, MigrationsError> {
    Ok(entries(dir)?
        .into_iter()
        .filter(|(name, path)| match layout {
            Layout::Flyway => flyway_name(name).is_none() && !name.ends_with(".sql.conf"),
            _ => path.is_dir() || plain_name(name).is_none(),
        })
        .map(|(_, path)| path)
        .collect())
}

/// A version read in `style`, or the file named.
fn version(text: &str, style: VersionStyle, path: &Path) -> Result<Version, MigrationsError> {
    match Version::parse(text, style) {
        Ok(v) if v != Version::ZERO || style == VersionStyle::Text => Ok(v),
        Ok(_) => Err(MigrationsError::BadVersion {
            path: path.to_owned(),
            why: "version 0 means \"nothing applied\"; number migrations from 1".into(),
        }),
        Err(e) => Err(MigrationsError::BadVersion {
            path: path.to_owned(),
            why: e.to_string(),
        }),
    }
}

/// An up script with a statement in it, or the file named.
fn written(up: String, path: &Path) -> Result<String, MigrationsError> {
    if Script::new(up.clone()).is_blank() {
        return Err(MigrationsError::NoStatement { path: path.to_owned() });
    }
    Ok(up)
}

/// sqlx's simple files (`V_name.sql`, one way, `-- no-transaction` on the first line) or
/// dbmate's (`V_name.sql` with `-- migrate:up` and `-- migrate:down` sections).
fn plain_files(dir: &Path, dbmate: bool) -> Result<Vec<Migration>, MigrationsError> {
    let mut out = Vec::new();
    for (name, path) in entries(dir)? {
        let Some((digits, stem)) = plain_name(&name) else {
            continue;
        };
        if let Some(kind) = not_a_file(&path)? {
            return Err(MigrationsError::NotAFile { path, kind });
        }
        let v = version(digits, VersionStyle::Integer, &path)?;
        let text = read(&path)?;
        let m = if dbmate {
            dbmate_migration(v, stem, &text, path)?
        } else {
            let no_tx = text.trim_start_matches('\u{feff}').lines().next().map(str::trim) == Some("-- no-transaction");
            let mut m = Migration::new(v, stem.to_owned(), written(text, &path)?, None, path);
            m.up.transactional &= !no_tx;
            m
        };
        out.push(m);
    }
    Ok(out)
}

/// One dbmate file: the `-- migrate:up` section is the up script (and its checksum), the
/// `-- migrate:down` section the down script; `transaction:false` on a marker runs that
/// section outside a transaction.
fn dbmate_migration(v: Version, name: &str, text: &str, path: PathBuf) -> Result<Migration, MigrationsError> {
    let mut up: Option<(String, bool)> = None;
    let mut down: Option<(String, bool)> = None;
    let mut current: Option<&mut Option<(String, bool)>> = None;
    for line in text.split_inclusive('\n') {
        let marker = line.trim();
        if let Some(rest) = marker.strip_prefix("-- migrate:") {
            let (which, options) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
            let tx = !options.split_whitespace().any(|o| o == "transaction:false");
            let slot = match which {
                "up" => &mut up,
                "down" => &mut down,
                _ => {
                    return Err(MigrationsError::BadMarker {
                        path,
                        why: format!("unknown dbmate section `-- migrate:{which}` (known: up, down)"),
                    });
                }
            };
            if slot.is_some() {
                return Err(MigrationsError::BadMarker {
                    path,
                    why: format!("a second `-- migrate:{which}` section"),
                });
            }
            *slot = Some((String::new(), tx));
            current = Some(slot);
        } else if let Some(Some((sql, _))) = current.as_deref_mut() {
            sql.push_str(line);
        }
    }
    let Some((up_sql, up_tx)) = up else {
        return Err(MigrationsError::BadMarker {
            path,
            why: "no `-- migrate:up` section".into(),
        });
    };
    let mut m = Migration::new(
        v,
        name.to_owned(),
        written(up_sql, &path)?,
        down.as_ref().map(|d| d.0.clone()),
        path,
    );
    m.up.transactional &= up_tx;
    if let (Some(script), Some((_, tx))) = (m.down.as_mut(), down) {
        script.transactional &= tx;
    }
    Ok(m)
}

/// diesel's folders: `VERSION_name/up.sql`, `down.sql` and an optional `metadata.toml`
/// whose `run_in_transaction = false` runs both outside a transaction. Loose files and
/// folders without `up.sql` beside them are not migrations and are left alone.
fn diesel(dir: &Path) -> Result<(Vec<Migration>, Vec<PathBuf>), MigrationsError> {
    let mut out = Vec::new();
    let mut ignored = Vec::new();
    for (name, path) in entries(dir)? {
        let up_path = path.join("up.sql");
        let (Some((v, stem)), true) = (diesel_name(&name), path.is_dir()) else {
            ignored.push(path);
            continue;
        };
        if !up_path.exists() {
            if path.join("down.sql").exists() || path.join("metadata.toml").exists() {
                return Err(MigrationsError::MissingUp { dir: path });
            }
            ignored.push(path);
            continue;
        }
        if let Some(kind) = not_a_file(&up_path)? {
            return Err(MigrationsError::NotAFile { path: up_path, kind });
        }
        let v = version(&v, VersionStyle::Text, &up_path)?;
        let up = read(&up_path)?;
        let down_path = path.join("down.sql");
        let down = if down_path.exists() {
            Some(read(&down_path)?)
        } else {
            None
        };
        let transactional = diesel_metadata(&path.join("metadata.toml"))?;
        let mut m = Migration::new(v, stem.to_owned(), up, down, up_path);
        m.up.transactional &= transactional;
        if let Some(d) = m.down.as_mut() {
            d.transactional &= transactional;
        }
        out.push(m);
    }
    Ok((out, ignored))
}

/// `run_in_transaction` from a diesel `metadata.toml` (true when there is none).
fn diesel_metadata(path: &Path) -> Result<bool, MigrationsError> {
    #[derive(serde::Deserialize)]
    struct Metadata {
        #[serde(default = "yes")]
        run_in_transaction: bool,
    }
    fn yes() -> bool {
        true
    }
    if !path.exists() {
        return Ok(true);
    }
    let text = read(path)?;
    let meta: Metadata = toml::from_str(&text).map_err(|e| MigrationsError::BadMarker {
        path: path.to_owned(),
        why: e.message().to_owned(),
    })?;
    Ok(meta.run_in_transaction)
}

/// Flyway's scripts: `V1_2__desc.sql` (version 1.2), its undo `U1_2__desc.sql`, and a
/// `V1_2__desc.sql.conf` whose `executeInTransaction=false` runs both outside a
/// transaction. Repeatable `R__` scripts are refused for now, by name.
fn flyway(dir: &Path) -> Result<Vec<Migration>, MigrationsError> {
    let mut ups: BTreeMap<Version, (String, PathBuf)> = BTreeMap::new();
    let mut undos: BTreeMap<Version, PathBuf> = BTreeMap::new();
    for (name, path) in entries(dir)? {
        let Some((kind, raw, desc)) = flyway_name(&name) else {
            continue;
        };
        if kind == 'R' {
            // Read by `flyway_repeatables`.
            continue;
        }
        if let Some(kind) = not_a_file(&path)? {
            return Err(MigrationsError::NotAFile { path, kind });
        }
        let v = version(&raw.replace('_', "."), VersionStyle::Dotted, &path)?;
        let first = match kind {
            'V' => ups.insert(v, (desc.to_owned(), path.clone())).map(|(_, p)| p),
            _ => undos.insert(v, path.clone()),
        };
        if let Some(first) = first {
            let (first, second) = if first <= path { (first, path) } else { (path, first) };
            return Err(DuplicateVersion {
                version: v,
                first,
                second,
            }
            .into());
        }
    }
    if let Some((_, path)) = undos.iter().find(|(v, _)| !ups.contains_key(v)) {
        return Err(MigrationsError::OrphanDown { path: path.clone() });
    }
    let mut out = Vec::with_capacity(ups.len());
    for (v, (desc, path)) in ups {
        let up = written(read(&path)?, &path)?;
        let down = match undos.get(&v) {
            Some(p) => Some(read(p)?),
            None => None,
        };
        let transactional = flyway_conf(&path)?;
        let mut m = Migration::new(v, desc, up, down, path);
        m.up.transactional &= transactional;
        if let Some(d) = m.down.as_mut() {
            d.transactional &= transactional;
        }
        out.push(m);
    }
    Ok(out)
}

/// `executeInTransaction` from a Flyway script's `.conf` file (true when there is none).
fn flyway_conf(script: &Path) -> Result<bool, MigrationsError> {
    let mut conf = script.as_os_str().to_owned();
    conf.push(".conf");
    let conf = PathBuf::from(conf);
    if !conf.exists() {
        return Ok(true);
    }
    for line in read(&conf)?.lines() {
        if let Some((key, value)) = line.split_once('=') {
            if key.trim() == "executeInTransaction" {
                return match value.trim() {
                    "true" => Ok(true),
                    "false" => Ok(false),
                    other => Err(MigrationsError::BadMarker {
                        path: conf,
                        why: format!("executeInTransaction is `{other}`: write true or false"),
                    }),
                };
            }
        }
    }
    Ok(true)
}
