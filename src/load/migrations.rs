//! The migrations folder: `NNNN_name.up.sql` and optional `NNNN_name.down.sql`.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::layouts;
use crate::model::fleet::Engine;
use crate::model::migration::{DuplicateVersion, Layout, Migration, MigrationSet, Script, Version};
use crate::model::sets::Sets;

/// What can be wrong with a migrations folder. Each names the file or folder.
#[derive(Debug, thiserror::Error)]
pub enum MigrationsError {
    #[error("migrations folder `{}` not found", dir.display())]
    MissingDir { dir: PathBuf },
    #[error("reading `{}`", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("`{}` does not fit the name NNNN_name.up.sql or NNNN_name.down.sql{why}", path.display())]
    Misnamed {
        path: PathBuf,
        /// Why, when it is more than "it does not fit": `: ` and the reason, or empty.
        why: Misfit,
    },
    #[error("`{}` is not a regular file ({kind}): a migration must be a plain file", path.display())]
    NotAFile { path: PathBuf, kind: &'static str },
    #[error("`{}` holds a NUL byte at byte offset {offset}: a migration is SQL text", path.display())]
    NulByte { path: PathBuf, offset: usize },
    #[error("`{}` is not UTF-8 text: invalid byte at byte offset {offset}", path.display())]
    NotUtf8 { path: PathBuf, offset: usize },
    #[error("`{}`: {why}", path.display())]
    BadMarker { path: PathBuf, why: String },
    #[error(
        "`{}` holds no SQL statement, only comments: write the migration in it (or remove it and its down script). An empty migration would be recorded as applied, and writing it afterwards would leave every tenant that applied it drifted",
        path.display()
    )]
    NoStatement { path: PathBuf },
    #[error("down script `{}` has no up script beside it", path.display())]
    OrphanDown { path: PathBuf },
    #[error(transparent)]
    Duplicate(#[from] DuplicateVersion),
    #[error("writing `{}`", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("`{name}` is not a migration name: use letters, digits and `_`")]
    BadName { name: String },
    #[error("the newest migration, `{}`, has the largest version there is: no migration can follow it", path.display())]
    NoNextVersion { path: PathBuf },
    #[error("`{}` holds migrations of more than one layout: {found}; keep one layout per folder, or name it with --layout", dir.display())]
    Ambiguous { dir: PathBuf, found: String },
    #[error("`{}`: {why}", path.display())]
    BadVersion { path: PathBuf, why: String },
    #[error("migration folder `{}` has no up.sql", dir.display())]
    MissingUp { dir: PathBuf },
    #[error("`{}`: {what}", path.display())]
    Unsupported { path: PathBuf, what: String },
    #[error("`new` writes fleetmig's layout; this folder is {layout}'s: create its next migration with {layout}")]
    ForeignLayout { layout: Layout },
    #[error(
        "`{}` holds a folder per engine ({engines}) and migrations beside them ({beside}): move those into the engine folders",
        dir.display()
    )]
    MixedEngineFolders {
        dir: PathBuf,
        engines: String,
        beside: String,
    },
    #[error("`{}` and `{}` are both {engine} folders: keep one", first.display(), second.display())]
    SameEngine {
        first: PathBuf,
        second: PathBuf,
        engine: Engine,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Up,
    Down,
}

/// `(version, name, kind)` for a file name that fits; otherwise why not.
fn parse_name(file: &str) -> Result<(Version, &str, Kind), Misfit> {
    if file.trim() != file {
        return Err(Misfit::WhiteSpace);
    }
    let (stem, kind) = if let Some(stem) = file.strip_suffix(".up.sql") {
        (stem, Kind::Up)
    } else if let Some(stem) = file.strip_suffix(".down.sql") {
        (stem, Kind::Down)
    } else {
        let lower = file.to_ascii_lowercase();
        if lower.ends_with(".up.sql") || lower.ends_with(".down.sql") {
            return Err(Misfit::SuffixCase);
        }
        return Err(Misfit::NotTheForm);
    };
    let (digits, name) = stem.split_once('_').ok_or(Misfit::NotTheForm)?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) || !is_name(name) {
        return Err(Misfit::NotTheForm);
    }
    match digits.parse::<i64>() {
        Ok(0) => Err(Misfit::VersionZero),
        Ok(version) => Ok((Version::int(version), name, kind)),
        Err(_) => Err(Misfit::VersionTooLarge(digits.to_owned())),
    }
}

/// Why a file name does not fit `NNNN_name.up.sql`, shown after the name: empty when the
/// name is simply not of the form, `: ` and the reason when there is more to say.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Misfit {
    #[error("")]
    NotTheForm,
    #[error(": the name begins or ends with white space")]
    WhiteSpace,
    #[error(": the suffix must be lowercase, `.up.sql` or `.down.sql`")]
    SuffixCase,
    #[error(": version 0 means \"nothing applied\"; number migrations from 1")]
    VersionZero,
    #[error(": version {0} is past the largest version, {max}", max = i64::MAX)]
    VersionTooLarge(String),
}

/// True for a name fleetmig must either take as a migration or refuse: anything that looks
/// like one, in any case and with any suffix after `.up`/`.down` (`.up.SQL`, `.up.sq-`,
/// `x.up.sql `, `0002_b.up`), and anything that begins with a version (`0002_b.upsql`,
/// `0002_b.txt`). Other files (`README.md`) are left alone.
fn looks_like_migration(file: &str) -> bool {
    let lower = file.to_ascii_lowercase();
    let digits = lower.bytes().take_while(u8::is_ascii_digit).count();
    lower.contains(".sql")
        || lower.contains(".up.")
        || lower.contains(".down.")
        || lower.ends_with(".up")
        || lower.ends_with(".down")
        || (digits > 0 && lower.as_bytes().get(digits) == Some(&b'_'))
}

fn is_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// A migration's text. A NUL byte is refused here: SQLite's parser never gets past one
/// (the session spins), and no engine takes one in SQL text.
pub(super) fn read(path: &Path) -> Result<String, MigrationsError> {
    let bytes = fs::read(path).map_err(|source| MigrationsError::Read {
        path: path.to_owned(),
        source,
    })?;
    if let Some(offset) = bytes.iter().position(|b| *b == 0) {
        return Err(MigrationsError::NulByte {
            path: path.to_owned(),
            offset,
        });
    }
    String::from_utf8(bytes).map_err(|e| MigrationsError::NotUtf8 {
        path: path.to_owned(),
        offset: e.utf8_error().valid_up_to(),
    })
}

/// A script's text, its `-- fleetmig:` marker checked.
fn read_script(path: &Path) -> Result<String, MigrationsError> {
    let text = read(path)?;
    match Script::marker_problem(&text) {
        Some(why) => Err(MigrationsError::BadMarker {
            path: path.to_owned(),
            why,
        }),
        None => Ok(text),
    }
}

/// What a directory entry is, following a symbolic link; `None` for a regular file.
pub(super) fn not_a_file(path: &Path) -> Result<Option<&'static str>, MigrationsError> {
    let meta = fs::metadata(path).map_err(|source| MigrationsError::Read {
        path: path.to_owned(),
        source,
    })?;
    let t = meta.file_type();
    if t.is_file() {
        return Ok(None);
    }
    if t.is_dir() {
        return Ok(Some("a folder"));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if t.is_fifo() {
            return Ok(Some("a named pipe"));
        }
        if t.is_socket() {
            return Ok(Some("a socket"));
        }
        if t.is_char_device() || t.is_block_device() {
            return Ok(Some("a device"));
        }
    }
    Ok(Some("not a plain file"))
}

/// Reads every migration in `dir`. Hidden files and files that do not look like
/// migrations (`README.md`) are left alone; a file that looks like one (`.sql`, `.up.`,
/// `.down.` in its name, in any case, or a leading `NNNN_`) but does not fit the name
/// exactly is an error, and so is anything but a regular file under a migration's name (a
/// named pipe would block the load; a folder would be a missing migration). Two files with one version (`0002_b.up.sql`, `002_b.up.sql`) are an error
/// naming both.
/// An up script that holds no statement (only comments, as `new` writes it) is an error: it
/// would apply as a successful no-op, and the migration written into it afterwards would
/// never run on the tenants that recorded it, which would be drifted.
pub fn load(dir: &Path) -> Result<MigrationSet, MigrationsError> {
    load_with(dir, false)
}

/// Reads `dir` in `layout`, or in the layout [`layouts::detect`] finds when none is given.
pub fn load_in(dir: &Path, layout: Option<Layout>) -> Result<MigrationSet, MigrationsError> {
    let layout = match layout {
        Some(layout) => layout,
        None => layouts::detect(dir)?,
    };
    match layout {
        Layout::Fleetmig => load(dir),
        other => layouts::load(dir, other),
    }
}

/// The migrations in `dir`: a folder per engine when it has them (`postgres/`, `mysql/`
/// or `mariadb/`, `sqlite/`), each read as [`load_in`] does, else `dir` itself.
pub fn load_sets(dir: &Path, layout: Option<Layout>) -> Result<Sets, MigrationsError> {
    let folders = layouts::engine_folders(dir)?;
    if folders.is_empty() {
        return load_in(dir, layout).map(Sets::One);
    }
    let mut map = BTreeMap::new();
    for (engine, path) in folders {
        map.insert(engine, load_in(&path, layout)?);
    }
    Ok(Sets::PerEngine(map))
}

/// As [`load`], but an up script with no statement yet is taken: for `new`, which needs only
/// the versions, so several migrations can be created before they are written.
pub fn load_unwritten(dir: &Path) -> Result<MigrationSet, MigrationsError> {
    load_with(dir, true)
}

fn load_with(dir: &Path, unwritten_ok: bool) -> Result<MigrationSet, MigrationsError> {
    if !dir.is_dir() {
        return Err(MigrationsError::MissingDir { dir: dir.to_owned() });
    }
    let entries = fs::read_dir(dir).map_err(|source| MigrationsError::Read {
        path: dir.to_owned(),
        source,
    })?;
    let mut ups: BTreeMap<(Version, String), PathBuf> = BTreeMap::new();
    let mut downs: BTreeMap<(Version, String), PathBuf> = BTreeMap::new();
    let mut ignored = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| MigrationsError::Read {
            path: dir.to_owned(),
            source,
        })?;
        let path = entry.path();
        let file = entry.file_name().to_string_lossy().into_owned();
        if file.starts_with('.') || !looks_like_migration(&file) {
            ignored.push(path);
            continue;
        }
        let kind_of_file = not_a_file(&path)?;
        let parsed = parse_name(&file);
        // A folder is left alone unless it has a migration's very name: then the migration
        // would be silently missing.
        if kind_of_file == Some("a folder") && parsed.is_err() {
            ignored.push(path);
            continue;
        }
        let (version, name, kind) = parsed.map_err(|why| MigrationsError::Misnamed {
            path: path.clone(),
            why,
        })?;
        if let Some(kind) = kind_of_file {
            return Err(MigrationsError::NotAFile { path, kind });
        }
        let key = (version, name.to_owned());
        let same = match kind {
            Kind::Up => &mut ups,
            Kind::Down => &mut downs,
        };
        if let Some(first) = same.insert(key, path.clone()) {
            let (first, second) = if first <= path { (first, path) } else { (path, first) };
            return Err(DuplicateVersion { version, first, second }.into());
        }
    }
    if let Some(path) = downs.iter().find(|(key, _)| !ups.contains_key(key)).map(|(_, p)| p) {
        return Err(MigrationsError::OrphanDown { path: path.clone() });
    }
    let mut migrations = Vec::with_capacity(ups.len());
    for ((version, name), path) in ups {
        let up = read_script(&path)?;
        if !unwritten_ok && Script::new(up.clone()).is_blank() {
            return Err(MigrationsError::NoStatement { path });
        }
        let down = match downs.get(&(version, name.clone())) {
            Some(down_path) => Some(read_script(down_path)?),
            None => None,
        };
        migrations.push(Migration::new(version, name, up, down, path));
    }
    ignored.sort();
    Ok(MigrationSet::new(migrations)?.with_layout(Layout::Fleetmig, ignored))
}

/// The digits of a file's version, as written (`0007`, `20240101120000`).
fn version_digits(path: &Path) -> Option<&str> {
    path.file_name()?.to_str()?.split_once('_').map(|(d, _)| d)
}

/// The length of `digits` when they read as a UTC time stamp, `YYYYMMDDHHMMSS` (sqlx,
/// Rails, golang-migrate) or `YYYYMMDDHHMM`; `None` for a sequence number.
fn timestamp_len(digits: &str) -> Option<usize> {
    if !matches!(digits.len(), 12 | 14) || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let part = |at: usize| digits[at..at + 2].parse::<u32>().unwrap_or(99);
    let year = digits[..4].parse::<u32>().unwrap_or(0);
    let second_ok = digits.len() == 12 || part(12) < 60;
    let plausible = (1970..=9999).contains(&year)
        && (1..=12).contains(&part(4))
        && (1..=31).contains(&part(6))
        && part(8) < 24
        && part(10) < 60
        && second_ok;
    plausible.then_some(digits.len())
}

/// `now` in UTC as the first `len` digits of `YYYYMMDDHHMMSS`.
fn timestamp(now: SystemTime, len: usize) -> Option<i64> {
    let digits: String = humantime::format_rfc3339_seconds(now)
        .to_string()
        .chars()
        .filter(char::is_ascii_digit)
        .take(len)
        .collect();
    digits.parse().ok()
}

/// Writes the next migration's up and down files, to be filled in; returns their paths.
/// The version follows the newest one's kind: where that is a time stamp, `now` (UTC, as
/// many digits), or one past the newest if the clock is behind it; otherwise the newest
/// plus one, zero-padded as wide as the folder's widest.
pub fn create(
    dir: &Path,
    set: &MigrationSet,
    name: &str,
    now: SystemTime,
) -> Result<(PathBuf, PathBuf), MigrationsError> {
    let name = name.trim().replace([' ', '-'], "_").to_lowercase();
    if !is_name(&name) {
        return Err(MigrationsError::BadName { name });
    }
    let Some(after_head) = set.head().as_int().and_then(|n| n.checked_add(1)) else {
        let path = set.iter().last().map(|m| m.path.clone()).unwrap_or_default();
        return Err(MigrationsError::NoNextVersion { path });
    };
    let stamp = set
        .iter()
        .last()
        .and_then(|m| timestamp_len(version_digits(&m.path)?))
        .and_then(|len| timestamp(now, len));
    let next = stamp.map_or(after_head, |s| s.max(after_head));
    let width = set
        .iter()
        .filter_map(|m| version_digits(&m.path).map(str::len))
        .max()
        .unwrap_or(4);
    let stem = format!("{next:0width$}_{name}");
    let up = dir.join(format!("{stem}.up.sql"));
    let down = dir.join(format!("{stem}.down.sql"));
    let write = |path: &Path, text: String| {
        fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
            .and_then(|mut f| io::Write::write_all(&mut f, text.as_bytes()))
            .map_err(|source| MigrationsError::Write {
                path: path.to_owned(),
                source,
            })
    };
    write(
        &up,
        format!(
            "-- {stem}: up\n\
             -- TODO: write this migration's SQL below. Until this script holds a statement,\n\
             -- fleetmig refuses to load the migrations folder: an empty migration would be\n\
             -- recorded as applied. To run it outside a transaction, make the first line\n\
             -- `-- fleetmig: no-transaction`.\n\n"
        ),
    )?;
    write(
        &down,
        format!(
            "-- {stem}: down\n\
             -- TODO: write the SQL that undoes the up script below. Left with only comments,\n\
             -- the migration is irreversible: `down` refuses to go past it.\n\n"
        ),
    )?;
    Ok((up, down))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir_with(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in files {
            fs::write(dir.path().join(name), text).unwrap();
        }
        dir
    }

    #[test]
    fn no_migration_is_created_past_the_largest_version() {
        let dir = dir_with(&[("9223372036854775807_last.up.sql", "select 1;")]);
        let set = load(dir.path()).unwrap();
        let err = create(dir.path(), &set, "next", SystemTime::now())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("9223372036854775807_last.up.sql`, has the largest version"),
            "{err}"
        );
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn loads_pairs_and_leaves_other_files_alone() {
        let dir = dir_with(&[
            ("0001_users.up.sql", "create table users (id int);"),
            ("0001_users.down.sql", "drop table users;"),
            ("0002_index.up.sql", "create index i on users(id);"),
            ("README.md", "notes"),
        ]);
        let set = load(dir.path()).unwrap();
        assert_eq!(set.len(), 2);
        assert!(set.get(Version::int(1)).unwrap().is_reversible());
        assert!(!set.get(Version::int(2)).unwrap().is_reversible());
    }

    #[test]
    fn markers_that_would_be_silently_ignored_are_refused_naming_file_and_line() {
        for (text, expected) in [
            (
                "-- fleetmig: no-transactoin\nselect 1;",
                "unknown fleetmig option `no-transactoin`",
            ),
            (
                "-- fleetmig: rerun-if-dirty\nselect 1;",
                "`rerun-if-dirty` goes with `no-transaction`",
            ),
            (
                "--fleetmig: no-transaction\nselect 1;",
                "write the marker as `-- fleetmig: no-transaction`",
            ),
            ("-- FleetMig no-transaction\nselect 1;", "write the marker as"),
            (
                "-- header\n-- fleetmig: no-transaction\nselect 1;",
                "line 2: a `-- fleetmig:` marker counts only on the first line",
            ),
        ] {
            let dir = dir_with(&[("0001_a.up.sql", text)]);
            let err = load(dir.path()).unwrap_err().to_string();
            assert!(
                err.contains("0001_a.up.sql`: ") && err.contains(expected),
                "{text:?}: {err}"
            );
        }
        let dir = dir_with(&[
            ("0001_a.up.sql", "select 1;"),
            ("0001_a.down.sql", "-- fleetmig: no-transactio\nselect 1;"),
        ]);
        let err = load(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("0001_a.down.sql`: line 1: unknown fleetmig option"),
            "{err}"
        );

        let dir = dir_with(&[
            (
                "0001_a.up.sql",
                "-- fleetmig: no-transaction, rerun-if-dirty\nselect 1;",
            ),
            (
                "0002_b.up.sql",
                "select 1;\n-- fleetmigration notes, and fleetmig runs this\n--   fleetmig : no-transaction\n",
            ),
        ]);
        let err = load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("0002_b.up.sql`: line 3"), "{err}");
        let dir = dir_with(&[
            (
                "0001_a.up.sql",
                "-- fleetmig: no-transaction, rerun-if-dirty\nselect 1;",
            ),
            (
                "0002_b.up.sql",
                "  -- fleetmig: no-transaction  \nselect 1;\n-- fleetmig runs this outside a transaction\n",
            ),
        ]);
        let set = load(dir.path()).unwrap();
        assert!(set.get(Version::int(1)).unwrap().up.rerun_if_dirty);
        assert!(!set.get(Version::int(2)).unwrap().up.transactional);
    }

    #[test]
    fn misnamed_and_orphaned_files_are_errors_naming_the_file() {
        let dir = dir_with(&[("0001_users.sql", "")]);
        let err = load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("0001_users.sql` does not fit"), "{err}");

        let dir = dir_with(&[("0001_a.up.sql", ""), ("0001_b.down.sql", "")]);
        let err = load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("0001_b.down.sql` has no up script"), "{err}");

        let dir = dir_with(&[("0001_a.up.sql", "select 1;"), ("001_b.up.sql", "select 1;")]);
        let err = load(dir.path()).unwrap_err().to_string();
        assert!(err.starts_with("version 1 is used by both"), "{err}");

        let err = load(&dir.path().join("nope")).unwrap_err().to_string();
        assert!(err.contains("nope` not found"), "{err}");
    }

    #[test]
    fn one_version_spelled_twice_is_an_error_naming_both_files() {
        for (a, b) in [("0002_b.up.sql", "002_b.up.sql"), ("0002_b.down.sql", "002_b.down.sql")] {
            let dir = dir_with(&[("0002_b.up.sql", ""), (a, ""), (b, "")]);
            let err = load(dir.path()).unwrap_err().to_string();
            assert!(err.starts_with("version 2 is used by both"), "{err}");
            assert!(
                err.contains(&format!("{a}`")) && err.contains(&format!("{b}`")),
                "{err}"
            );
        }
    }

    #[test]
    fn near_miss_names_are_refused_saying_why() {
        let cases = [
            ("0001_a.up.SQL", "the suffix must be lowercase"),
            ("0001_a.UP.sql", "the suffix must be lowercase"),
            ("0001_a.up.sq-", "does not fit the name"),
            ("0001_a.up.sql ", "white space"),
            (" 0001_a.up.sql", "white space"),
            ("0001_a.up.sql~", "does not fit the name"),
            ("0000_a.up.sql", "version 0 means \"nothing applied\""),
            (
                "99999999999999999999_a.up.sql",
                "past the largest version, 9223372036854775807",
            ),
        ];
        for (file, why) in cases {
            let dir = dir_with(&[(file, "")]);
            let err = load(dir.path()).unwrap_err().to_string();
            assert!(err.contains(&format!("{file}` does not fit")), "{file:?}: {err}");
            assert!(err.contains(why), "{file:?}: {err}");
        }
        let dir = dir_with(&[("README.md", ""), ("notes.txt", ""), (".0001_a.up.sql.swp", "")]);
        let set = load(dir.path()).unwrap();
        assert!(set.is_empty());
        // Left alone and listed for `history --verbose`, a hidden editor file too.
        assert_eq!(
            set.ignored(),
            [
                dir.path().join(".0001_a.up.sql.swp"),
                dir.path().join("README.md"),
                dir.path().join("notes.txt")
            ]
        );
    }

    #[test]
    fn nul_bytes_and_non_utf8_text_are_refused_with_their_offset() {
        let dir = dir_with(&[("0001_a.up.sql", "select 1;\0select 2;")]);
        let err = load(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("0001_a.up.sql` holds a NUL byte at byte offset 9"),
            "{err}"
        );
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("0001_a.up.sql"), b"select '\xff';").unwrap();
        let err = load(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("0001_a.up.sql` is not UTF-8 text: invalid byte at byte offset 8"),
            "{err}"
        );
    }

    #[cfg(unix)]
    #[test]
    fn a_named_pipe_under_a_migration_name_is_refused_without_reading_it() {
        let dir = dir_with(&[("0001_a.up.sql", "")]);
        let fifo = dir.path().join("0002_b.up.sql");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status().unwrap();
        assert!(made.success());
        let err = load(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("0002_b.up.sql` is not a regular file (a named pipe)"),
            "{err}"
        );
    }

    #[test]
    fn create_writes_the_next_pair() {
        let dir = dir_with(&[("0001_a.up.sql", "select 1;")]);
        let set = load(dir.path()).unwrap();
        let (up, down) = create(dir.path(), &set, "Add email", SystemTime::now()).unwrap();
        assert!(up.ends_with("0002_add_email.up.sql"));
        assert!(down.ends_with("0002_add_email.down.sql"));
        let set = load_unwritten(dir.path()).unwrap();
        assert_eq!(set.head(), Version::int(2));
        assert!(!set.get(Version::int(2)).unwrap().is_reversible());
        let (up, _) = create(dir.path(), &set, "more", SystemTime::now()).unwrap();
        assert!(up.ends_with("0003_more.up.sql"), "{}", up.display());
    }

    #[test]
    fn an_up_script_with_no_statement_is_refused_naming_the_file() {
        for text in [
            "",
            "-- to do\n",
            " ;\n-- x\n/* y */ ;",
            "\u{feff}-- fleetmig: no-transaction\n",
        ] {
            let dir = dir_with(&[("0001_a.up.sql", "select 1;"), ("0002_b.up.sql", text)]);
            let err = load(dir.path()).unwrap_err().to_string();
            assert!(
                err.contains("0002_b.up.sql` holds no SQL statement") && err.contains("write the migration in it"),
                "{text:?}: {err}"
            );
            assert_eq!(load_unwritten(dir.path()).unwrap().head(), Version::int(2));
        }
        // A down script with no statement is allowed: it makes the migration irreversible.
        let dir = dir_with(&[("0001_a.up.sql", "select 1;"), ("0001_a.down.sql", "-- cannot undo\n;")]);
        assert!(!load(dir.path()).unwrap().get(Version::int(1)).unwrap().is_reversible());
        let dir = dir_with(&[("0001_a.up.sql", "-- set up\nselect 1; -- done")]);
        assert_eq!(load(dir.path()).unwrap().len(), 1);
    }

    #[test]
    fn timestamp_versions_get_a_timestamp_of_the_same_length() {
        let at = |t: &str| humantime::parse_rfc3339(t).unwrap();
        let now = at("2024-06-01T08:30:15Z");
        for (newest, expected) in [
            ("20240101120000_a.up.sql", "20240601083015_b.up.sql"),
            ("202401011200_a.up.sql", "202406010830_b.up.sql"),
            // The clock behind the newest: one past it, so the order holds.
            ("20250101120000_a.up.sql", "20250101120001_b.up.sql"),
            // A sequence number that is no time stamp (month 13).
            ("20241301120000_a.up.sql", "20241301120001_b.up.sql"),
            ("0007_a.up.sql", "0008_b.up.sql"),
            ("7_a.up.sql", "0008_b.up.sql"),
        ] {
            let dir = dir_with(&[("0001_first.up.sql", "select 1;"), (newest, "select 1;")]);
            let set = load(dir.path()).unwrap();
            let (up, _) = create(dir.path(), &set, "b", now).unwrap();
            assert_eq!(up.file_name().unwrap().to_str().unwrap(), expected, "after {newest}");
        }
    }
}
