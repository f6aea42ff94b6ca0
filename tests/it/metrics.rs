//! OpenMetrics output: `up`/`down --metrics-file` for the textfile collector, checked by
//! the strict OpenMetrics parser of Prometheus' Python client.

use crate::support::{Pg, Project, openmetrics, sqlite_rows};

/// The value of the sample `name` with label `key` = `value` (or no label: `key` empty).
fn sample(text: &str, name: &str, label: &str) -> String {
    let prefix = if label.is_empty() {
        format!("{name} ")
    } else {
        format!("{name}{{{label}}} ")
    };
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no {prefix} in:\n{text}"))
        .to_owned()
}

#[test]
fn metrics_file_holds_the_runs_outcome_as_valid_openmetrics() {
    let p = Project::new();
    p.fleet("defaults: { url: \"sqlite://data/{id}.db\" }\ntenants:\n  - { id: a1 }\n  - { id: b2 }\n  - { id: c3 }\n");
    p.migration("0001_a.up.sql", "CREATE TABLE a (id INTEGER PRIMARY KEY);\n");
    p.migration("0001_a.down.sql", "DROP TABLE a;\n");
    std::fs::create_dir_all(p.path().join("collector")).unwrap();
    let run = p.run(&["up", "-j", "1", "--metrics-file", "collector/fleetmig.prom"]);
    assert_eq!(run.code, 0, "{}", run.all());
    let path = p.path().join("collector/fleetmig.prom");
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(sample(&text, "fleetmig_run_tenants", "status=\"succeeded\""), "3");
    assert_eq!(sample(&text, "fleetmig_run_tenants", "status=\"failed\""), "0");
    assert_eq!(sample(&text, "fleetmig_run_success", ""), "1");
    let info = text.lines().find(|l| l.starts_with("fleetmig_run_info{")).unwrap();
    assert!(
        info.contains("command=\"up\",target=\"1\",stop_reason=\"completed\""),
        "{info}"
    );
    assert!(text.ends_with("# EOF\n"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o044, 0o044, "readable by the collector: {mode:o}");
    }
    if let Some(families) = openmetrics(&text) {
        let names: Vec<&str> = families
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["name"].as_str().unwrap())
            .collect();
        assert!(
            names.contains(&"fleetmig_run") && names.contains(&"fleetmig_run_tenants"),
            "{names:?}"
        );
    }
    // No temporary file is left beside it.
    let left: Vec<_> = std::fs::read_dir(p.path().join("collector")).unwrap().collect();
    assert_eq!(left.len(), 1, "{left:?}");

    // A run that stops: the file is replaced with the failure's counts and reason.
    std::fs::write(
        p.path().join("migrations/0002_b.up.sql"),
        "CREATE TABLE b (id INTEGER PRIMARY KEY);\n",
    )
    .unwrap();
    std::fs::write(p.path().join("migrations/0002_b.down.sql"), "DROP TABLE b;\n").unwrap();
    let conflict = sqlite_rows(&p.db_path("a1"), "CREATE TABLE b (x INTEGER)");
    assert!(conflict.is_empty());
    let run = p.run(&["up", "-j", "1", "--metrics-file", "collector/fleetmig.prom"]);
    assert_eq!(run.code, 1, "{}", run.all());
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(sample(&text, "fleetmig_run_tenants", "status=\"failed\""), "1");
    assert_eq!(sample(&text, "fleetmig_run_success", ""), "0");
    let info = text.lines().find(|l| l.starts_with("fleetmig_run_info{")).unwrap();
    assert!(info.contains("stop_reason=\"max_failures\""), "{info}");
    openmetrics(&text);

    // down names its target too.
    let run = p.run(&[
        "down",
        "--to",
        "0",
        "--yes",
        "--select",
        "id=c3",
        "--metrics-file",
        "down.prom",
    ]);
    assert_eq!(run.code, 0, "{}", run.all());
    let text = std::fs::read_to_string(p.path().join("down.prom")).unwrap();
    let info = text.lines().find(|l| l.starts_with("fleetmig_run_info{")).unwrap();
    assert!(info.contains("command=\"down\",target=\"0\""), "{info}");
    openmetrics(&text);
}

/// A family's samples from the parser's JSON: (labels, value) pairs.
fn samples(families: &serde_json::Value, name: &str) -> Vec<(serde_json::Value, f64)> {
    families
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == name)
        .unwrap_or_else(|| panic!("no family {name} in {families}"))["samples"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["labels"].clone(), s["value"].as_f64().unwrap()))
        .collect()
}

#[test]
fn status_as_openmetrics_names_each_tenants_version_lag_and_state() {
    let p = Project::new();
    p.fleet(concat!(
        "defaults: { url: \"sqlite://data/{id}.db\" }\n",
        "tenants:\n",
        "  - { id: eu1, labels: { tier: enterprise, region: eu } }\n",
        "  - { id: eu2, labels: { tier: free, region: \"e\\\"u\\\\\" } }\n",
        "  - { id: us1, labels: { region: us } }\n",
    ));
    p.migration("0001_a.up.sql", "CREATE TABLE a (id INTEGER PRIMARY KEY);\n");
    p.migration("0002_b.up.sql", "CREATE TABLE b (id INTEGER PRIMARY KEY);\n");
    let run = p.run(&["up", "--to", "1", "--select", "id=eu1"]);
    assert_eq!(run.code, 0, "{}", run.all());
    let run = p.run(&["up", "--select", "id=us1"]);
    assert_eq!(run.code, 0, "{}", run.all());

    let out = p.run(&["status", "--format", "openmetrics", "--metric-labels", "tier,region"]);
    assert_eq!(out.code, 1, "not all current: {}", out.all());
    let text = &out.stdout;
    assert!(text.ends_with("# EOF\n"), "{text}");
    assert!(
        text.contains("fleetmig_tenant_behind{tenant=\"eu1\",host=\"local\",engine=\"sqlite\",tier=\"enterprise\",region=\"eu\"} 1\n"),
        "{text}"
    );
    assert!(text.contains("fleetmig_tenants{state=\"behind\"} 2\n"), "{text}");
    assert!(text.contains("fleetmig_tenants{state=\"schema_drift\"} 0\n"), "{text}");
    assert!(
        text.contains("fleetmig_set_info{head=\"2\",target=\"2\"} 1\n"),
        "{text}"
    );
    let Some(families) = openmetrics(text) else { return };
    let versions = samples(&families, "fleetmig_tenant_version");
    let of = |id: &str| {
        versions
            .iter()
            .find(|(l, _)| l["tenant"] == id)
            .unwrap_or_else(|| panic!("{id} in {versions:?}"))
            .clone()
    };
    assert_eq!(of("eu1").1, 1.0);
    assert_eq!(of("eu2").1, 0.0);
    assert_eq!(of("us1").1, 2.0);
    // Escaped values come back whole; a tenant without the label has it empty.
    assert_eq!(of("eu2").0["region"], "e\"u\\");
    assert_eq!(of("us1").0["tier"], "");
    let states = samples(&families, "fleetmig_tenant_state");
    let us1 = states.iter().find(|(l, _)| l["tenant"] == "us1").unwrap();
    assert_eq!(
        (us1.0["state"].as_str(), us1.0["version"].as_str()),
        (Some("current"), Some("2"))
    );

    // --lagging keeps the current tenant out of the per-tenant families, not the counts.
    let out = p.run(&["status", "--lagging", "--format", "openmetrics"]);
    assert!(!out.stdout.contains("tenant=\"us1\""), "{}", out.stdout);
    assert!(
        out.stdout.contains("fleetmig_tenants{state=\"current\"} 1\n"),
        "{}",
        out.stdout
    );
    openmetrics(&out.stdout);
}

#[test]
fn metric_labels_are_checked_and_openmetrics_is_statuss_alone() {
    let p = Project::new();
    p.fleet("defaults: { url: \"sqlite://data/{id}.db\" }\ntenants:\n  - { id: a }\n");
    p.migration("0001_a.up.sql", "CREATE TABLE a (id INTEGER PRIMARY KEY);\n");
    for (args, says) in [
        (
            &["status", "--format", "openmetrics", "--metric-labels", "tier-x"][..],
            "`tier-x` is not a Prometheus label name",
        ),
        (
            &["status", "--format", "openmetrics", "--metric-labels", "host"],
            "`host` is one of fleetmig's own labels",
        ),
        (
            &["status", "--format", "openmetrics", "--metric-labels", "a,a"],
            "`a` is named twice",
        ),
        (&["status", "--metric-labels", "tier"], "only with --format openmetrics"),
        (&["up", "--format", "openmetrics"], "only `status` writes OpenMetrics"),
    ] {
        let out = p.run(args);
        assert_eq!(out.code, 2, "{args:?}: {}", out.all());
        assert!(out.stderr.contains(says), "{args:?}: {}", out.stderr);
    }
    assert!(!p.db_path("a").exists(), "nothing touched");
}

#[test]
fn status_as_openmetrics_of_postgres_tenants_names_their_host() {
    let Some(pg) = Pg::create("omstatus") else { return };
    let p = Project::new();
    p.fleet(&format!(
        "hosts:\n  main: {{url: \"{}\"}}\ntenants:\n  - {{id: a, host: main, schema: t_a}}\n  - {{id: b, host: main, schema: t_b}}\n  - {{id: gone, url: \"postgres://postgres@127.0.0.1:1/nowhere\"}}\n",
        pg.url()
    ));
    p.migration("0001_a.up.sql", "CREATE TABLE a (id INT);\n");
    let run = p.run(&["up", "--select", "id=a", "--connect-timeout", "2s"]);
    assert_eq!(run.code, 0, "{}", run.all());
    let out = p.run(&["status", "--format", "openmetrics", "--connect-timeout", "2s"]);
    let text = &out.stdout;
    assert!(
        text.contains(
            "fleetmig_tenant_state{tenant=\"a\",host=\"main\",engine=\"postgres\",state=\"current\",version=\"1\"} 1\n"
        ),
        "{text}"
    );
    assert!(
        text.contains("fleetmig_tenant_state{tenant=\"gone\",host=\"127.0.0.1:1\",engine=\"postgres\",state=\"unreachable\",version=\"\"} 1\n"),
        "{text}"
    );
    assert!(!text.contains("fleetmig_tenant_version{tenant=\"gone\""), "{text}");
    assert!(text.contains("fleetmig_tenants{state=\"behind\"} 1\n"), "{text}");
    openmetrics(text);
}
