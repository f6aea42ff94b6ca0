//! OpenMetrics output: `up`/`down --metrics-file` for the textfile collector, checked by
//! the strict OpenMetrics parser of Prometheus' Python client.

use crate::support::{Project, openmetrics, sqlite_rows};

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
