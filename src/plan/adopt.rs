//! `adopt`: the fleetmig history that says exactly what another tool's history says, with
//! the files' names and checksums, or why a tenant's history cannot be taken as it is.

use std::collections::BTreeSet;

use crate::model::foreign::{Adoption, ForeignRow, RevisionMap, Tool};
use crate::model::migration::{Applied, Migration, MigrationSet, Version};
use crate::model::refusal::Refusal;

/// The rows to record and the version they put the tenant at. `rows` is the tool's table
/// (`None`: it has none); `applied` is fleetmig's own history, which must be empty or
/// already say the same (adopting twice changes nothing).
pub fn adopt(
    set: &MigrationSet,
    applied: &[Applied],
    from: Adoption<'_>,
    rows: Option<&[ForeignRow]>,
) -> Result<(Vec<Applied>, Version), Refusal> {
    let tool = from.tool();
    let refuse = |why: String| Refusal::Foreign {
        tool: tool.name().to_owned(),
        table: tool.table().to_owned(),
        why,
    };
    let rows = rows.ok_or_else(|| refuse("no such table here: nothing to adopt".into()))?;
    let versions = match from.map() {
        Some(map) => revisions(set, map, rows, &refuse)?,
        None => recorded(set, tool, rows, &refuse)?,
    };
    let adopted: Vec<Applied> = set
        .iter()
        .filter(|m| versions.contains(&m.version))
        .map(Migration::applied)
        .collect();
    let at = adopted.last().map_or(Version::ZERO, |a| a.version);
    if !applied.is_empty() && applied != adopted.as_slice() {
        let have: Vec<String> = applied.iter().map(|a| a.version.to_string()).collect();
        return Err(refuse(format!(
            "fleetmig_history already records other migrations ({}): adopt takes a tenant fleetmig has not migrated",
            have.join(", ")
        )));
    }
    Ok((adopted, at))
}

/// The versions the tool's rows say are applied, each one a file of the set.
fn recorded(
    set: &MigrationSet,
    tool: Tool,
    rows: &[ForeignRow],
    refuse: &dyn Fn(String) -> Refusal,
) -> Result<BTreeSet<Version>, Refusal> {
    if let Some(bad) = rows.iter().find(|r| !r.ok) {
        let what = if tool == Tool::GolangMigrate { "dirty" } else { "failed" };
        return Err(refuse(format!(
            "version {} is marked {what}: the tool stopped part way there",
            bad.version
        )));
    }
    if let Some(undo) = rows.iter().find(|r| r.kind.starts_with("UNDO")) {
        return Err(refuse(format!(
            "version {} was undone ({}): adopt cannot tell what is applied; leave the table with only applied versions",
            undo.version, undo.kind
        )));
    }
    let mut versions = BTreeSet::new();
    let mut missing = Vec::new();
    for row in rows {
        let v = set.parse_version(&row.version).map_err(|e| refuse(e.to_string()))?;
        if set.get(v).is_none() {
            missing.push(row.version.clone());
            continue;
        }
        // golang-migrate keeps only its current version, and a Flyway baseline stands for
        // everything up to it: every migration at or below is applied.
        if tool == Tool::GolangMigrate || row.kind == "BASELINE" {
            versions.extend(set.iter().map(|m| m.version).filter(|m| *m <= v));
        } else {
            versions.insert(v);
        }
    }
    if !missing.is_empty() {
        return Err(refuse(format!(
            "it records version(s) that no migration file has: {}",
            missing.join(", ")
        )));
    }
    Ok(versions)
}

/// The versions an Alembic table's rows stand for: its one head revision read through the
/// map, and every migration at or below its version. No row: nothing applied yet.
fn revisions(
    set: &MigrationSet,
    map: &RevisionMap,
    rows: &[ForeignRow],
    refuse: &dyn Fn(String) -> Refusal,
) -> Result<BTreeSet<Version>, Refusal> {
    let file = map.file.display();
    let head = match rows {
        [] => return Ok(BTreeSet::new()),
        [head] => &head.version,
        heads => {
            let mut names: Vec<&str> = heads.iter().map(|r| r.version.as_str()).collect();
            names.sort_unstable();
            return Err(refuse(format!(
                "{} heads ({}): Alembic's branches are not merged, and fleetmig's history is one line; \
                 merge them (`alembic merge`) and upgrade first",
                heads.len(),
                names.join(", ")
            )));
        }
    };
    let Some(&v) = map.versions.get(head) else {
        return Err(refuse(format!(
            "revision {head} is not in the map `{file}`: add it with the version it stands for"
        )));
    };
    if v != Version::ZERO && set.get(v).is_none() {
        return Err(refuse(format!(
            "revision {head} maps to version {v} in `{file}`, which no migration file has"
        )));
    }
    Ok(set.iter().map(|m| m.version).filter(|m| *m <= v).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::foreign::MapMisuse;

    fn row(v: &str) -> ForeignRow {
        ForeignRow {
            version: v.into(),
            ok: true,
            kind: String::new(),
        }
    }

    fn of(tool: Tool) -> Adoption<'static> {
        Adoption::new(tool, None).unwrap()
    }

    fn versions(rows: &[Applied]) -> Vec<String> {
        rows.iter().map(|a| a.version.to_string()).collect()
    }

    #[test]
    fn each_tools_rows_become_the_files_history() {
        let set = crate::model::migration::test_set(&[true, true, true, true]);
        let (rows, at) = adopt(&set, &[], of(Tool::Sqlx), Some(&[row("1"), row("2"), row("4")])).unwrap();
        assert_eq!(
            (versions(&rows), at),
            (vec!["1".into(), "2".into(), "4".into()], Version::int(4))
        );
        assert_eq!(rows[0].checksum, set.get(Version::int(1)).unwrap().checksum.to_hex());
        // golang-migrate's one row is its current version.
        let (rows, _) = adopt(&set, &[], of(Tool::GolangMigrate), Some(&[row("3")])).unwrap();
        assert_eq!(versions(&rows), ["1", "2", "3"]);
        // Adopting again over the same history is a no-op; over another, refused.
        let (again, _) = adopt(&set, &rows, of(Tool::GolangMigrate), Some(&[row("3")])).unwrap();
        assert_eq!(again, rows);
        let err = adopt(&set, &rows[..1], of(Tool::GolangMigrate), Some(&[row("3")])).unwrap_err();
        assert!(
            err.to_string().contains("already records other migrations (1)"),
            "{err}"
        );
    }

    #[test]
    fn failed_dirty_undone_unknown_or_missing_histories_are_refused_by_name() {
        let set = crate::model::migration::test_set(&[true, true]);
        let failed = ForeignRow { ok: false, ..row("2") };
        let undone = ForeignRow {
            kind: "UNDO_SQL".into(),
            ..row("2")
        };
        for (tool, rows, says) in [
            (
                Tool::Sqlx,
                Some(vec![row("1"), failed.clone()]),
                "version 2 is marked failed",
            ),
            (Tool::GolangMigrate, Some(vec![failed]), "version 2 is marked dirty"),
            (
                Tool::Flyway,
                Some(vec![row("1"), undone]),
                "version 2 was undone (UNDO_SQL)",
            ),
            (
                Tool::Diesel,
                Some(vec![row("1"), row("7"), row("9")]),
                "no migration file has: 7, 9",
            ),
            (Tool::Dbmate, None, "`schema_migrations`: no such table here"),
        ] {
            let err = adopt(&set, &[], of(tool), rows.as_deref()).unwrap_err();
            assert!(err.to_string().contains(says), "{tool}: {err}");
        }
    }

    fn alembic_map(pairs: &[(&str, i64)]) -> RevisionMap {
        RevisionMap {
            file: "revisions.yaml".into(),
            versions: pairs.iter().map(|(r, v)| ((*r).to_owned(), Version::int(*v))).collect(),
        }
    }

    #[test]
    fn an_alembic_head_revision_takes_every_migration_up_to_its_mapped_version() {
        let set = crate::model::migration::test_set(&[true, true, true]);
        let map = alembic_map(&[("1975ea83b712", 1), ("ae1027a6acf", 2), ("27c6a30d7c24", 0)]);
        let from = Adoption::new(Tool::Alembic, Some(&map)).unwrap();
        let (rows, at) = adopt(&set, &[], from, Some(&[row("ae1027a6acf")])).unwrap();
        assert_eq!((versions(&rows), at), (vec!["1".into(), "2".into()], Version::int(2)));
        // An empty alembic_version, or a head mapped to 0: nothing applied, nothing recorded.
        for rows in [vec![], vec![row("27c6a30d7c24")]] {
            let (none, at) = adopt(&set, &[], from, Some(&rows)).unwrap();
            assert_eq!((none.len(), at), (0, Version::ZERO));
        }
    }

    #[test]
    fn alembic_branches_unmapped_revisions_and_versions_without_a_file_are_refused_by_name() {
        let set = crate::model::migration::test_set(&[true, true]);
        let map = alembic_map(&[("1975ea83b712", 1), ("ae1027a6acf", 7)]);
        let from = Adoption::new(Tool::Alembic, Some(&map)).unwrap();
        for (rows, says) in [
            (
                vec![row("ae1027a6acf"), row("1975ea83b712")],
                "`alembic_version`: 2 heads (1975ea83b712, ae1027a6acf)",
            ),
            (
                vec![row("3f2e1d0c9b8a")],
                "revision 3f2e1d0c9b8a is not in the map `revisions.yaml`",
            ),
            (
                vec![row("ae1027a6acf")],
                "revision ae1027a6acf maps to version 7 in `revisions.yaml`, which no migration file has",
            ),
        ] {
            let err = adopt(&set, &[], from, Some(&rows)).unwrap_err();
            assert!(err.to_string().contains(says), "{err}");
        }
        let err = adopt(&set, &[], from, None).unwrap_err();
        assert!(err.to_string().contains("no such table here"), "{err}");
    }

    #[test]
    fn only_alembic_takes_a_map_and_it_always_needs_one() {
        let map = alembic_map(&[]);
        assert_eq!(Adoption::new(Tool::Alembic, None), Err(MapMisuse::Missing));
        assert_eq!(
            Adoption::new(Tool::Flyway, Some(&map)),
            Err(MapMisuse::NotAlembic(Tool::Flyway))
        );
        let from = Adoption::new(Tool::Alembic, Some(&map)).unwrap();
        assert_eq!(from.to_string(), "--from alembic --map revisions.yaml");
    }
}
