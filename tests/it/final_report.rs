//! The final report as a person reads it at the end of `up` and from `report RUN`: what
//! needs a look first, the rest counted past a screenful, every row one flag away, and
//! failures before any migration saying where they happened.

use crate::support::sqlite_fleet;
use crate::support::{Pg, Project};

/// The run id from the run's first line (`... (run ID)`).
fn run_id(stdout: &str) -> String {
    let first = stdout.lines().next().unwrap();
    let (_, rest) = first.rsplit_once("(run ").unwrap();
    rest.trim_end_matches(')').to_owned()
}

/// What a run printed from its summary line on, without timestamps, with the run id and
/// the elapsed time as placeholders.
fn ending(stdout: &str, run_id: &str) -> String {
    let text = stdout.replace(run_id, "RUN");
    let from = text
        .find(" tenant(s): ")
        .map_or(0, |i| text[..i].rfind('\n').map_or(0, |n| n + 1));
    let text = &text[from..];
    // Only the summary line carries a timestamp and the elapsed time.
    let (summary, rest) = text.split_once('\n').unwrap();
    let summary = summary.split_once(' ').unwrap().1;
    let summary = match summary.rsplit_once(" (") {
        Some((head, _)) => format!("{head} (TIME)."),
        None => summary.to_owned(),
    };
    format!("{summary}\n{rest}")
}

/// 45 tenants, one at a time; t03 fails at its third migration after two applied and is
/// left there, which stops the run with 42 tenants not started.
#[test]
fn a_large_run_lists_failures_first_counts_the_rest_and_report_all_lists_every_tenant() {
    let ids: Vec<(String, bool)> = (1..=45).map(|i| (format!("t{i:02}"), false)).collect();
    let refs: Vec<(&str, bool)> = ids.iter().map(|(i, c)| (i.as_str(), *c)).collect();
    let p = sqlite_fleet(&refs, &["t03"]);
    let run = p.run(&["up", "-j", "1", "--max-failures", "1", "--rollback", "none"]);
    assert_eq!(run.code, 1, "{}", run.all());
    let id = run_id(&run.stdout);
    let printed = ending(&run.stdout, &id);
    insta::assert_snapshot!("large_run_ending", printed);

    // The hint names a command that works, and `report RUN` prints the same table.
    let hint = run
        .stdout
        .lines()
        .find_map(|l| {
            l.strip_prefix("(`fleetmig ")?
                .split_once('`')
                .map(|(c, _)| c.to_owned())
        })
        .expect("a hint naming a command");
    let args: Vec<&str> = hint.split_whitespace().collect();
    assert_eq!(args, ["report", id.as_str(), "--all"]);
    let all = p.run(&args);
    assert_eq!(all.code, 1, "{}", all.all());
    insta::assert_snapshot!("report_run_all", all.stdout.replace(&id, "RUN"));
    let again = p.run(&["report", &id]);
    let table = printed.split_once('\n').unwrap().1;
    assert_eq!(again.stdout.replace(&id, "RUN"), table);
}

/// A tenant that fails before any migration says where: while connecting (init_sql),
/// while reading its history; an unreachable one is skipped as unreachable. The ledger's
/// copy (`report RUN`) says the same.
#[test]
fn a_failure_before_any_migration_says_while_doing_what() {
    let Some(pg) = Pg::create("while_connecting") else {
        return;
    };
    pg.exec("CREATE SCHEMA broken; CREATE TABLE broken.fleetmig_history (x int);");
    // A port on loopback that nothing listens on: bound, then let go.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let p = Project::new();
    p.migration("0001_a.up.sql", "CREATE TABLE a (id int);");
    p.fleet(&format!(
        "hosts:\n  pg: {{ url: \"{}\" }}\n\
         defaults: {{ host: pg, schema: \"{{id}}\" }}\n\
         tenants:\n\
         \x20 - {{ id: down, host: null, schema: null, url: \"postgres://postgres@127.0.0.1:{closed}/x\" }}\n\
         \x20 - {{ id: badinit, init_sql: [\"SELEC 1\"] }}\n\
         \x20 - {{ id: broken }}\n\
         \x20 - {{ id: fine }}\n",
        pg.url()
    ));
    let run = p.run(&[
        "up",
        "--retry-for",
        "0s",
        "--max-failures",
        "all",
        "--max-skipped",
        "all",
        "--report",
        "report.json",
    ]);
    assert_eq!(run.code, 1, "{}", run.all());
    let id = run_id(&run.stdout);
    let printed = ending(&run.stdout, &id).replace(&closed.to_string(), "PORT");
    insta::assert_snapshot!("failure_while_connecting", printed);
    let line = crate::support::tenant_line(&run.stdout, "badinit");
    assert!(
        line.contains("FAILED while connecting: running init_sql") && line.ends_with("its version is unknown"),
        "{line}"
    );

    let reloaded = p.run(&["report", &id]);
    assert_eq!(reloaded.stdout.replace(&id, "RUN"), printed.split_once('\n').unwrap().1);
    let file: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(p.path().join("report.json")).unwrap()).unwrap();
    let badinit = file["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == "badinit")
        .unwrap();
    assert_eq!(badinit["during"], "connecting", "{badinit}");
    assert!(badinit.get("failed_migration").is_none(), "{badinit}");
}
