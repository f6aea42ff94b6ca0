//! `--partition K/N`: N runners that share nothing, not even a ledger, migrate a fleet
//! once between them, and keep each tenant's share when the fleet grows; `--canary-only`
//! runs the whole fleet's canaries in share 1 only.

use std::collections::BTreeSet;
use std::process::Child;

use crate::support::{Project, sqlite_rows};

/// A fleet of `n` SQLite tenants `t000`...: `t000` and `t001` are canaries.
fn fleet(p: &Project, n: usize) {
    let mut yaml = String::from("defaults: { url: \"sqlite://data/{id}.db\" }\ntenants:\n");
    for i in 0..n {
        let canary = if i < 2 { ", canary: true" } else { "" };
        yaml.push_str(&format!("  - {{ id: t{i:03}{canary} }}\n"));
    }
    p.fleet(&yaml);
}

/// Runs the four shares at once, each with its own ledger and report; their reports.
fn four_runners(p: &Project, round: &str) -> Vec<serde_json::Value> {
    let children: Vec<(String, Child)> = (1..=4)
        .map(|k| {
            let report = format!("{round}-{k}.json");
            let args = [
                "up",
                "--partition",
                &format!("{k}/4"),
                "--ledger",
                &format!("sqlite://share{k}.ledger.db"),
                "--report",
                &report,
            ];
            let child = p.command(&args).stdout(std::process::Stdio::null()).spawn().unwrap();
            (report, child)
        })
        .collect();
    children
        .into_iter()
        .map(|(report, mut child)| {
            assert!(child.wait().unwrap().success(), "{report}");
            let text = std::fs::read_to_string(p.path().join(&report)).unwrap();
            serde_json::from_str(&text).unwrap()
        })
        .collect()
}

/// (tenant, status) of each tenant of a report.
fn outcomes(report: &serde_json::Value) -> Vec<(String, String)> {
    report["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["id"].as_str().unwrap().to_owned(),
                t["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[test]
fn four_partitions_migrate_400_tenants_once_and_keep_their_shares_as_the_fleet_grows() {
    let p = Project::new();
    p.migration("0001_a.up.sql", "CREATE TABLE a (id INTEGER PRIMARY KEY);\n");
    fleet(&p, 400);
    let reports = four_runners(&p, "first");
    let shares: Vec<BTreeSet<String>> = reports
        .iter()
        .map(|r| outcomes(r).into_iter().map(|(id, _)| id).collect())
        .collect();
    let all: BTreeSet<&String> = shares.iter().flatten().collect();
    assert_eq!(all.len(), 400, "every tenant in some share");
    assert_eq!(
        shares.iter().map(BTreeSet::len).sum::<usize>(),
        400,
        "no tenant in two shares"
    );
    for s in &shares {
        assert!(
            (60..=140).contains(&s.len()),
            "uneven shares: {:?}",
            shares.iter().map(BTreeSet::len).collect::<Vec<_>>()
        );
    }
    // Each tenant was migrated exactly once, by its share's run.
    for (k, r) in reports.iter().enumerate() {
        let run_id = r["run_id"].as_str().unwrap();
        for (id, status) in outcomes(r) {
            assert_eq!(status, "succeeded", "{id}");
            let rows = sqlite_rows(&p.db_path(&id), "SELECT run_id FROM fleetmig_history");
            assert_eq!(rows, [[Some(run_id.to_owned())]], "{id} in share {}", k + 1);
        }
    }

    // Forty more tenants: the first 400 stay in their shares, each new one lands in one.
    fleet(&p, 440);
    let again = four_runners(&p, "second");
    for (k, r) in again.iter().enumerate() {
        let ids: BTreeSet<String> = outcomes(r).into_iter().map(|(id, _)| id).collect();
        let old: BTreeSet<String> = ids.iter().filter(|id| id.as_str() < "t400").cloned().collect();
        assert_eq!(old, shares[k], "share {} moved tenants", k + 1);
    }
    let p = &p;
    let migrated: Vec<String> = again
        .iter()
        .flat_map(|r| {
            let run_id = r["run_id"].as_str().unwrap().to_owned();
            outcomes(r).into_iter().filter_map(move |(id, _)| {
                let rows = sqlite_rows(&p.db_path(&id), "SELECT run_id FROM fleetmig_history");
                (rows == [[Some(run_id.clone())]]).then_some(id)
            })
        })
        .collect();
    let expected: Vec<String> = (400..440).map(|i| format!("t{i:03}")).collect();
    let mut migrated = migrated;
    migrated.sort();
    assert_eq!(migrated, expected, "only the new tenants ran, once each");
}

#[test]
fn canary_only_runs_the_whole_fleets_canaries_in_share_one_and_an_empty_share_is_no_error() {
    let p = Project::new();
    p.migration("0001_a.up.sql", "CREATE TABLE a (id INTEGER PRIMARY KEY);\n");
    fleet(&p, 40);
    let other = p.run(&["up", "--partition", "3/4", "--canary-only"]);
    assert_eq!(other.code, 0, "{}", other.all());
    assert!(
        other.stderr.contains("the canary wave runs in share 1"),
        "{}",
        other.stderr
    );
    assert!(!p.db_path("t000").exists());
    let first = p.run(&["up", "--partition", "1/4", "--canary-only", "--report", "canary.json"]);
    assert_eq!(first.code, 0, "{}", first.all());
    let text = std::fs::read_to_string(p.path().join("canary.json")).unwrap();
    let report: serde_json::Value = serde_json::from_str(&text).unwrap();
    let ids: Vec<String> = outcomes(&report).into_iter().map(|(id, _)| id).collect();
    assert_eq!(ids, ["t000", "t001"], "both canaries, whatever their shares");
    assert!(!p.db_path("t002").exists(), "no other tenant touched");

    // More shares than tenants: a share with none has nothing to do.
    fleet(&p, 3);
    let empty = (1..=50)
        .map(|k| p.run(&["status", "--partition", &format!("{k}/50")]))
        .find(|r| r.stderr.contains("holds none of the fleet's 3 tenant(s)"))
        .expect("some share of 50 holds none of 3 tenants");
    assert_eq!(empty.code, 0, "{}", empty.all());
    let bad = p.run(&["status", "--partition", "5/4"]);
    assert_eq!(bad.code, 2, "{}", bad.all());
    assert!(bad.stderr.contains("K/N"), "{}", bad.stderr);
}

/// Runs `script` with `sh -c` in the project, with fleetmig on the PATH and `env`.
fn shell(p: &Project, script: &str, env: &[(&str, String)]) {
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_fleetmig")).parent().unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    let out = std::process::Command::new("sh")
        .current_dir(p.path())
        .env("PATH", path)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .args(["-c", script])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{script}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn example(name: &str) -> serde_yaml::Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples/kubernetes")
        .join(name);
    serde_yaml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Every tenant of a 60-tenant fleet has the migration, applied once.
fn all_migrated_once(p: &Project) {
    for i in 0..60 {
        let rows = sqlite_rows(
            &p.db_path(&format!("t{i:03}")),
            "SELECT CAST(count(*) AS TEXT) FROM fleetmig_history",
        );
        assert_eq!(rows, [[Some("1".to_owned())]], "t{i:03}");
    }
}

/// The README's Kubernetes Indexed Job and CI matrix, run as written.
#[test]
fn the_kubernetes_job_and_the_ci_matrix_examples_migrate_the_fleet_once() {
    let job = example("migrate-job.yaml");
    let container = &job["spec"]["template"]["spec"]["containers"][0];
    let script = container["args"][0].as_str().unwrap();
    let completions = job["spec"]["completions"].as_u64().unwrap();
    let p = Project::new();
    p.migration("0001_a.up.sql", "CREATE TABLE a (id INTEGER PRIMARY KEY);\n");
    fleet(&p, 60);
    for index in 0..completions {
        shell(&p, script, &[("JOB_COMPLETION_INDEX", index.to_string())]);
    }
    all_migrated_once(&p);

    let matrix = example("github-matrix.yml");
    let p = Project::new();
    p.migration("0001_a.up.sql", "CREATE TABLE a (id INTEGER PRIMARY KEY);\n");
    fleet(&p, 60);
    let canaries = matrix["jobs"]["canaries"]["steps"][1]["run"].as_str().unwrap();
    shell(&p, canaries, &[]);
    assert!(p.db_path("t000").exists() && !p.db_path("t002").exists());
    let shares = &matrix["jobs"]["shares"];
    let run = shares["steps"][1]["run"].as_str().unwrap();
    for share in shares["strategy"]["matrix"]["share"].as_sequence().unwrap() {
        let share = share.as_u64().unwrap().to_string();
        shell(&p, &run.replace("${{ matrix.share }}", &share), &[]);
    }
    all_migrated_once(&p);
}
