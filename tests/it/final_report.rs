//! The final report as a person reads it at the end of `up` and from `report RUN`: what
//! needs a look first, the rest counted past a screenful, every row one flag away, and
//! failures before any migration saying where they happened.

use crate::support::sqlite_fleet;
use crate::support::{Pg, Project, end_session, psql_session, wait_until};

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

/// Without a terminal (a CI log), a no-op over many tenants lists the first 40 found at
/// their target, counts the rest in one line before the summary, and still lists every
/// tenant that changed; JSON still has every tenant's events.
#[test]
fn a_log_lists_forty_tenants_at_their_target_and_counts_the_rest() {
    let ids: Vec<(String, bool)> = (1..=60).map(|i| (format!("t{i:02}"), false)).collect();
    let refs: Vec<(&str, bool)> = ids.iter().map(|(i, c)| (i.as_str(), *c)).collect();
    let p = sqlite_fleet(&refs, &[]);
    let first = p.run(&["up", "--to", "3"]);
    assert_eq!(first.code, 0, "{}", first.all());
    assert_eq!(first.stdout.matches("0 -> 3").count(), 60, "{}", first.stdout);
    // One tenant behind the rest: it changes, the other 59 have nothing to do.
    let down = p.run(&["down", "--to", "2", "--select", "id=t60"]);
    assert_eq!(down.code, 0, "{}", down.all());
    let run = p.run(&["up", "--to", "3"]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert_eq!(run.stdout.matches("nothing to do").count(), 40, "{}", run.stdout);
    assert_eq!(run.stdout.matches(" started").count(), 41, "{}", run.stdout);
    assert!(run.stdout.contains("t60     2 -> 3  1 applied"), "{}", run.stdout);
    let counted = run
        .stdout
        .find(" 19 more tenant(s) at the target, not listed one by one\n");
    let summary = run.stdout.find(" 60 tenant(s): 1 changed, 59 already at the target");
    assert!(counted.is_some() && counted < summary, "{}", run.stdout);
    let json = p.run(&["up", "--to", "3", "--format", "json"]);
    assert_eq!(
        json.stdout.matches("\"event\":\"tenant_finished\"").count(),
        60,
        "{}",
        json.stdout
    );
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

/// The row of tenant `id` in a final table: its first five columns, and its DETAIL.
fn row<'a>(table: &'a str, id: &str) -> (Vec<&'a str>, &'a str) {
    let detail_at = table
        .lines()
        .find_map(|l| l.strip_prefix("TENANT ").and_then(|_| l.find("DETAIL")))
        .unwrap_or_else(|| panic!("no table in:\n{table}"));
    let line = table
        .lines()
        .find(|l| l.split_whitespace().next() == Some(id))
        .unwrap_or_else(|| panic!("no row for {id} in:\n{table}"));
    let columns = line.split_whitespace().take(5).collect();
    (columns, line.get(detail_at..).unwrap_or_default())
}

/// Taking a tenant's lock fails two ways. `held`: another session holds it from the start,
/// so it is skipped as locked before its history could be read (START and FINAL `?`).
/// `moved`: it applies 0002, loses its session during 0003 (the server ends it), and its
/// retry finds the lock taken by another session: it failed while locking, and the report
/// shows where its history said it started and where its committed step left it.
#[test]
fn a_failure_while_locking_shows_the_version_it_was_at_when_known() {
    let Some(pg) = Pg::create("while_locking") else {
        return;
    };
    let p = Project::new();
    p.fleet(&format!(
        "hosts: {{ pg: {{ url: \"{}\" }} }}\ndefaults: {{ host: pg, schema: \"{{id}}\" }}\n\
         tenants:\n  - {{ id: held }}\n  - {{ id: moved }}\n",
        pg.url()
    ));
    p.migration("0001_t.up.sql", "CREATE TABLE t (id int);");
    let first = p.run(&["up"]);
    assert_eq!(first.code, 0, "{}", first.all());
    p.migration("0002_u.up.sql", "CREATE TABLE u (id int);");
    p.migration("0003_slow.up.sql", "SELECT pg_sleep(60);");
    let lock = |schema: &str| {
        format!(
            "SELECT pg_advisory_lock(hashtextextended('fleetmig/{}/{schema}', 0)); SELECT pg_sleep(60);",
            pg.name
        )
    };
    let count = |sql: &str| pg.column(&format!("SELECT count(*)::text FROM {sql}"))[0].clone();
    let locks = |name: &str, granted: bool| {
        count(&format!(
            "pg_locks l JOIN pg_stat_activity a USING (pid) WHERE a.datname = current_database() \
             AND a.application_name = '{name}' AND l.locktype = 'advisory' AND l.granted = {granted}"
        ))
    };
    let holder = psql_session(&pg, "holds_held", &lock("held"));
    wait_until("the lock of `held` is held", || locks("holds_held", true) == "1");

    let up = crate::support::Spawned::new(p.command(&[
        "up",
        "--lock-wait",
        "0s",
        "--retries",
        "1",
        "--max-failures",
        "all",
        "--max-skipped",
        "all",
        "--rollback",
        "none",
        "--report",
        "report.json",
    ]));
    let in_0003 = "pg_stat_activity WHERE datname = current_database() \
                   AND application_name = 'fleetmig' AND query LIKE '%pg_sleep(60)%'";
    wait_until("`moved` runs 0003", || count(in_0003) == "1");
    // Queued behind `moved`'s session, it takes the lock as soon as that session ends.
    let taker = psql_session(&pg, "takes_moved", &lock("moved"));
    wait_until("the lock of `moved` is asked for", || {
        locks("takes_moved", false) == "1"
    });
    pg.exec(&format!("SELECT pg_terminate_backend(pid) FROM {in_0003}"));
    let (code, lines, stderr) = up.finish(std::time::Duration::from_secs(60));
    end_session(&pg, "holds_held", holder);
    end_session(&pg, "takes_moved", taker);
    let stdout = lines.join("\n") + "\n";
    assert_eq!(code, Some(1), "{stdout}\n{stderr}");

    let by = |name: &str| format!("waiting for the tenant lock: still held after 0s (--lock-wait) by `{name}`");
    let failed = stdout
        .lines()
        .find(|l| l.contains(" moved ") && l.contains("FAILED"))
        .unwrap_or_else(|| panic!("{stdout}"));
    assert!(
        failed.contains(&format!("FAILED while locking: {}", by("takes_moved")))
            && failed.ends_with("; 1 applied, left at 2"),
        "{failed}"
    );
    let id = run_id(&stdout);
    let printed = ending(&stdout, &id);
    let table = printed.split_once('\n').unwrap().1;
    let (moved, detail) = row(table, "moved");
    assert_eq!(moved, ["moved", "1", "failed", "1", "2"], "{table}");
    assert!(
        detail.starts_with(&format!("while locking (before migration 3): {}", by("takes_moved"))),
        "{table}"
    );
    // Its history was never read: the version is unknown, and saying so is the truth.
    let (held, detail) = row(table, "held");
    assert_eq!(held, ["held", "1", "skipped", "?", "?"], "{table}");
    assert!(detail.starts_with(&format!("locked: {}", by("holds_held"))), "{table}");
    let at = |id: &str| table.find(&format!("\n{id} ")).unwrap();
    assert!(at("moved") < at("held"), "failures first: {table}");
    assert_eq!(
        pg.column("SELECT max(version::int)::text FROM moved.fleetmig_history WHERE NOT dirty"),
        ["2"],
        "FINAL is where its history is"
    );

    let reloaded = p.run(&["report", &id]);
    assert_eq!(reloaded.stdout.replace(&id, "RUN"), table);
    let file: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(p.path().join("report.json")).unwrap()).unwrap();
    let tenant = |id: &str| {
        file["tenants"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["id"] == id)
            .unwrap()
            .clone()
    };
    let moved = tenant("moved");
    assert_eq!(
        (&moved["status"], &moved["during"], &moved["failed_migration"]),
        (&"failed".into(), &"locking".into(), &3.into()),
        "{moved}"
    );
    assert_eq!(
        (&moved["start_version"], &moved["final_version"]),
        (&1.into(), &2.into()),
        "{moved}"
    );
    let held = tenant("held");
    assert_eq!(held["status"], "skipped", "{held}");
    assert!(
        held["start_version"].is_null() && held["final_version"].is_null(),
        "{held}"
    );
}
