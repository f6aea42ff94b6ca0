//! The operator's seat (issue 9): start order, grouped refusals with what to do, `plan`'s
//! range summary, a `down` to version 0, and `runs` showing a down's steps.

use serde_json::Value;

use crate::support::{Pg, Project};

fn events(out: &str, kind: &str) -> Vec<Value> {
    out.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|e| e["event"] == kind)
        .collect()
}

fn started(out: &str) -> Vec<String> {
    events(out, "tenant_started")
        .iter()
        .map(|e| e["tenant"].as_str().unwrap().to_owned())
        .collect()
}

/// `plan`'s tenants, in its order.
fn plan_order(p: &Project) -> Vec<String> {
    let run = p.run(&["plan", "--format", "json"]);
    let doc: Value = serde_json::from_str(&run.stdout).unwrap_or_else(|_| panic!("{}", run.all()));
    doc["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn with_one_at_a_time_tenants_start_in_fleet_file_order_as_plan_shows() {
    let p = Project::new();
    p.migration("0001_a.up.sql", "CREATE TABLE a (id INTEGER);");
    // Not sorted by name, and one canary in the middle: the canary goes first, the rest in
    // file order.
    let ids = ["zeta", "alpha", "mid", "beta", "omega", "delta"];
    let tenants: String = ids
        .iter()
        .map(|id| format!("  - {{ id: {id}, canary: {} }}\n", *id == "mid"))
        .collect();
    p.fleet(&format!(
        "defaults: {{ url: \"sqlite://data/{{id}}.db\" }}\ntenants:\n{tenants}"
    ));
    std::fs::create_dir_all(p.path().join("data")).unwrap();
    let want = ["mid", "zeta", "alpha", "beta", "omega", "delta"];
    assert_eq!(plan_order(&p), want);
    // Half of them already at the target: they keep their place too.
    let run = p.run(&[
        "up", "--format", "json", "-j", "1", "--select", "id=alpha", "--select", "id=omega",
    ]);
    assert_eq!(run.code, 0, "{}", run.all());
    let run = p.run(&["up", "--format", "json", "-j", "1"]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert_eq!(started(&run.stdout), want);
}

#[test]
fn a_full_host_holds_back_only_its_own_tenants() {
    let Some(pg) = Pg::create("seat_order") else { return };
    let p = Project::new();
    // Long enough that `a1` is still running when the next tenant starts.
    p.migration("0001_slow.up.sql", "SELECT pg_sleep(0.4); CREATE TABLE t (id INT);");
    let url = pg.url();
    p.fleet(&format!(
        "hosts:\n  a: {{ url: \"{url}\", max_connections: 1 }}\n  b: {{ url: \"{url}\", max_connections: 1 }}\n\
         defaults: {{ schema: \"s_{{id}}\" }}\ntenants:\n  - {{ id: a1, host: a }}\n  - {{ id: a2, host: a }}\n  - {{ id: b1, host: b }}\n"
    ));
    assert_eq!(plan_order(&p), ["a1", "a2", "b1"]);
    let run = p.run(&["up", "--format", "json", "-j", "2"]);
    assert_eq!(run.code, 0, "{}", run.all());
    // a2 waits for host a; b1 is the first tenant that can start, so it starts next.
    assert_eq!(started(&run.stdout), ["a1", "b1", "a2"]);
}

/// Three SQLite tenants on three reversible migrations.
fn three_step_fleet(ids: &[&str]) -> Project {
    let p = Project::new();
    for i in 1..=3 {
        p.migration(
            &format!("000{i}_t{i}.up.sql"),
            &format!("CREATE TABLE t{i} (id INTEGER);"),
        );
        p.migration(&format!("000{i}_t{i}.down.sql"), &format!("DROP TABLE t{i};"));
    }
    let tenants: String = ids.iter().map(|id| format!("  - {{ id: {id} }}\n")).collect();
    p.fleet(&format!(
        "defaults: {{ url: \"sqlite://data/{{id}}.db\" }}\ntenants:\n{tenants}"
    ));
    std::fs::create_dir_all(p.path().join("data")).unwrap();
    p
}

/// Runs fleetmig with no terminal on standard input.
fn run_without_terminal(p: &Project, args: &[&str]) -> crate::support::Run {
    p.command(args)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap()
        .into()
}

fn versions(p: &Project) -> Value {
    let run = p.run(&["status", "--format", "json"]);
    let doc: Value = serde_json::from_str(&run.stdout).unwrap_or_else(|_| panic!("{}", run.all()));
    doc["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["id"].as_str().unwrap().to_owned(), t["version"].clone()))
        .collect::<serde_json::Map<_, _>>()
        .into()
}

#[test]
fn a_down_to_version_0_needs_yes_without_a_terminal_and_runs_shows_its_steps() {
    let p = three_step_fleet(&["a", "b", "c"]);
    assert_eq!(p.run(&["up"]).code, 0);
    assert_eq!(p.run(&["down", "--to", "1", "--select", "id=b", "--yes"]).code, 0);
    assert_eq!(p.run(&["down", "--to", "2", "--select", "id=c", "--yes"]).code, 0);
    let before = serde_json::json!({"a": 3, "b": 1, "c": 2});
    assert_eq!(versions(&p), before);

    // b and c have two migrations or fewer: two steps take them to 0.
    let refused = run_without_terminal(&p, &["down", "--steps", "2"]);
    assert_eq!(refused.code, 2, "{}", refused.all());
    assert!(
        refused.stderr.contains(
            "this `down` reverts every migration of 2 tenant(s), leaving them at version 0: b (at 1), c (at 2). Add --yes"
        ),
        "{}",
        refused.stderr
    );
    assert!(!refused.stderr.contains("a (at"), "{}", refused.stderr);
    assert_eq!(versions(&p), before, "nothing was touched");
    let refused = run_without_terminal(&p, &["down", "--to", "0", "--select", "id=a"]);
    assert_eq!(refused.code, 2, "{}", refused.all());
    assert!(
        refused
            .stderr
            .contains("1 tenant(s), leaving them at version 0: a (at 3)."),
        "{}",
        refused.stderr
    );
    // A down that leaves every tenant something is not asked about.
    let one = run_without_terminal(&p, &["down", "--steps", "1", "--select", "id=a"]);
    assert_eq!(one.code, 0, "{}", one.all());

    let done = run_without_terminal(&p, &["down", "--steps", "2", "--yes"]);
    assert_eq!(done.code, 0, "{}", done.all());
    assert_eq!(versions(&p), serde_json::json!({"a": 0, "b": 0, "c": 0}));

    let runs = p.run(&["runs"]);
    let lines: Vec<&str> = runs.stdout.lines().collect();
    assert!(lines[0].contains("TARGET"), "{}", runs.stdout);
    let newest: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(newest[1..4], ["down", "-2", "steps"], "{}", runs.stdout);
    let older: Vec<&str> = lines[2].split_whitespace().collect();
    assert_eq!(older[1..3], ["down", "-1"], "{}", runs.stdout);
    assert!(
        lines.iter().any(|l| l.split_whitespace().nth(2) == Some("2")),
        "--to 2 shows its target: {}",
        runs.stdout
    );
    let json: Value = serde_json::from_str(&p.run(&["runs", "--format", "json"]).stdout).unwrap();
    assert_eq!(json["runs"][0]["steps"], 2);
    assert_eq!(json["runs"][0]["target"], Value::Null);
    assert_eq!(json["runs"][3].get("steps"), None);
}

/// The part of a command's output from the grouped refusals on.
fn grouped_part(out: &str) -> &str {
    let at = out
        .find("Left alone until their problem is solved:")
        .unwrap_or_else(|| panic!("no grouped refusals in:\n{out}"));
    &out[at..]
}

#[test]
fn drifted_tenants_are_grouped_with_short_checksums_and_a_stamp_command_that_works() {
    let p = three_step_fleet(&["a", "b", "c", "d", "e"]);
    assert_eq!(p.run(&["up"]).code, 0);
    let edited = "CREATE TABLE t2 (id INTEGER, note TEXT);";
    p.migration("0002_t2.up.sql", edited);
    p.migration("0004_t4.up.sql", "CREATE TABLE t4 (id INTEGER);");
    let whole = |text: &str| {
        text.split(|c: char| !c.is_ascii_hexdigit())
            .filter(|w| w.len() == 64)
            .count()
    };

    let status = p.run(&["status", "--select", "id=a", "--select", "id=c", "--select", "id=e"]);
    assert_eq!(status.code, 1, "{}", status.all());
    assert_eq!(whole(&status.stdout), 0, "{}", status.stdout);
    insta::assert_snapshot!("status_grouped_drift", grouped_part(&status.stdout));
    let json = p.run(&["status", "--format", "json"]);
    assert_eq!(
        whole(&json.stdout),
        20,
        "each tenant's two whole checksums, in `tenants` and `lagging`: {}",
        json.stdout
    );

    let plan = p.run(&["plan"]);
    assert_eq!(
        grouped_part(&plan.stdout).lines().nth(2),
        Some("  5 tenants: a, b, c and 2 more"),
        "{}",
        plan.stdout
    );

    let run = p.run(&["up"]);
    assert_eq!(run.code, 1, "{}", run.all());
    assert_eq!(whole(&run.all()), 0, "{}", run.all());
    insta::assert_snapshot!("up_grouped_drift", grouped_part(&run.stdout));
    let again = p.run(&["status"]);
    assert_eq!(
        whole(&again.stdout),
        0,
        "the ledger's last error does not repeat the refusal: {}",
        again.stdout
    );
    let json = p.run(&["up", "--format", "json"]);
    let finished = events(&json.stdout, "tenant_finished");
    assert_eq!(finished.len(), 5);
    assert_eq!(whole(&json.stdout), 10, "whole checksums in JSON: {}", json.stdout);

    // The stamp command the message gives records the edit for the tenants it names.
    let advice = grouped_part(&status.stdout);
    let command = advice
        .split('`')
        .find(|s| s.starts_with("fleetmig stamp"))
        .unwrap_or_else(|| panic!("{advice}"));
    let args: Vec<&str> = command.split_whitespace().skip(1).collect();
    let stamp = p.run(&args);
    assert_eq!(stamp.code, 0, "{command}: {}", stamp.all());
    let after = p.run(&["status", "--format", "json"]);
    let doc: Value = serde_json::from_str(&after.stdout).unwrap();
    let states: Vec<(&str, &str)> = doc["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["id"].as_str().unwrap(), t["state"].as_str().unwrap()))
        .collect();
    assert_eq!(
        states,
        [
            ("a", "behind"),
            ("b", "drifted"),
            ("c", "behind"),
            ("d", "drifted"),
            ("e", "behind")
        ]
    );
    assert_eq!(p.run(&["up", "--select", "id=a"]).code, 0);
}

#[test]
fn on_a_terminal_a_down_to_version_0_asks_and_goes_on_only_on_yes() {
    let p = three_step_fleet(&["a", "b"]);
    assert_eq!(p.run(&["up"]).code, 0);
    let Some((screen, code)) = crate::gates::on_a_terminal(&p, "down --steps 3 --select id=a", "n\n") else {
        return;
    };
    assert_eq!(code, Some(2), "{screen}");
    assert!(
        screen.contains(
            "this `down` reverts every migration of 1 tenant(s), leaving them at version 0: a (at 3). Go on? [y/N]"
        ),
        "{screen}"
    );
    assert!(screen.contains("down to version 0 not confirmed"), "{screen}");
    assert_eq!(versions(&p), serde_json::json!({"a": 3, "b": 3}), "nothing was touched");
    let (screen, code) = crate::gates::on_a_terminal(&p, "down --steps 3 --select id=a", "y\n").unwrap();
    assert_eq!(code, Some(0), "{screen}");
    assert_eq!(versions(&p), serde_json::json!({"a": 0, "b": 3}));
}

/// Drift on many tenants at different versions: the advice is one command, and run as
/// printed it records the edited file for every tenant of the group, at each one's version,
/// leaving alone another migration's drift, a tenant without that migration, a dirty
/// tenant and one whose history has a migration with no file.
#[test]
fn the_grouped_drift_advice_is_one_stamp_command_that_fixes_the_whole_group() {
    let ids = ["a", "b", "c", "d", "e", "f", "low", "other", "dirty", "fresh"];
    let p = three_step_fleet(&ids);
    assert_eq!(
        p.run(&["up", "--to", "2", "--select", "id=d", "--select", "id=e"]).code,
        0
    );
    assert_eq!(p.run(&["up", "--to", "1", "--select", "id=low"]).code, 0);
    let rest: Vec<String> = ["a", "b", "c", "f", "other", "dirty"]
        .iter()
        .flat_map(|id| ["--select".to_owned(), format!("id={id}")])
        .collect();
    let rest: Vec<&str> = rest.iter().map(String::as_str).collect();
    assert_eq!(p.run(&[&["up"][..], &rest].concat()).code, 0);
    let history = |id: &str| {
        crate::support::sqlite_rows(
            &p.db_path(id),
            "SELECT CAST(version AS TEXT), checksum, CAST(dirty AS TEXT) FROM fleetmig_history ORDER BY version",
        )
    };
    crate::support::sqlite_exec(
        &p.db_path("other"),
        "UPDATE fleetmig_history SET checksum = 'feed' WHERE version = '3'",
    );
    crate::support::sqlite_exec(
        &p.db_path("dirty"),
        "UPDATE fleetmig_history SET dirty = 1 WHERE version = '3'",
    );
    p.migration("0002_t2.up.sql", "CREATE TABLE t2 (id INTEGER, note TEXT);");
    let (low, dirty) = (history("low"), history("dirty"));

    let status = p.run(&["status"]);
    assert_eq!(status.code, 1, "{}", status.all());
    let advice = grouped_part(&status.stdout);
    let command = advice
        .split('`')
        .find(|s| s.starts_with("fleetmig stamp --checksums=2"))
        .unwrap_or_else(|| panic!("{advice}"));
    assert_eq!(command, "fleetmig stamp --checksums=2", "{advice}");
    assert!(
        advice.contains("`fleetmig stamp --checksums=2` (every tenant that has migration 2)"),
        "{advice}"
    );
    let args: Vec<&str> = command.split_whitespace().skip(1).collect();
    let stamp = p.run(&args);
    assert_eq!(stamp.code, 1, "the dirty tenant is refused: {}", stamp.all());
    assert!(
        crate::support::tenant_line(&stamp.stdout, "d").ends_with("checksums recorded, at 2"),
        "{}",
        stamp.stdout
    );
    assert!(
        crate::support::tenant_line(&stamp.stdout, "dirty").contains("dirty"),
        "{}",
        stamp.stdout
    );

    let doc: Value = serde_json::from_str(&p.run(&["status", "--format", "json"]).stdout).unwrap();
    let states: Vec<(&str, &str, i64)> = doc["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["id"].as_str().unwrap(),
                t["state"].as_str().unwrap(),
                t["version"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        states,
        [
            ("a", "current", 3),
            ("b", "current", 3),
            ("c", "current", 3),
            ("d", "behind", 2),
            ("e", "behind", 2),
            ("f", "current", 3),
            ("low", "behind", 1),
            ("other", "drifted", 3),
            ("dirty", "dirty", 2),
            ("fresh", "behind", 0),
        ],
        "{doc:#}"
    );
    assert_eq!(history("low"), low, "a tenant without migration 2 is untouched");
    assert!(!p.db_path("fresh").exists(), "a tenant never migrated is not created");
    assert_eq!(history("dirty"), dirty, "the dirty tenant is untouched");
    assert_eq!(
        history("other")[2][1].as_deref(),
        Some("feed"),
        "migration 3's drift stays"
    );
    assert_eq!(history("other")[1][1], history("a")[1][1], "migration 2 was realigned");
    let runs = p.run(&["runs", "--format", "json"]);
    let runs: Value = serde_json::from_str(&runs.stdout).unwrap();
    assert_eq!(
        runs["runs"][0]["command"], "stamp --checksums=2",
        "the stamp is a run in the ledger: {runs:#}"
    );
    assert_eq!(
        runs["runs"][0]["target"],
        Value::Null,
        "it keeps each tenant's version: {runs:#}"
    );
    let table = p.run(&["runs"]);
    let newest: Vec<&str> = table.stdout.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(newest[1..3], ["stamp", "--checksums=2"], "{}", table.stdout);
    assert!(
        newest[3].starts_with("20"),
        "no target, the start time follows: {}",
        table.stdout
    );
    assert_eq!(p.run(&["up"]).code, 1, "only other and dirty are left alone");
    assert_eq!(doc["tenants"][3]["version"], 2);
}

/// `report RUN` reads as the run's own report: a refused tenant's row names its problem
/// in a few words, and the tenants with the same problem are grouped with what to do,
/// not printed with two whole checksums each.
#[test]
fn report_run_groups_refused_tenants_as_the_run_did() {
    let p = three_step_fleet(&["a", "b", "c", "d", "e"]);
    assert_eq!(p.run(&["up", "--to", "2"]).code, 0);
    p.migration("0002_t2.up.sql", "CREATE TABLE t2 (id INTEGER, note TEXT);");
    let run = p.run(&["up", "--format", "json"]);
    assert_eq!(run.code, 1, "{}", run.all());
    let started = events(&run.stdout, "run_started");
    let run_id = started[0]["run_id"].as_str().unwrap();
    let live = p.run(&["report", run_id]);
    let whole = |text: &str| {
        text.split(|c: char| !c.is_ascii_hexdigit())
            .filter(|w| w.len() == 64)
            .count()
    };
    assert_eq!(whole(&live.stdout), 0, "{}", live.stdout);
    assert!(
        crate::support::tenant_line(&live.stdout, "c").contains("migration 2 edited (see below)"),
        "{}",
        live.stdout
    );
    assert!(
        grouped_part(&live.stdout)
            .contains("  - a deliberate change: record the file as applied, `fleetmig stamp --checksums=2` (every tenant that has migration 2)"),
        "{}",
        live.stdout
    );
    let json = p.run(&["report", run_id, "--format", "json"]);
    let doc: Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(doc["tenants"][0]["refusal"]["kind"], "modified", "{doc:#}");
    assert_eq!(
        whole(&json.stdout),
        21,
        "JSON keeps whole checksums, in each error and refusal, and the set's fingerprint"
    );
}

/// `plan` through the CLI: each tenant's pending migrations as a range and a count past two
/// (with a hint naming `--verbose`), and `plan --verbose` naming every one of them; the same
/// tenants, versions and step count either way.
#[test]
fn plan_summarises_ranges_and_plan_verbose_names_every_migration() {
    let p = crate::support::sqlite_fleet(&[("c1", true), ("a1", false), ("a2", false), ("a3", false)], &[]);
    for (id, to) in [("c1", "1"), ("a1", "3"), ("a3", "2")] {
        let up = p.run(&["up", "--to", to, "--select", &format!("id={id}")]);
        assert_eq!(up.code, 0, "{}", up.all());
    }
    let plan = p.run(&["plan"]);
    assert_eq!(plan.code, 0, "{}", plan.all());
    insta::assert_snapshot!("plan_ranges", plan.stdout);
    let verbose = p.run(&["plan", "--verbose"]);
    assert_eq!(verbose.code, 0, "{}", verbose.all());
    insta::assert_snapshot!("plan_verbose", verbose.stdout);
    let a2 = crate::support::tenant_line(&verbose.stdout, "a2");
    assert!(a2.ends_with("0001_t1, 0002_t2, 0003_t3, 0004_t4"), "{a2}");
    assert!(!verbose.stdout.contains(".."), "{}", verbose.stdout);
    let head = |out: &str| -> Vec<String> {
        out.lines()
            .map(|l| l.split_whitespace().take(4).collect::<Vec<_>>().join(" "))
            .collect()
    };
    let (short, long) = (head(&plan.stdout), head(&verbose.stdout));
    assert_eq!(short[..short.len() - 1], long[..long.len() - 1]);
}
