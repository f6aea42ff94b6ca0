//! The migrations folder: `NNNN_name.up.sql` and optional `NNNN_name.down.sql`.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::model::migration::{DuplicateVersion, Migration, MigrationSet, Script, Version};

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
        why: String,
    },
    #[error("`{}` is not a regular file ({kind}): a migration must be a plain file", path.display())]
    NotAFile { path: PathBuf, kind: &'static str },
    #[error("`{}` holds a NUL byte at byte offset {offset}: a migration is SQL text", path.display())]
    NulByte { path: PathBuf, offset: usize },
    #[error("`{}` is not UTF-8 text: invalid byte at byte offset {offset}", path.display())]
    NotUtf8 { path: PathBuf, offset: usize },
    #[error("`{}`: {why}", path.display())]
    BadMarker { path: PathBuf, why: String },
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
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Up,
    Down,
}

/// `(version, name, kind)` for a file name that fits; otherwise why not (empty when the
/// name is simply not of the form, a `: reason` when there is more to say).
fn parse_name(file: &str) -> Result<(Version, &str, Kind), String> {
    let plain = || String::new();
    if file.trim() != file {
        return Err(": the name begins or ends with white space".into());
    }
    let (stem, kind) = if let Some(stem) = file.strip_suffix(".up.sql") {
        (stem, Kind::Up)
    } else if let Some(stem) = file.strip_suffix(".down.sql") {
        (stem, Kind::Down)
    } else {
        let lower = file.to_ascii_lowercase();
        if lower.ends_with(".up.sql") || lower.ends_with(".down.sql") {
            return Err(": the suffix must be lowercase, `.up.sql` or `.down.sql`".into());
        }
        return Err(plain());
    };
    let (digits, name) = stem.split_once('_').ok_or_else(plain)?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) || !is_name(name) {
        return Err(plain());
    }
    match digits.parse::<i64>() {
        Ok(0) => Err(": version 0 means \"nothing applied\"; number migrations from 1".into()),
        Ok(version) => Ok((Version(version), name, kind)),
        Err(_) => Err(format!(": version {digits} is past the largest version, {}", i64::MAX)),
    }
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
fn read(path: &Path) -> Result<String, MigrationsError> {
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
fn not_a_file(path: &Path) -> Result<Option<&'static str>, MigrationsError> {
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
pub fn load(dir: &Path) -> Result<MigrationSet, MigrationsError> {
    if !dir.is_dir() {
        return Err(MigrationsError::MissingDir { dir: dir.to_owned() });
    }
    let entries = fs::read_dir(dir).map_err(|source| MigrationsError::Read {
        path: dir.to_owned(),
        source,
    })?;
    let mut ups: BTreeMap<(Version, String), PathBuf> = BTreeMap::new();
    let mut downs: BTreeMap<(Version, String), PathBuf> = BTreeMap::new();
    for entry in entries {
        let entry = entry.map_err(|source| MigrationsError::Read {
            path: dir.to_owned(),
            source,
        })?;
        let path = entry.path();
        let file = entry.file_name().to_string_lossy().into_owned();
        if file.starts_with('.') || !looks_like_migration(&file) {
            continue;
        }
        let kind_of_file = not_a_file(&path)?;
        let parsed = parse_name(&file);
        // A folder is left alone unless it has a migration's very name: then the migration
        // would be silently missing.
        if kind_of_file == Some("a folder") && parsed.is_err() {
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
        let down = match downs.get(&(version, name.clone())) {
            Some(down_path) => Some(read_script(down_path)?),
            None => None,
        };
        migrations.push(Migration::new(version, name, up, down, path));
    }
    Ok(MigrationSet::new(migrations)?)
}

/// Writes the next migration's up and down files; returns their paths.
pub fn create(dir: &Path, set: &MigrationSet, name: &str) -> Result<(PathBuf, PathBuf), MigrationsError> {
    let name = name.trim().replace([' ', '-'], "_").to_lowercase();
    if !is_name(&name) {
        return Err(MigrationsError::BadName { name });
    }
    let Some(next) = set.head().0.checked_add(1) else {
        let path = set.iter().last().map(|m| m.path.clone()).unwrap_or_default();
        return Err(MigrationsError::NoNextVersion { path });
    };
    let width = set
        .iter()
        .filter_map(|m| m.path.file_name()?.to_str()?.split_once('_').map(|(d, _)| d.len()))
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
            "-- {stem}: up\n-- Add a first line `-- fleetmig: no-transaction` to run it outside a transaction.\n\n"
        ),
    )?;
    write(
        &down,
        format!(
            "-- {stem}: down\n-- Undo the up script here. A down script with only comments makes the migration irreversible.\n"
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
        let err = create(dir.path(), &set, "next").unwrap_err().to_string();
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
        assert!(set.get(Version(1)).unwrap().is_reversible());
        assert!(!set.get(Version(2)).unwrap().is_reversible());
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
        assert!(set.get(Version(1)).unwrap().up.rerun_if_dirty);
        assert!(!set.get(Version(2)).unwrap().up.transactional);
    }

    #[test]
    fn misnamed_and_orphaned_files_are_errors_naming_the_file() {
        let dir = dir_with(&[("0001_users.sql", "")]);
        let err = load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("0001_users.sql` does not fit"), "{err}");

        let dir = dir_with(&[("0001_a.up.sql", ""), ("0001_b.down.sql", "")]);
        let err = load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("0001_b.down.sql` has no up script"), "{err}");

        let dir = dir_with(&[("0001_a.up.sql", ""), ("001_b.up.sql", "")]);
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
        assert!(load(dir.path()).unwrap().is_empty());
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
        let (up, down) = create(dir.path(), &set, "Add email").unwrap();
        assert!(up.ends_with("0002_add_email.up.sql"));
        assert!(down.ends_with("0002_add_email.down.sql"));
        let set = load(dir.path()).unwrap();
        assert_eq!(set.head(), Version(2));
        assert!(!set.get(Version(2)).unwrap().is_reversible());
    }
}
