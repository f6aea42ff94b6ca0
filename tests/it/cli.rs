//! The command line as a newcomer meets it: the demo fleet of a fresh clone, `history`, `new`.

use std::path::Path;

use crate::support::{Project, sqlite_column};

const DEMO_TENANTS: [&str; 12] = [
    "acme",
    "globex",
    "initech",
    "umbrella",
    "hooli",
    "stark",
    "wayne",
    "wonka",
    "tyrell",
    "cyberdyne",
    "soylent",
    "oscorp",
];

/// A project holding copies of the repository's `tenants.yaml` and `migrations/`.
fn demo_project() -> Project {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let p = Project::new();
    std::fs::copy(root.join("tenants.yaml"), p.path().join("tenants.yaml")).unwrap();
    for entry in std::fs::read_dir(root.join("migrations")).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), p.path().join("migrations").join(entry.file_name())).unwrap();
    }
    p
}

/// The demo's migrations as `(version, name)`, read from the file names.
fn demo_migrations() -> Vec<(i64, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut out: Vec<(i64, String)> = std::fs::read_dir(root.join("migrations"))
        .unwrap()
        .filter_map(|e| {
            let file = e.unwrap().file_name().into_string().unwrap();
            let stem = file.strip_suffix(".up.sql")?;
            let (digits, name) = stem.split_once('_')?;
            Some((digits.parse().unwrap(), name.to_owned()))
        })
        .collect();
    out.sort();
    out
}

fn words_of<'a>(stdout: &'a str, id: &str) -> Vec<&'a str> {
    crate::support::tenant_line(stdout, id).split_whitespace().collect()
}

/// Every history row of a tenant, run id and time included, to prove nothing was rewritten.
fn full_history(p: &Project, id: &str) -> Vec<String> {
    sqlite_column(
        &p.db_path(id),
        "SELECT version || ' ' || name || ' ' || checksum || ' ' || applied_at || ' ' || run_id || ' ' || dirty \
         FROM fleetmig_history ORDER BY version",
    )
}

#[test]
fn demo_fleet_migrates_once_then_has_nothing_to_do() {
    let p = demo_project();
    let head = demo_migrations().last().unwrap().0;
    assert_eq!(head, 7);

    let up = p.run(&["up"]);
    assert_eq!(up.code, 0, "{up:#?}");
    assert!(
        up.stdout
            .contains("12 tenant(s): 12 changed, 0 already at the target, 0 failed, 0 skipped"),
        "{up:#?}"
    );
    for id in DEMO_TENANTS {
        assert_eq!(words_of(&up.stdout, id)[..6], [id, "0", "->", "7", "7", "applied"]);
        let versions = sqlite_column(
            &p.db_path(id),
            "SELECT CAST(version AS TEXT) FROM fleetmig_history ORDER BY version",
        );
        assert_eq!(versions, ["1", "2", "3", "4", "5", "6", "7"], "tenant {id}");
        let columns = sqlite_column(
            &p.db_path(id),
            "SELECT name FROM pragma_table_info('projects') ORDER BY cid",
        );
        assert!(columns.contains(&"name".to_owned()), "tenant {id}: {columns:?}");
    }
    let before: Vec<Vec<String>> = DEMO_TENANTS.iter().map(|id| full_history(&p, id)).collect();

    let again = p.run(&["up"]);
    assert_eq!(again.code, 0, "{again:#?}");
    assert!(
        again
            .stdout
            .contains("Nothing to do: all 12 tenant(s) already at the target"),
        "{again:#?}"
    );
    for id in DEMO_TENANTS {
        assert_eq!(words_of(&again.stdout, id), [id, "at", "7,", "nothing", "to", "do"]);
    }
    let after: Vec<Vec<String>> = DEMO_TENANTS.iter().map(|id| full_history(&p, id)).collect();
    assert_eq!(after, before);

    let status = p.run(&["status", "--format", "json"]);
    assert_eq!(status.code, 0, "{status:#?}");
    let doc: serde_json::Value = serde_json::from_str(&status.stdout).unwrap();
    assert_eq!(doc["head"], head);
    assert_eq!(doc["target"], head);
    let rows = doc["tenants"].as_array().unwrap();
    let ids: Vec<&str> = rows.iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(ids, DEMO_TENANTS);
    for row in rows {
        assert_eq!(row["state"], "current", "{row}");
        assert_eq!(row["version"], head, "{row}");
        assert_eq!(row["pending"], 0, "{row}");
    }
}

#[test]
fn history_lists_the_demo_migrations() {
    let p = demo_project();
    let expected = demo_migrations();
    assert_eq!(expected.len(), 7);

    let text = p.run(&["history"]);
    assert_eq!(text.code, 0, "{text:#?}");
    for (version, name) in &expected {
        let words = words_of(&text.stdout, &version.to_string());
        assert_eq!(
            words[..3],
            [version.to_string().as_str(), name, "yes"],
            "{}",
            text.stdout
        );
    }

    let json = p.run(&["history", "--format", "json"]);
    assert_eq!(json.code, 0, "{json:#?}");
    let doc: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    let listed: Vec<(i64, String)> = doc["migrations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["version"].as_i64().unwrap(), m["name"].as_str().unwrap().to_owned()))
        .collect();
    assert_eq!(listed, expected);
    for m in doc["migrations"].as_array().unwrap() {
        let checksum = m["checksum"].as_str().unwrap();
        assert_eq!(checksum.len(), 64, "{m}");
        assert!(checksum.bytes().all(|b| b.is_ascii_hexdigit()), "{m}");
    }
    assert!(!p.path().join("data").exists(), "`history` must touch no tenant");
}

#[test]
fn new_writes_the_next_numbered_pair() {
    let p = demo_project();
    let run = p.run(&["new", "add_things"]);
    assert_eq!(run.code, 0, "{run:#?}");
    let up = p.path().join("migrations/0008_add_things.up.sql");
    let down = p.path().join("migrations/0008_add_things.down.sql");
    assert!(up.is_file() && down.is_file(), "{run:#?}");
    let listed: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(listed.len(), 2, "{run:#?}");
    assert!(listed[0].ends_with("0008_add_things.up.sql"), "{run:#?}");
    assert!(listed[1].ends_with("0008_add_things.down.sql"), "{run:#?}");

    let history = p.run(&["history", "--format", "json"]);
    assert_eq!(history.code, 0, "{history:#?}");
    let doc: serde_json::Value = serde_json::from_str(&history.stdout).unwrap();
    let newest = doc["migrations"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(newest["version"], 8, "{newest}");
    assert_eq!(newest["name"], "add_things", "{newest}");
}
