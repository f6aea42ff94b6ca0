//! Refusals that protect tenants (edited and unknown migrations), concurrent runners, and
//! secrets kept out of every output.

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use sqlx::{Connection, Executor};

use crate::support::{My, Pg, Project, Run, sqlite_column, sqlite_exec};

/// Three migrations; each adds its version to `counter`, so a double run shows as a duplicate.
fn counted_migrations(p: &Project) {
    p.migration(
        "0001_counter.up.sql",
        "CREATE TABLE counter (version INT NOT NULL);\nINSERT INTO counter VALUES (1);\n",
    )
    .migration("0001_counter.down.sql", "DROP TABLE counter;\n")
    .migration(
        "0002_two.up.sql",
        "CREATE TABLE t2 (x INT);\nINSERT INTO counter VALUES (2);\n",
    )
    .migration(
        "0002_two.down.sql",
        "DROP TABLE t2;\nDELETE FROM counter WHERE version = 2;\n",
    )
    .migration(
        "0003_three.up.sql",
        "CREATE TABLE t3 (x INT);\nINSERT INTO counter VALUES (3);\n",
    )
    .migration(
        "0003_three.down.sql",
        "DROP TABLE t3;\nDELETE FROM counter WHERE version = 3;\n",
    );
}

/// The first line of text output about tenant `id`: its id is the first or, after a wave
/// number, the second word.
fn line_of<'a>(out: &'a str, id: &str) -> &'a str {
    crate::support::tenant_line(out, id)
}

/// `status --format json` as (tenant id, state, detail) rows.
fn status_json(p: &Project) -> Vec<(String, String, String)> {
    let run = p.run(&["status", "--format", "json"]);
    let doc: serde_json::Value = serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("{e}: {run:?}"));
    doc["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["id"].as_str().unwrap().to_owned(),
                t["state"].as_str().unwrap().to_owned(),
                t["detail"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect()
}

fn state_of(states: &[(String, String, String)], id: &str) -> (String, String) {
    let (_, state, detail) = states
        .iter()
        .find(|(i, _, _)| i == id)
        .unwrap_or_else(|| panic!("no `{id}` in {states:?}"));
    (state.clone(), detail.clone())
}

fn sqlite_versions(p: &Project, id: &str) -> Vec<String> {
    sqlite_column(
        &p.db_path(id),
        "SELECT CAST(version AS TEXT) FROM fleetmig_history ORDER BY version",
    )
}

fn sqlite_counter(p: &Project, id: &str) -> Vec<String> {
    sqlite_column(
        &p.db_path(id),
        "SELECT CAST(version AS TEXT) FROM counter ORDER BY version",
    )
}

fn pg_versions(pg: &Pg, schema: &str) -> Vec<String> {
    pg.column(&format!(
        "SELECT version::text FROM \"{schema}\".fleetmig_history ORDER BY version"
    ))
}

fn pg_counter(pg: &Pg, schema: &str) -> Vec<String> {
    pg.column(&format!(
        "SELECT version::text FROM \"{schema}\".counter ORDER BY version"
    ))
}

fn assert_code(run: &Run, code: i32) {
    assert_eq!(run.code, code, "{run:?}");
}

const SQLITE_PAIR: &str =
    "tenants:\n  - {id: acme, url: \"sqlite://data/{id}.db\"}\n  - {id: globex, url: \"sqlite://data/{id}.db\"}\n";

fn pg_pair(pg: &Pg) -> String {
    format!(
        "defaults: {{url: \"{}\", schema: \"t_{{id}}\"}}\ntenants:\n  - {{id: acme}}\n  - {{id: globex}}\n",
        pg.url()
    )
}

#[test]
fn edited_migration_is_refused_naming_tenant_version_and_file_on_sqlite() {
    let p = Project::new();
    p.fleet(SQLITE_PAIR);
    counted_migrations(&p);
    assert_code(&p.run(&["up", "--to", "2"]), 0);

    p.migration(
        "0002_two.up.sql",
        "CREATE TABLE t2 (x INT, y INT);\nINSERT INTO counter VALUES (2);\n",
    );
    let up = p.run(&["up"]);
    assert_code(&up, 1);
    for id in ["acme", "globex"] {
        let line = line_of(&up.stdout, id);
        assert!(line.contains("SKIPPED (drifted)"), "{line}");
        assert!(
            line.contains("migration 2 was edited after it was applied: `migrations/0002_two.up.sql`"),
            "{line}"
        );
        assert_eq!(
            sqlite_versions(&p, id),
            ["1", "2"],
            "migration 3 ran on a refused tenant"
        );
        assert_eq!(sqlite_counter(&p, id), ["1", "2"]);
    }

    let status = p.run(&["status"]);
    assert_code(&status, 1);
    assert!(line_of(&status.stdout, "acme").contains("drifted"), "{status:?}");
    let states = status_json(&p);
    for id in ["acme", "globex"] {
        let (state, detail) = state_of(&states, id);
        assert_eq!(state, "drifted");
        assert!(detail.contains("migration 2 was edited"), "{detail}");
    }
    let plan = p.run(&["plan"]);
    assert_code(&plan, 1);
    assert!(
        line_of(&plan.stdout, "globex").contains("nothing: migration 2 edited (see below)"),
        "{plan:?}"
    );

    // The edit was the only obstacle: undone, the run goes through.
    p.migration(
        "0002_two.up.sql",
        "CREATE TABLE t2 (x INT);\nINSERT INTO counter VALUES (2);\n",
    );
    assert_code(&p.run(&["up"]), 0);
    assert_eq!(sqlite_counter(&p, "acme"), ["1", "2", "3"]);
}

#[test]
fn unknown_applied_version_is_refused_naming_it_on_sqlite() {
    let p = Project::new();
    p.fleet(SQLITE_PAIR);
    counted_migrations(&p);
    p.remove_migration("0003_three.up.sql");
    p.remove_migration("0003_three.down.sql");
    assert_code(&p.run(&["up"]), 0);

    // globex was migrated by newer code that knows a version 99.
    sqlite_exec(
        &p.db_path("globex"),
        "INSERT INTO fleetmig_history (version, name, checksum, run_id) VALUES (99, 'from_newer_code', 'abc', 'elsewhere')",
    );
    counted_migrations(&p);
    let up = p.run(&["up"]);
    assert_code(&up, 1);
    let line = line_of(&up.stdout, "globex");
    assert!(
        line.contains(
            "SKIPPED (drifted): applied migration 99 (`from_newer_code`) has no file in the migrations folder"
        ),
        "{line}"
    );
    assert_eq!(sqlite_versions(&p, "globex"), ["1", "2", "99"]);
    assert_eq!(sqlite_counter(&p, "globex"), ["1", "2"]);
    assert!(line_of(&up.stdout, "acme").contains("2 -> 3"), "{up:?}");
    assert_eq!(sqlite_counter(&p, "acme"), ["1", "2", "3"]);
    let (state, detail) = state_of(&status_json(&p), "globex");
    assert_eq!(state, "ahead");
    assert!(detail.contains("99"), "{detail}");

    // A file deleted after it was applied.
    p.remove_migration("0002_two.up.sql");
    p.remove_migration("0002_two.down.sql");
    let up = p.run(&["up", "--select", "id=acme"]);
    assert_code(&up, 1);
    let line = line_of(&up.stdout, "acme");
    assert!(
        line.contains("applied migration 2 (`two`) has no file in the migrations folder"),
        "{line}"
    );
    let (state, detail) = state_of(&status_json(&p), "acme");
    assert_eq!(state, "drifted");
    assert!(detail.contains("applied migration 2 (`two`)"), "{detail}");
    assert_eq!(sqlite_versions(&p, "acme"), ["1", "2", "3"]);
}

#[test]
fn edited_and_unknown_migrations_are_refused_on_postgres() {
    let Some(pg) = Pg::create("drift") else { return };
    let p = Project::new();
    p.fleet(&pg_pair(&pg));
    counted_migrations(&p);
    assert_code(&p.run(&["up", "--to", "2"]), 0);

    p.migration(
        "0001_counter.up.sql",
        "CREATE TABLE counter (version BIGINT NOT NULL);\nINSERT INTO counter VALUES (1);\n",
    );
    let up = p.run(&["up"]);
    assert_code(&up, 1);
    let states = status_json(&p);
    for id in ["acme", "globex"] {
        let line = line_of(&up.stdout, id);
        assert!(
            line.contains(
                "SKIPPED (drifted): migration 1 was edited after it was applied: `migrations/0001_counter.up.sql`"
            ),
            "{line}"
        );
        let schema = format!("t_{id}");
        assert_eq!(
            pg_versions(&pg, &schema),
            ["1", "2"],
            "migration 3 ran on a refused tenant"
        );
        assert_eq!(pg_counter(&pg, &schema), ["1", "2"]);
        let (state, detail) = state_of(&states, id);
        assert_eq!(state, "drifted");
        assert!(detail.contains("migration 1 was edited"), "{detail}");
    }
    assert_code(&p.run(&["status"]), 1);

    counted_migrations(&p);
    pg.exec(
        "INSERT INTO t_globex.fleetmig_history (version, name, checksum, run_id) VALUES (99, 'from_newer_code', 'abc', 'elsewhere')",
    );
    let up = p.run(&["up"]);
    assert_code(&up, 1);
    assert!(
        line_of(&up.stdout, "globex").contains(
            "SKIPPED (drifted): applied migration 99 (`from_newer_code`) has no file in the migrations folder"
        ),
        "{up:?}"
    );
    assert_eq!(pg_versions(&pg, "t_globex"), ["1", "2", "99"]);
    assert_eq!(pg_counter(&pg, "t_globex"), ["1", "2"]);
    assert!(line_of(&up.stdout, "acme").contains("2 -> 3"), "{up:?}");
    assert_eq!(pg_counter(&pg, "t_acme"), ["1", "2", "3"]);
    assert_eq!(state_of(&status_json(&p), "globex").0, "ahead");

    p.remove_migration("0002_two.up.sql");
    p.remove_migration("0002_two.down.sql");
    let up = p.run(&["up", "--select", "id=acme"]);
    assert_code(&up, 1);
    assert!(
        line_of(&up.stdout, "acme").contains("applied migration 2 (`two`) has no file in the migrations folder"),
        "{up:?}"
    );
    let (state, detail) = state_of(&status_json(&p), "acme");
    assert_eq!(state, "drifted");
    assert!(detail.contains("applied migration 2 (`two`)"), "{detail}");
    assert_eq!(pg_versions(&pg, "t_acme"), ["1", "2", "3"]);
}

/// Starts two `fleetmig up` at once and returns both results.
fn two_runners(p: &Project) -> [Run; 2] {
    let spawn = || {
        // A runner kept waiting this long is stuck, not slow.
        p.command(&["up", "-j", "2", "--lock-wait", "15s"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (first, second) = (spawn(), spawn());
    [first, second].map(|c| Run::from(c.wait_with_output().unwrap()))
}

/// Each tenant was migrated by exactly one of the runners; the other found nothing to do.
fn assert_one_runner_each(runs: &[Run; 2], ids: &[String]) {
    for run in runs {
        assert_code(run, 0);
    }
    for id in ids {
        let applied = runs
            .iter()
            .filter(|r| line_of(&r.stdout, id).contains("0 -> 3  3 applied"))
            .count();
        let idle = runs
            .iter()
            .filter(|r| line_of(&r.stdout, id).contains("at 3, nothing to do"))
            .count();
        assert_eq!((applied, idle), (1, 1), "tenant {id}: {runs:#?}");
    }
}

#[test]
fn two_runners_apply_each_migration_once_per_tenant_on_sqlite() {
    // Runners collide at random moments; several rounds on new files give a lock that only
    // mostly works a fair chance to show it.
    let ids: Vec<String> = (1..=8).map(|i| format!("t{i}")).collect();
    let mut yaml = "defaults: {url: \"sqlite://data/{id}.db\"}\ntenants:\n".to_owned();
    for id in &ids {
        yaml.push_str(&format!("  - {{id: {id}}}\n"));
    }
    for _ in 0..20 {
        let p = Project::new();
        p.fleet(&yaml);
        counted_migrations(&p);
        let runs = two_runners(&p);
        assert_one_runner_each(&runs, &ids);
        for id in &ids {
            assert_eq!(sqlite_versions(&p, id), ["1", "2", "3"], "{id}");
            assert_eq!(sqlite_counter(&p, id), ["1", "2", "3"], "{id}");
        }
    }
}

#[test]
fn two_runners_apply_each_migration_once_per_tenant_on_postgres_schemas() {
    let Some(pg) = Pg::create("race") else { return };
    let p = Project::new();
    let ids: Vec<String> = (1..=4).map(|i| format!("t{i}")).collect();
    let mut yaml = format!("defaults: {{url: \"{}\", schema: \"s_{{id}}\"}}\ntenants:\n", pg.url());
    for id in &ids {
        yaml.push_str(&format!("  - {{id: {id}}}\n"));
    }
    p.fleet(&yaml);
    counted_migrations(&p);
    let runs = two_runners(&p);
    assert_one_runner_each(&runs, &ids);
    for id in &ids {
        let schema = format!("s_{id}");
        assert_eq!(pg_versions(&pg, &schema), ["1", "2", "3"], "{id}");
        assert_eq!(pg_counter(&pg, &schema), ["1", "2", "3"], "{id}");
    }
}

#[test]
fn two_runners_apply_each_migration_once_per_tenant_on_mariadb() {
    let Some(my) = My::create("race") else { return };
    let p = Project::new();
    let ids: Vec<String> = (1..=4).map(|i| format!("t{i}")).collect();
    let mut yaml = format!(
        "defaults: {{url: \"mysql://root@127.0.0.1:3306/\", database: \"{}_{{id}}\"}}\ntenants:\n",
        my.prefix
    );
    for id in &ids {
        yaml.push_str(&format!("  - {{id: {id}}}\n"));
    }
    p.fleet(&yaml);
    counted_migrations(&p);
    let runs = two_runners(&p);
    assert_one_runner_each(&runs, &ids);
    for id in &ids {
        let db = format!("{}_{id}", my.prefix);
        let history = my.column(&format!(
            "SELECT CAST(version AS CHAR) FROM `{db}`.fleetmig_history ORDER BY version"
        ));
        assert_eq!(history, ["1", "2", "3"], "{id}");
        let counter = my.column(&format!(
            "SELECT CAST(version AS CHAR) FROM `{db}`.counter ORDER BY version"
        ));
        assert_eq!(counter, ["1", "2", "3"], "{id}");
    }
}

/// Polls `done` every 50 ms for up to 60 s: synchronisation with another process, not a
/// timing assertion.
fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(Instant::now() < deadline, "gave up waiting until {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn finish(child: Child) -> Run {
    child.wait_with_output().unwrap().into()
}

#[test]
fn schema_tenants_in_one_database_migrate_at_the_same_time() {
    let Some(pg) = Pg::create("nowait") else { return };
    // Each tenant has a `gate` table; migration 2 locks it. The test holds tenant a's gate.
    pg.exec(
        "CREATE SCHEMA t_a; CREATE TABLE t_a.gate (x INT);
         CREATE SCHEMA t_b; CREATE TABLE t_b.gate (x INT);",
    );
    let p = Project::new();
    p.fleet(&format!(
        "defaults: {{url: \"{}\", schema: \"t_{{id}}\"}}\ntenants:\n  - {{id: a}}\n  - {{id: b}}\n",
        pg.url()
    ))
    .migration(
        "0001_counter.up.sql",
        "CREATE TABLE counter (version INT NOT NULL);\nINSERT INTO counter VALUES (1);\n",
    )
    .migration(
        "0002_gated.up.sql",
        "LOCK TABLE gate IN ACCESS EXCLUSIVE MODE;\nINSERT INTO counter VALUES (2);\n",
    );

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut holder = rt.block_on(async {
        let mut c = sqlx::PgConnection::connect(&pg.url()).await.unwrap();
        c.execute("BEGIN; LOCK TABLE t_a.gate IN ACCESS EXCLUSIVE MODE")
            .await
            .unwrap();
        c
    });

    let mut a = p
        .command(&["up", "--select", "id=a", "--lock-timeout", "10m"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let waiting_on_gate = "SELECT count(*)::text FROM pg_stat_activity
         WHERE datname = current_database() AND application_name = 'fleetmig'
           AND wait_event_type = 'Lock' AND query LIKE '%LOCK TABLE gate %'";
    wait_until("tenant a waits on its gate or ends", || {
        a.try_wait().unwrap().is_some() || pg.column(waiting_on_gate) == ["1"]
    });
    assert!(
        a.try_wait().unwrap().is_none(),
        "tenant a's run ended early: {:?}",
        finish(a)
    );

    // A runner that had to wait for a's lock would give up after 5 s and exit 1.
    let b = p.run(&["up", "--select", "id=b", "--lock-wait", "5s"]);
    assert_code(&b, 0);
    assert!(line_of(&b.stdout, "b").contains("0 -> 2"), "{b:?}");
    assert_eq!(pg_versions(&pg, "t_b"), ["1", "2"]);
    assert_eq!(pg_counter(&pg, "t_b"), ["1", "2"]);

    assert!(
        a.try_wait().unwrap().is_none(),
        "tenant a finished while its gate was held"
    );
    assert_eq!(pg.column(waiting_on_gate), ["1"]);
    assert_eq!(pg_versions(&pg, "t_a"), ["1"]);

    rt.block_on(async {
        holder.execute("COMMIT").await.unwrap();
        holder.close().await.unwrap();
    });
    let a = finish(a);
    assert_code(&a, 0);
    assert!(line_of(&a.stdout, "a").contains("0 -> 2"), "{a:?}");
    assert_eq!(pg_versions(&pg, "t_a"), ["1", "2"]);
    assert_eq!(pg_counter(&pg, "t_a"), ["1", "2"]);
}

const SECRETS: [&str; 9] = [
    "PlantedSecret1",
    "PlantedSecret2",
    "PlantedSecret3",
    "PlantedSecret4",
    "PlantedSecret5",
    "PlantedSecret6",
    "PlantedSecret7",
    "PlantedSecret8",
    "PlantedSecret9",
];

fn assert_no_secret(what: &str, run: &Run) {
    for secret in SECRETS {
        assert!(!run.all().contains(secret), "`{what}` showed {secret}:\n{}", run.all());
    }
}

#[test]
fn planted_passwords_appear_in_no_output() {
    let Some(pg) = Pg::create("secret") else { return };
    let my = My::create("secret");
    let p = Project::new();
    p.migration("0001_counter.up.sql", "CREATE TABLE counter (version INT NOT NULL);\n")
        .migration("0001_counter.down.sql", "DROP TABLE counter;\n")
        .migration("0002_two.up.sql", "CREATE TABLE t2 (x INT);\n")
        .migration("0002_two.down.sql", "DROP TABLE t2;\n");
    let (my_host, my_tenant) = match &my {
        Some(my) => (
            "  my: {url: \"mysql://root:PlantedSecret3@127.0.0.1:3306/\"}\n".to_owned(),
            format!("  - {{id: my, host: my, database: \"{}_t\"}}\n", my.prefix),
        ),
        None => (String::new(), String::new()),
    };
    let hosts = format!(
        "hosts:
  dead: {{url: \"postgres://postgres:PlantedSecret1@127.0.0.1:1/x\"}}
  live: {{url: \"postgres://postgres:${{FM_TEST_PW}}@127.0.0.1:5432/{db}\"}}
  odd: {{url: \"postgres://postgres:PlantedSecret5%21@127.0.0.1:1/x\"}}
  query: {{url: \"postgres://postgres@127.0.0.1:1/x?sslmode=disable&password=PlantedSecret6\"}}
{my_host}",
        db = pg.name
    );
    let tenants = format!(
        "tenants:
  - {{id: dead, host: dead, schema: s_dead}}
  - {{id: live, host: live, schema: s_live}}
  - {{id: odd, host: odd, schema: s_odd}}
  - {{id: query, host: query, schema: s_query}}
{my_tenant}"
    );
    p.fleet(&format!("{hosts}{tenants}"));
    let env = [("FM_TEST_PW", "PlantedSecret2")];
    // Unreachable hosts may be retried until the connect timeout: keep it short. `up` and
    // `down` would try them again for a minute: not here.
    let with_timeout = |args: &[&'static str]| {
        let mut args = args.to_vec();
        if !args.contains(&"--connect-timeout") {
            args.extend(["--connect-timeout", "1s"]);
        }
        if matches!(args[0], "up" | "down") {
            args.extend(["--retry-for", "0s"]);
        }
        args
    };

    let commands: &[(&[&str], i32)] = &[
        (&["up", "--to", "1"], 1),
        (&["up", "--format", "json"], 1),
        (&["up", "--report", "run.html"], 1),
        (&["status"], 1),
        (&["status", "--format", "json"], 1),
        (&["plan"], 1),
        (&["plan", "--format", "json"], 1),
        (&["history"], 0),
        (&["history", "--format", "json"], 0),
        (&["sql", "--select", "id=live"], 0),
        (&["sql", "--select", "id=live", "--schema", "s_live"], 0),
        (&["sql"], 2),
        (&["stamp", "1"], 1),
        (&["stamp", "2", "--format", "json"], 1),
        (&["down", "--steps", "1"], 1),
        (&["down", "--to", "0", "--format", "json", "--yes"], 1),
        (&["up", "--to", "7"], 2),
        (&["up", "--select", "id=nobody"], 2),
        (&["up", "--connect-timeout", "1ms"], 1),
    ];
    for (args, code) in commands {
        let run = p.run_env(&with_timeout(args), &env);
        assert_eq!(run.code, *code, "{args:?}: {run:?}");
        assert_no_secret(&args.join(" "), &run);
    }
    let page = std::fs::read_to_string(p.path().join("run.html")).unwrap();
    for secret in SECRETS {
        assert!(!page.contains(secret), "the HTML report showed {secret}:\n{page}");
    }
    assert!(page.contains("Failures"), "{page}");
    let traced = p.run_env(
        &with_timeout(&["up"]),
        &[("FM_TEST_PW", "PlantedSecret2"), ("FLEETMIG_LOG", "trace")],
    );
    assert_eq!(traced.code, 1, "{traced:?}");
    assert_no_secret("up with FLEETMIG_LOG=trace", &traced);
    assert_eq!(
        pg_versions(&pg, "s_live"),
        ["1", "2"],
        "the live tenant was really migrated"
    );

    // Configuration errors, each in a file that also holds the passwords.
    let bad_files: &[(&str, String)] = &[
        (
            "unknown key",
            format!("{hosts}{tenants}  - {{id: extra, host: live, schema: s_x, sceham: y}}\n"),
        ),
        (
            "port that is not a number",
            format!(
                "{hosts}{tenants}  - {{id: extra, url: \"postgres://postgres:PlantedSecret4@127.0.0.1:notaport/x\"}}\n"
            ),
        ),
        (
            "unknown scheme",
            format!("{hosts}{tenants}  - {{id: extra, url: \"oracle://scott:PlantedSecret4@127.0.0.1/x\"}}\n"),
        ),
        (
            "host written as a bare URL",
            format!("{hosts}  bare: \"postgres://postgres:PlantedSecret4@127.0.0.1:1/x\"\n{tenants}"),
        ),
        (
            "URL pasted as a tenant",
            format!("{hosts}{tenants}  - \"postgres://postgres:PlantedSecret4@127.0.0.1:1/x\"\n"),
        ),
        (
            "URL pasted as a tenant id",
            format!("{hosts}{tenants}  - {{id: \"postgres://postgres:PlantedSecret4@127.0.0.1:1/x\", host: live}}\n"),
        ),
        (
            "YAML syntax error",
            format!("{hosts}{tenants}  - {{id: extra, url: \"postgres://postgres:PlantedSecret4@127.0.0.1:1/x\"\n"),
        ),
        (
            "a parameter the client would ignore, holding a password",
            format!(
                "{hosts}{tenants}  - {{id: extra, url: \"postgres://postgres@127.0.0.1:1/x?sslpassword=PlantedSecret7\", schema: s}}\n"
            ),
        ),
        (
            "unset variable beside a password",
            format!(
                "{hosts}{tenants}  - {{id: extra, url: \"postgres://postgres:PlantedSecret4@127.0.0.1:1/${{FM_UNSET_FOR_SECRET_TEST}}\"}}\n"
            ),
        ),
    ];
    for (what, yaml) in bad_files {
        p.fleet(yaml);
        for args in [&["up"][..], &["status", "--format", "json"], &["plan"]] {
            let run = p.run_env(args, &env);
            assert_eq!(run.code, 2, "{what}: {args:?}: {run:?}");
            assert!(run.stderr.contains("tenants.yaml"), "{what}: {run:?}");
            assert_no_secret(&format!("{what}: {}", args.join(" ")), &run);
        }
    }

    // Passwords as URL query parameters of a ledger (flag and environment) or a registry
    // that cannot be used: unreachable, misconfigured, or naming a missing database.
    p.fleet(&format!("{hosts}{tenants}"));
    for ledger in [
        "postgres://postgres@127.0.0.1:1/x?password=PlantedSecret8".to_owned(),
        "postgres://postgres@127.0.0.1:5432/x?sslmode=bogus&password=PlantedSecret8".to_owned(),
        format!(
            "postgres://postgres@127.0.0.1:5432/{}_none?password=PlantedSecret8&sslpassword=PlantedSecret9",
            pg.name
        ),
    ] {
        let run = p.run(&["up", "--ledger", &ledger, "--connect-timeout", "1s"]);
        assert_ne!(run.code, 0, "{run:?}");
        assert_no_secret("up --ledger", &run);
        let run = p.run_env(&with_timeout(&["runs"]), &[("FLEETMIG_LEDGER", &ledger)]);
        assert_ne!(run.code, 0, "{run:?}");
        assert_no_secret("FLEETMIG_LEDGER runs", &run);
    }
    for registry in [
        "postgres://postgres@127.0.0.1:1/x?password=PlantedSecret8",
        "postgres://postgres@127.0.0.1:5432/x?sslmode=bogus&password=PlantedSecret8",
        "mysql://root@127.0.0.1:1/x?password=PlantedSecret9",
    ] {
        p.fleet(&format!(
            "discover: {{url: \"{registry}\", query: \"SELECT 'a' AS id\"}}\n"
        ));
        for args in [&["status"][..], &["up"]] {
            let run = p.run(&with_timeout(args));
            assert_eq!(run.code, 2, "{registry}: {run:?}");
            assert!(run.stderr.contains("discover"), "{run:?}");
            assert_no_secret(&format!("discover {registry}"), &run);
        }
    }
}
