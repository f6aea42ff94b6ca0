//! The migrations folder: `NNNN_name.up.sql` and optional `NNNN_name.down.sql`.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::model::migration::{DuplicateVersion, Migration, MigrationSet, Version};

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
    #[error("`{}` does not fit the name NNNN_name.up.sql or NNNN_name.down.sql", path.display())]
    Misnamed { path: PathBuf },
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
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Up,
    Down,
}

/// `(version, name, kind)` for a file name that fits, `None` otherwise.
fn parse_name(file: &str) -> Option<(Version, &str, Kind)> {
    let (stem, kind) = if let Some(stem) = file.strip_suffix(".up.sql") {
        (stem, Kind::Up)
    } else {
        (file.strip_suffix(".down.sql")?, Kind::Down)
    };
    let (digits, name) = stem.split_once('_')?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) || !is_name(name) {
        return None;
    }
    let version = digits.parse::<i64>().ok().filter(|v| *v > 0)?;
    Some((Version(version), name, kind))
}

fn is_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn read(path: &Path) -> Result<String, MigrationsError> {
    fs::read_to_string(path).map_err(|source| MigrationsError::Read {
        path: path.to_owned(),
        source,
    })
}

/// Reads every migration in `dir`. Files not ending in `.sql`, hidden files and folders are
/// left alone; a `.sql` file whose name does not fit is an error.
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
        if file.starts_with('.') || !file.ends_with(".sql") || path.is_dir() {
            continue;
        }
        let (version, name, kind) =
            parse_name(&file).ok_or_else(|| MigrationsError::Misnamed { path: path.clone() })?;
        let key = (version, name.to_owned());
        match kind {
            Kind::Up => ups.insert(key, path),
            Kind::Down => downs.insert(key, path),
        };
    }
    if let Some(path) = downs.iter().find(|(key, _)| !ups.contains_key(key)).map(|(_, p)| p) {
        return Err(MigrationsError::OrphanDown { path: path.clone() });
    }
    let mut migrations = Vec::with_capacity(ups.len());
    for ((version, name), path) in ups {
        let up = read(&path)?;
        let down = match downs.get(&(version, name.clone())) {
            Some(down_path) => Some(read(down_path)?),
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
    let next = set.head().0 + 1;
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
