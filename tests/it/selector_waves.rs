//! Waves that follow the organisation: `--waves` and `rollout.waves` selectors, mixed with
//! sizes, planned by `plan` and run by `up` on a SQLite fleet with labels, and kept by
//! `--resume`.

use serde_json::Value;

use crate::support::{Project, sqlite_column};

/// Nine SQLite tenants with four migrations: `c1` a canary; `e1`-`e4` in region eu
/// (`e1` enterprise), `u1`-`u4` in region us (`u2` enterprise). `rollout` is put in the
/// fleet file as it is.
fn labelled(rollout: &str) -> Project {
    let p = Project::new();
    for i in 1..=4 {
        p.migration(
            &format!("000{i}_t{i}.up.sql"),
            &format!("CREATE TABLE t{i} (id INTEGER);"),
        );
        p.migration(&format!("000{i}_t{i}.down.sql"), &format!("DROP TABLE t{i};"));
    }
    let tenants = [
        ("c1", "eu", "free", true),
        ("e1", "eu", "enterprise", false),
        ("u1", "us", "free", false),
        ("e2", "eu", "free", false),
        ("u2", "us", "enterprise", false),
        ("e3", "eu", "free", false),
        ("u3", "us", "free", false),
        ("e4", "eu", "free", false),
        ("u4", "us", "free", false),
    ];
    let list: String = tenants
        .iter()
        .map(|(id, region, tier, canary)| {
            format!("  - {{ id: {id}, canary: {canary}, labels: {{ region: {region}, tier: {tier} }} }}\n")
        })
        .collect();
    p.fleet(&format!(
        "defaults: {{ url: \"sqlite://data/{{id}}.db\" }}\n{rollout}tenants:\n{list}"
    ));
    std::fs::create_dir_all(p.path().join("data")).unwrap();
    p
}

fn json(stdout: &str) -> Value {
    serde_json::from_str(stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

/// Each tenant's wave, as `plan --format json` gives it.
fn waves_of(plan: &Value) -> Vec<(String, u64)> {
    plan["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["id"].as_str().unwrap().to_owned(), t["wave"].as_u64().unwrap()))
        .collect()
}

fn pairs(list: &[(&str, u64)]) -> Vec<(String, u64)> {
    list.iter().map(|(id, w)| (id.to_string(), *w)).collect()
}

#[test]
fn plan_shows_the_waves_the_fleet_files_selectors_make_and_names_one_that_matched_nothing() {
    let p = labelled(
        "rollout:\n  waves: [\"canary=true\", \"region=eu,tier!=enterprise\", \"region=mars\", 1, \"region=eu\", \"*\"]\n",
    );
    let plan = p.run(&["plan", "--format", "json"]);
    assert_eq!(plan.code, 0, "{}", plan.all());
    let doc = json(&plan.stdout);
    assert_eq!(
        waves_of(&doc),
        pairs(&[
            ("c1", 1),
            ("e2", 2),
            ("e3", 2),
            ("e4", 2),
            // The size counts every tenant after the canaries placed so far (3): 1 is
            // reached already, so it places none; `region=eu` takes e1.
            ("e1", 3),
            ("u1", 4),
            ("u2", 4),
            ("u3", 4),
            ("u4", 4),
        ])
    );
    let warnings: Vec<&str> = doc["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w.as_str().unwrap())
        .collect();
    assert!(
        warnings.contains(&"warning: wave selector `region=mars` matched no selected tenant"),
        "{warnings:?}"
    );
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("`canary=true` placed no tenant: its 1 tenant(s) are in earlier waves")),
        "{warnings:?}"
    );
    let steps = doc["wave_steps"].as_array().unwrap();
    assert_eq!(
        steps[2],
        serde_json::json!({"step": "region=mars", "matched": 0, "placed": 0, "wave": null})
    );
    assert_eq!(
        doc["waves"][1],
        serde_json::json!({"wave": 2, "canary": false, "tenants": 3, "step": "region=eu,tier!=enterprise"})
    );

    let text = p.run(&["plan"]);
    assert_eq!(text.code, 0, "{}", text.all());
    let shown: Vec<Vec<&str>> = text
        .stdout
        .lines()
        .skip_while(|l| !l.starts_with("WAVE  TENANTS"))
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        shown[..5],
        [
            vec!["WAVE", "TENANTS", "FROM"],
            vec!["1", "1", "canaries"],
            vec!["2", "3", "region=eu,tier!=enterprise"],
            vec!["3", "1", "region=eu"],
            vec!["4", "4", "*"],
        ],
        "{}",
        text.stdout
    );
    assert!(
        text.stdout
            .contains("warning: wave selector `region=mars` matched no selected tenant"),
        "{}",
        text.stdout
    );
}

#[test]
fn waves_flags_override_the_fleet_file_and_selectors_that_leave_tenants_out_are_refused() {
    let p = labelled("rollout:\n  waves: \"1,100%\"\n");
    let plan = p.run(&[
        "plan",
        "--format",
        "json",
        "--waves",
        "tier=enterprise",
        "--waves",
        "50%",
        "--waves",
        "*",
    ]);
    assert_eq!(plan.code, 0, "{}", plan.all());
    // 8 after the canary: enterprise (e1, u2), then up to 4 in all (u1, e2), then the rest.
    assert_eq!(
        waves_of(&json(&plan.stdout)),
        pairs(&[
            ("c1", 1),
            ("e1", 2),
            ("u2", 2),
            ("u1", 3),
            ("e2", 3),
            ("e3", 4),
            ("u3", 4),
            ("e4", 4),
            ("u4", 4),
        ])
    );
    let left_out = p.run(&["up", "--waves", "region=eu"]);
    assert_eq!(left_out.code, 2, "{}", left_out.all());
    assert!(
        left_out
            .stderr
            .contains("waves `region=eu` place 4 of the selected tenants in no wave (`u1`, `u2`, `u3`, `u4`)"),
        "{}",
        left_out.stderr
    );
    assert!(
        left_out.stderr.contains("end the waves with `*`"),
        "{}",
        left_out.stderr
    );
    assert!(!p.db_path("c1").exists(), "a refused run touches nothing");
    for (flags, says) in [
        (&["--waves", "*", "--waves", "region=eu"][..], "nothing can follow `*`"),
        (&["--waves", "region"], "wave `region` is not a size"),
        (&["--waves", "region=eu,5%"], "wave `region=eu,5%` is not a selector"),
    ] {
        let run = p.run(&[&["plan"], flags].concat());
        assert_eq!(run.code, 2, "{flags:?}: {}", run.all());
        assert!(run.stderr.contains(says), "{flags:?}: {}", run.stderr);
    }
    let bad_file = labelled("rollout:\n  waves: [\"region=eu\", \"*\", 5]\n");
    let run = bad_file.run(&["plan"]);
    assert_eq!(run.code, 2, "{}", run.all());
    assert!(
        run.stderr.contains("tenants.yaml")
            && run.stderr.contains("rollout waves")
            && run.stderr.contains("nothing can follow `*`"),
        "{}",
        run.stderr
    );
}

fn version(p: &Project, id: &str) -> usize {
    sqlite_column(&p.db_path(id), "SELECT CAST(count(*) AS TEXT) FROM fleetmig_history")[0]
        .parse()
        .unwrap()
}

#[test]
fn up_runs_selector_waves_in_order_and_resume_keeps_them() {
    let p = labelled("");
    let up = p.run(&[
        "up",
        "--waves",
        "region=us",
        "--waves",
        "*",
        "--pause-after",
        "2",
        "-j",
        "1",
        "--format",
        "json",
    ]);
    assert_eq!(up.code, 0, "a paused run exits 0: {}", up.all());
    let started: Vec<(String, u64)> = up
        .stdout
        .lines()
        .map(json)
        .filter(|e| e["event"] == "tenant_started")
        .map(|e| (e["tenant"].as_str().unwrap().to_owned(), e["wave"].as_u64().unwrap()))
        .collect();
    assert_eq!(started, pairs(&[("c1", 1), ("u1", 2), ("u2", 2), ("u3", 2), ("u4", 2)]));
    for id in ["c1", "u1", "u4"] {
        assert_eq!(version(&p, id), 4, "{id}");
    }
    assert!(!p.db_path("e1").exists(), "wave 3 has not run");

    // Relabelled since: the resumed run keeps the waves it was started with.
    let yaml = std::fs::read_to_string(p.path().join("tenants.yaml")).unwrap();
    p.fleet(&yaml.replace("region: eu", "region: apac"));
    let changed = p.run(&["up", "--resume", "--waves", "region=eu", "--waves", "*"]);
    assert_eq!(changed.code, 2, "{}", changed.all());
    assert!(
        changed.stderr.contains("--waves region=eu; *: run")
            && changed.stderr.contains("was started with --waves region=us; *"),
        "{}",
        changed.stderr
    );
    let resumed = p.run(&["up", "--resume", "--waves", "region=us", "--waves", "*"]);
    assert_eq!(resumed.code, 0, "{}", resumed.all());
    for id in ["e1", "e2", "e3", "e4"] {
        assert_eq!(version(&p, id), 4, "{id}");
    }
}

/// The README's sample of selector waves is what the binary prints on the demo fleet.
#[test]
fn the_readmes_selector_waves_sample_is_real_output() {
    let p = crate::cli::demo_project();
    let args = [
        "plan",
        "--select",
        "tier=pro",
        "--waves",
        "region=us",
        "--waves",
        "region=mars",
        "--waves",
        "*",
    ];
    let plan = p.run(&args);
    assert_eq!(plan.code, 0, "{}", plan.all());
    let sample = crate::cli::readme_sample("plan --select tier=pro --waves region=us --waves region=mars --waves '*'");
    assert_eq!(sample, plan.stdout);
}
