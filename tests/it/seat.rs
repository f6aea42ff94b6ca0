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
