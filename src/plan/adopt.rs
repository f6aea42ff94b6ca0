//! `adopt`: the fleetmig history that says exactly what another tool's history says, with
//! the files' names and checksums, or why a tenant's history cannot be taken as it is.

use std::collections::BTreeSet;

use crate::model::foreign::{ForeignRow, Tool};
use crate::model::migration::{Applied, Migration, MigrationSet, Version};
use crate::model::refusal::Refusal;

/// The rows to record and the version they put the tenant at. `rows` is the tool's table
/// (`None`: it has none); `applied` is fleetmig's own history, which must be empty or
/// already say the same (adopting twice changes nothing).
pub fn adopt(
    set: &MigrationSet,
    applied: &[Applied],
    tool: Tool,
    rows: Option<&[ForeignRow]>,
) -> Result<(Vec<Applied>, Version), Refusal> {
    let refuse = |why: String| Refusal::Foreign {
        tool: tool.name().to_owned(),
        table: tool.table().to_owned(),
        why,
    };
    let rows = rows.ok_or_else(|| refuse("no such table here: nothing to adopt".into()))?;
    let versions = recorded(set, tool, rows, &refuse)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn row(v: &str) -> ForeignRow {
        ForeignRow {
            version: v.into(),
            ok: true,
            kind: String::new(),
        }
    }

    fn versions(rows: &[Applied]) -> Vec<String> {
        rows.iter().map(|a| a.version.to_string()).collect()
    }

    #[test]
    fn each_tools_rows_become_the_files_history() {
        let set = crate::model::migration::test_set(&[true, true, true, true]);
        let (rows, at) = adopt(&set, &[], Tool::Sqlx, Some(&[row("1"), row("2"), row("4")])).unwrap();
        assert_eq!(
            (versions(&rows), at),
            (vec!["1".into(), "2".into(), "4".into()], Version::int(4))
        );
        assert_eq!(rows[0].checksum, set.get(Version::int(1)).unwrap().checksum.to_hex());
        // golang-migrate's one row is its current version.
        let (rows, _) = adopt(&set, &[], Tool::GolangMigrate, Some(&[row("3")])).unwrap();
        assert_eq!(versions(&rows), ["1", "2", "3"]);
        // Adopting again over the same history is a no-op; over another, refused.
        let (again, _) = adopt(&set, &rows, Tool::GolangMigrate, Some(&[row("3")])).unwrap();
        assert_eq!(again, rows);
        let err = adopt(&set, &rows[..1], Tool::GolangMigrate, Some(&[row("3")])).unwrap_err();
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
            let err = adopt(&set, &[], tool, rows.as_deref()).unwrap_err();
            assert!(err.to_string().contains(says), "{tool}: {err}");
        }
    }
}
