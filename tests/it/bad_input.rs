//! Bad fleet files, bad migrations folders and bad arguments: each is refused with exit 2
//! and a message naming the file, tenant or migration, before any tenant is touched.
//! And an unreachable tenant: reported within the connect timeout while the others run.

use std::net::TcpListener;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::support::{Project, Run, sqlite_column};

/// Unset in every run here, so `${...}` of it is an unset variable.
const UNSET: &str = "FM_SURELY_UNSET_VAR";

const GOOD: &str =
    "tenants:\n  - {id: a, url: \"sqlite://data/{id}.db\"}\n  - {id: b, url: \"sqlite://data/{id}.db\"}\n";

/// Tenants `a` and `b` at version 1, with migration 2 pending: a run that wrongly went
/// ahead would show.
fn project_at_v1() -> Project {
    let p = Project::new();
    p.fleet(GOOD)
        .migration("0001_one.up.sql", "CREATE TABLE t1 (x INT);\n")
        .migration("0001_one.down.sql", "DROP TABLE t1;\n");
    let up = run(&p, &["up"]);
    assert_eq!(up.code, 0, "{up:?}");
    p.migration("0002_two.up.sql", "CREATE TABLE t2 (x INT);\n")
        .migration("0002_two.down.sql", "DROP TABLE t2;\n");
    p
}

fn run(p: &Project, args: &[&str]) -> Run {
    p.command(args).env_remove(UNSET).output().unwrap().into()
}

fn versions(p: &Project, id: &str) -> Vec<String> {
    sqlite_column(
        &p.db_path(id),
        "SELECT CAST(version AS TEXT) FROM fleetmig_history ORDER BY version",
    )
}

fn tables(p: &Project, id: &str) -> Vec<String> {
    sqlite_column(
        &p.db_path(id),
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 't_' ORDER BY name",
    )
}

/// The database files in `data/`.
fn db_files(p: &Project) -> Vec<String> {
    let mut files: Vec<String> = std::fs::read_dir(p.path().join("data"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|f| f.ends_with(".db"))
        .collect();
    files.sort();
    files
}

/// `a` and `b` still at version 1, and no other tenant file appeared.
fn assert_untouched(p: &Project, what: &str) {
    for id in ["a", "b"] {
        assert_eq!(versions(p, id), ["1"], "{what}: tenant {id} changed");
        assert_eq!(tables(p, id), ["t1"], "{what}: tenant {id} changed");
    }
    assert_eq!(db_files(p), ["a.db", "b.db"], "{what}: a tenant file appeared");
}

/// Runs `args` and checks the refusal: exit 2, nothing on stdout, each of `expected` on
/// stderr, and no tenant touched.
fn assert_refused(p: &Project, case: &str, args: &[&str], expected: &[&str]) {
    let what = format!("{case}: fleetmig {}", args.join(" "));
    let run = run(p, args);
    assert_eq!(run.code, 2, "{what}: {run:?}");
    assert_eq!(run.stdout, "", "{what}: {run:?}");
    for e in expected {
        assert!(run.stderr.contains(e), "{what}: stderr lacks `{e}`:\n{}", run.stderr);
    }
    assert_untouched(p, &what);
}

#[test]
fn bad_fleet_files_are_refused_naming_file_and_place() {
    let cases: &[(&str, &str, &[&str])] = &[
        (
            "YAML syntax error",
            "  - {id: c, url: \"sqlite://data/{id}.db\"\n  - {id: d, url: \"sqlite://data/{id}.db\"}\n",
            &["did not find expected ',' or '}' at line 5 column 3"],
        ),
        (
            "unknown key",
            "  - id: c\n    url: sqlite://data/c.db\n    sceham: x\n",
            &["tenants[2]: unknown field `sceham`", "at line 6 column 5"],
        ),
        (
            "unknown key at the top",
            "tenant_defaults: {}\n",
            &["unknown field `tenant_defaults`", "at line 4 column 1"],
        ),
        (
            "duplicate tenant id",
            "  - {id: a, url: \"sqlite://data/a2.db\"}\n",
            &["tenants[2]: tenant id `a` is listed twice"],
        ),
        (
            "unset variable",
            "  - {id: c, url: \"sqlite://data/${FM_SURELY_UNSET_VAR}.db\"}\n",
            &["tenant `c` url: environment variable `FM_SURELY_UNSET_VAR` is not set"],
        ),
        (
            "SQL in a schema name",
            "  - {id: c, url: \"postgres://postgres@127.0.0.1:1/x\", schema: 'a\"; drop table x; --'}\n",
            &["tenant `c` schema: `a\\\"; drop table x; --` holds `\\\"`"],
        ),
        (
            "SQL in a database name",
            "  - {id: c, url: \"mysql://root@127.0.0.1:1/\", database: 'x`; drop database mysql; --'}\n",
            &[
                "tenant `c` database: `x`; drop database mysql; --` holds",
                "only ASCII letters",
            ],
        ),
        (
            "SQL in a schema made from the id",
            "  - {id: c, url: \"postgres://postgres@127.0.0.1:1/x\", schema: \"t_{id}; drop table x\"}\n",
            &["tenant `c` schema: `t_c; drop table x` holds `;`"],
        ),
        (
            "quote in a tenant id",
            "  - {id: \"o'brien\", url: \"sqlite://data/{id}.db\"}\n",
            &["tenants[2]: tenant id `o\\'brien` holds `\\'`"],
        ),
        (
            "unknown URL scheme",
            "  - {id: c, url: \"oracle://scott@127.0.0.1/x\"}\n",
            &["tenant `c` url: `oracle://scott@127.0.0.1/x` has an unknown scheme `oracle`"],
        ),
        (
            "host not defined",
            "  - {id: c, host: nope}\n",
            &["tenant `c`: host `nope` is not in `hosts`"],
        ),
        (
            "schema on a SQLite tenant",
            "  - {id: c, url: \"sqlite://data/c.db\", schema: s}\n",
            &["tenant `c`: a SQLite tenant takes no `schema`"],
        ),
    ];
    for (what, extra, expected) in cases {
        let p = project_at_v1();
        p.fleet(&format!("{GOOD}{extra}"));
        for args in [
            &["up"][..],
            &["status"],
            &["plan"],
            &["down", "--to", "0"],
            &["stamp", "2"],
        ] {
            let mut expected = expected.to_vec();
            expected.push("error: fleet file `tenants.yaml`");
            assert_refused(&p, what, args, &expected);
        }
    }
}

#[test]
fn bad_migrations_folders_are_refused_naming_the_file() {
    let misnamed_message = "does not fit the name NNNN_name.up.sql or NNNN_name.down.sql";
    for file in [
        "0003_add_email.sql",
        "3-add-email.up.sql",
        "V3__add_email.up.sql",
        "0003_add email.up.sql",
        "0000_zero.up.sql",
        "0003_add_email.UP.sql",
    ] {
        let p = project_at_v1();
        p.migration(file, "CREATE TABLE t3 (x INT);\n");
        let expected = format!("migrations folder `migrations`: `migrations/{file}` {misnamed_message}");
        assert_refused(&p, file, &["up"], &[&expected]);
        assert_refused(&p, file, &["status"], &[&expected]);
    }

    let p = project_at_v1();
    p.migration("002_again.up.sql", "CREATE TABLE t3 (x INT);\n");
    assert_refused(
        &p,
        "duplicate version",
        &["up"],
        &["version 2 is used by both `migrations/0002_two.up.sql` and `migrations/002_again.up.sql`"],
    );

    let p = project_at_v1();
    p.migration("0003_three.down.sql", "DROP TABLE t3;\n");
    assert_refused(
        &p,
        "orphan down script",
        &["up"],
        &["down script `migrations/0003_three.down.sql` has no up script beside it"],
    );

    let p = project_at_v1();
    std::fs::rename(p.path().join("migrations"), p.path().join("moved")).unwrap();
    assert_refused(&p, "no folder", &["up"], &["migrations folder `migrations` not found"]);
    assert_refused(
        &p,
        "no folder",
        &["plan"],
        &["migrations folder `migrations` not found"],
    );
    assert_refused(
        &p,
        "no folder",
        &["up", "--migrations", "db/migrations"],
        &["migrations folder `db/migrations` not found"],
    );
}

#[test]
fn down_past_a_migration_without_down_script_is_refused_before_anything_runs() {
    let p = Project::new();
    p.fleet("defaults: {url: \"sqlite://data/{id}.db\"}\ntenants:\n  - {id: a}\n  - {id: b}\n  - {id: c}\n")
        .migration("0001_one.up.sql", "CREATE TABLE t1 (x INT);\n")
        .migration("0001_one.down.sql", "DROP TABLE t1;\n")
        .migration("0002_two.up.sql", "CREATE TABLE t2 (x INT);\n")
        .migration("0002_two.down.sql", "-- Data is gone once this ran; nothing to undo.\n")
        .migration("0003_three.up.sql", "CREATE TABLE t3 (x INT);\n")
        .migration("0003_three.down.sql", "DROP TABLE t3;\n");
    assert_eq!(run(&p, &["up", "--select", "id=c", "--to", "1"]).code, 0);
    assert_eq!(run(&p, &["up"]).code, 0);
    let at_head = |p: &Project| {
        for id in ["a", "b", "c"] {
            assert_eq!(versions(p, id), ["1", "2", "3"], "tenant {id}");
            assert_eq!(tables(p, id), ["t1", "t2", "t3"], "tenant {id}");
        }
    };
    at_head(&p);

    // Migration 3 could be reverted, and would be first: a late refusal would show.
    for args in [&["down", "--to", "0"][..], &["down", "--to", "1"]] {
        let r = run(&p, args);
        assert_eq!(r.code, 2, "{args:?}: {r:?}");
        assert!(
            r.stderr.contains(&format!(
                "nothing was run: {}: migration 2 has an empty down script, only comments or white space (`migrations/0002_two.up.sql`): it cannot be reverted",
                args.join(" ")
            )),
            "{r:?}"
        );
        at_head(&p);
    }
    let r = run(&p, &["down", "--steps", "2"]);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(
        r.stderr
            .contains("nothing was run: tenant `a`: migration 2 has an empty down script, only comments or white space (`migrations/0002_two.up.sql`)"),
        "{r:?}"
    );
    at_head(&p);

    let r = run(&p, &["down", "--steps", "1"]);
    assert_eq!(r.code, 0, "{r:?}");
    for id in ["a", "b", "c"] {
        assert_eq!(versions(&p, id), ["1", "2"], "tenant {id}");
    }
}

#[test]
fn unknown_target_versions_are_refused() {
    let p = project_at_v1();
    for args in [
        &["up", "--to", "7"][..],
        &["down", "--to", "7"],
        &["status", "--to", "7"],
        &["plan", "--to", "7"],
        &["sql", "--engine", "sqlite", "--to", "7"],
    ] {
        assert_refused(
            &p,
            "unknown target",
            args,
            &["--to 7: no migration has version 7 (head is 2)"],
        );
    }
    assert_refused(
        &p,
        "unknown target",
        &["stamp", "7"],
        &["stamp 7: no migration has version 7 (head is 2)"],
    );
}

#[test]
fn selections_that_match_nothing_are_refused() {
    let p = project_at_v1();
    for args in [
        &["up"][..],
        &["down", "--steps", "1"],
        &["stamp", "2"],
        &["status"],
        &["plan"],
    ] {
        let mut args = args.to_vec();
        args.extend(["--select", "id=nope"]);
        assert_refused(
            &p,
            "no match",
            &args,
            &["no tenant in `tenants.yaml` matches --select id=nope"],
        );
    }
    assert_refused(
        &p,
        "no match",
        &["up", "--select", "tier=gold,region=eu", "--select", "id=x*"],
        &["no tenant in `tenants.yaml` matches --select tier=gold,region=eu --select id=x*"],
    );
}

#[test]
fn unreachable_tenants_fail_within_the_connect_timeout_and_the_others_run() {
    // Accepts connections and never answers: only a timeout ends the wait.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let p = Project::new();
    p.fleet(&format!(
        "hosts:
  closed: {{url: \"postgres://postgres@127.0.0.1:1/x\"}}
  mute: {{url: \"postgres://postgres@127.0.0.1:{port}/x\"}}
tenants:
  - {{id: refused, url: \"postgres://postgres@127.0.0.1:1/x\", schema: s}}
  - {{id: silent, url: \"postgres://postgres@127.0.0.1:{port}/x\", schema: s}}
  - {{id: a, url: \"sqlite://data/{{id}}.db\"}}
  - {{id: refused_host, host: closed, schema: s}}
  - {{id: silent_host, host: mute, schema: s}}
  - {{id: b, url: \"sqlite://data/{{id}}.db\"}}
"
    ))
    .migration("0001_one.up.sql", "CREATE TABLE t1 (x INT);\n");

    let mut child = p
        // Retries off: a tenant down from the start would otherwise be tried for a minute.
        .command(&["up", "--connect-timeout", "1s", "--retry-for", "0s"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // A guard against a hang, not a measurement.
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!("fleetmig up did not end within 60 s with --connect-timeout 1s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let up: Run = child.wait_with_output().unwrap().into();
    assert_eq!(up.code, 1, "{up:?}");
    let line = |id: &str| crate::support::tenant_line(&up.stdout, id).to_owned();
    assert!(line("refused").contains("SKIPPED (unreachable): connecting:"), "{up:?}");
    assert!(
        line("silent").contains("SKIPPED (unreachable): connecting: no answer within 1s"),
        "{up:?}"
    );
    for id in ["refused_host", "silent_host"] {
        assert!(line(id).contains("SKIPPED (unreachable): connecting:"), "{up:?}");
    }
    for id in ["a", "b"] {
        assert!(line(id).contains("0 -> 1"), "{up:?}");
        assert_eq!(versions(&p, id), ["1"]);
    }

    let status = run(&p, &["status", "--format", "json", "--connect-timeout", "1s"]);
    assert_eq!(status.code, 1, "{status:?}");
    let doc: serde_json::Value = serde_json::from_str(&status.stdout).unwrap();
    let states: Vec<(&str, &str)> = doc["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["id"].as_str().unwrap(), t["state"].as_str().unwrap()))
        .collect();
    assert_eq!(
        states,
        [
            ("refused", "unreachable"),
            ("silent", "unreachable"),
            ("a", "current"),
            ("refused_host", "unreachable"),
            ("silent_host", "unreachable"),
            ("b", "current")
        ]
    );
    drop(silent);
}
