//! Hostile and malformed input: migration files that are almost right, scripts that would
//! hang or inject, numbers and durations out of range, registry rows that try to run SQL,
//! passwords in URL query parameters. Each is refused with exit 2 and a message naming the
//! file, key or row, before anything is touched; the offline script runs on every engine.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::{My, Pg, Project, Run, sqlite_column, sqlite_exec};

const FLEET: &str = "tenants:\n  - {id: a, url: \"sqlite://data/{id}.db\"}\n";

/// Runs fleetmig, failing the test (and killing the process) when it takes longer than
/// `limit`: for inputs that used to hang.
fn run_within(p: &Project, args: &[&str], limit: Duration) -> Run {
    let child = p
        .command(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(limit) {
        Ok(output) => output.unwrap().into(),
        Err(_) => {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            panic!("fleetmig {args:?} hung for {limit:?} and was killed");
        }
    }
}

fn run(p: &Project, args: &[&str]) -> Run {
    run_within(p, args, Duration::from_secs(60))
}

/// Exit 2, nothing on stdout, each of `expected` on stderr.
fn assert_refused(what: &str, run: &Run, expected: &[&str]) {
    assert_eq!(run.code, 2, "{what}: {run:?}");
    assert_eq!(run.stdout, "", "{what}: {run:?}");
    for e in expected {
        assert!(run.stderr.contains(e), "{what}: stderr lacks `{e}`:\n{}", run.stderr);
    }
}

fn history(db: &Path) -> Vec<String> {
    sqlite_column(
        db,
        "SELECT CAST(version AS TEXT) FROM fleetmig_history ORDER BY version",
    )
}

/// A project whose SQLite tenant `a` is at version 1.
fn project_at_v1() -> Project {
    let p = Project::new();
    p.fleet(FLEET)
        .migration("0001_one.up.sql", "CREATE TABLE t1 (x INT);\n");
    let up = run(&p, &["up"]);
    assert_eq!(up.code, 0, "{up:?}");
    p
}

#[test]
fn a_nul_byte_in_a_migration_is_refused_naming_file_and_offset() {
    let p = project_at_v1();
    p.migration("0002_two.up.sql", "CREATE TABLE t2 (x INT);\0\n");
    let up = run_within(&p, &["up"], Duration::from_secs(20));
    assert_refused(
        "NUL byte",
        &up,
        &["`migrations/0002_two.up.sql` holds a NUL byte at byte offset 24"],
    );
    assert_eq!(history(&p.db_path("a")), ["1"]);
}

#[test]
fn one_version_spelled_twice_is_refused_naming_both_files() {
    let p = project_at_v1();
    p.migration("0002_b.up.sql", "CREATE TABLE t2 (x INT);\n")
        .migration("002_b.up.sql", "CREATE TABLE t3 (x INT);\n");
    for args in [&["up"][..], &["status"], &["history"]] {
        let r = run(&p, args);
        assert_refused(
            "0002_b and 002_b",
            &r,
            &["version 2 is used by both `migrations/0002_b.up.sql` and `migrations/002_b.up.sql`"],
        );
    }
    assert_eq!(history(&p.db_path("a")), ["1"]);
}

#[test]
fn files_that_are_almost_migrations_are_refused_saying_why() {
    let cases: &[(&str, &str)] = &[
        ("0002_two.up.SQL", "the suffix must be lowercase"),
        ("0002_two.up.sq-", "does not fit the name NNNN_name.up.sql"),
        ("0002_two.up.sql ", "the name begins or ends with white space"),
        (
            "0000_zero.up.sql",
            "version 0 means \"nothing applied\"; number migrations from 1",
        ),
        (
            "9223372036854775808_big.up.sql",
            "version 9223372036854775808 is past the largest version, 9223372036854775807",
        ),
    ];
    for (file, why) in cases {
        let p = project_at_v1();
        p.migration(file, "CREATE TABLE t2 (x INT);\n");
        let r = run(&p, &["up"]);
        assert_refused(file, &r, &[&format!("`migrations/{file}` does not fit the name"), why]);
        assert_eq!(history(&p.db_path("a")), ["1"], "{file}");
    }
}

#[test]
fn a_folder_or_a_version_prefixed_file_that_is_not_a_migration_is_refused() {
    let cases: &[(&str, &str)] = &[
        ("0002_two.up.sql/", "is not a regular file (a folder)"),
        ("0002_two.up", "does not fit the name"),
        ("0002_two.up-sql", "does not fit the name"),
        ("0002_two.upsql", "does not fit the name"),
        ("0002_two.txt", "does not fit the name"),
    ];
    for (file, why) in cases {
        let p = project_at_v1();
        let path = p.path().join("migrations").join(file.trim_end_matches('/'));
        if file.ends_with('/') {
            std::fs::create_dir(&path).unwrap();
        } else {
            std::fs::write(&path, "CREATE TABLE t2 (x INT);\n").unwrap();
        }
        let r = run(&p, &["up"]);
        let file = file.trim_end_matches('/');
        assert_refused(file, &r, &[&format!("`migrations/{file}`"), why]);
        assert_eq!(history(&p.db_path("a")), ["1"], "{file}");
    }
    // Still left alone: hidden files, other files, and folders that are not named like a
    // migration.
    let p = project_at_v1();
    let dir = p.path().join("migrations");
    std::fs::write(dir.join("README.md"), "notes\n").unwrap();
    std::fs::write(dir.join(".0002_two.up.sql.swp"), "x").unwrap();
    std::fs::create_dir(dir.join("archive")).unwrap();
    let r = run(&p, &["status"]);
    assert_eq!(r.code, 0, "{r:?}");
}

#[test]
fn a_url_its_database_client_would_refuse_is_a_fleet_file_error_not_an_unreachable_fleet() {
    let p = Project::new();
    p.migration("0001_one.up.sql", "CREATE TABLE t1 (x INT);\n").fleet(
        "hosts:\n  main: {url: \"postgres://postgres:PlantedSecret@127.0.0.1:5432/postgres?sslmode=bogus\"}\n\
         defaults: {host: main, schema: \"s_{id}\"}\ntenants:\n  - {id: a}\n  - {id: b}\n",
    );
    for args in [&["up"][..], &["status"], &["plan"]] {
        let r = run_within(&p, args, Duration::from_secs(20));
        assert_refused(
            "sslmode=bogus",
            &r,
            &[
                "host `main` url: `postgres://postgres:***@127.0.0.1:5432/postgres?sslmode=bogus`: unknown value \"bogus\"",
            ],
        );
        assert!(!r.stderr.contains("PlantedSecret"), "{r:?}");
    }
}

#[test]
fn a_migration_saved_with_a_byte_order_mark_keeps_its_marker_and_runs_on_postgres() {
    let Some(pg) = Pg::create("bom") else { return };
    let p = Project::new();
    p.fleet(&format!(
        "tenants:\n  - {{id: a, url: \"{}\", schema: s_bom}}\n",
        pg.url()
    ))
    .migration("0001_t.up.sql", "\u{feff}CREATE TABLE t (a INT);\n")
    .migration(
        "0002_i.up.sql",
        "\u{feff}-- fleetmig: no-transaction\nCREATE INDEX CONCURRENTLY i ON t (a);\n",
    );
    let r = run(&p, &["up", "--retry-for", "0s"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(
        pg.column("SELECT indexname::text FROM pg_indexes WHERE schemaname = 's_bom' AND tablename = 't'"),
        ["i"]
    );
    let history = run(&p, &["history"]);
    assert!(
        history
            .stdout
            .lines()
            .any(|l| l.starts_with("2 ") && l.contains(" no ")),
        "{history:?}"
    );
}

#[cfg(unix)]
#[test]
fn a_named_pipe_called_like_a_migration_is_refused_without_blocking() {
    let p = project_at_v1();
    let fifo = p.path().join("migrations").join("0002_pipe.up.sql");
    assert!(Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    let r = run_within(&p, &["up"], Duration::from_secs(20));
    assert_refused(
        "FIFO",
        &r,
        &["`migrations/0002_pipe.up.sql` is not a regular file (a named pipe)"],
    );
}

/// Migrations whose last statement has no `;`, one of them ending in a comment line.
fn unterminated_set(p: &Project) {
    p.migration("0001_one.up.sql", "CREATE TABLE t1 (x INT)")
        .migration("0001_one.down.sql", "DROP TABLE t1")
        .migration(
            "0002_two.up.sql",
            "CREATE TABLE t2 (x INT);\nINSERT INTO t2 VALUES (2)\n-- the end\n",
        )
        .migration("0002_two.down.sql", "DROP TABLE t2 -- gone\n")
        .migration("0003_three.up.sql", "CREATE TABLE t3 (x INT); -- done;\n");
}

fn offline(p: &Project, args: &[&str]) -> String {
    let r = run(p, args);
    assert_eq!(r.code, 0, "{args:?}: {r:?}");
    r.stdout
}

fn pipe_into(mut cmd: Command, script: &str) {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(script.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?} failed on the script:\n{}\n{script}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn offline_scripts_of_unterminated_migrations_run_in_sqlite() {
    let p = Project::new();
    p.fleet(FLEET);
    unterminated_set(&p);
    let db = p.path().join("offline.db");
    sqlite_exec(&db, &offline(&p, &["sql", "--engine", "sqlite"]));
    assert_eq!(history(&db), ["1", "2", "3"]);
    assert_eq!(sqlite_column(&db, "SELECT CAST(x AS TEXT) FROM t2"), ["2"]);
    p.remove_migration("0003_three.up.sql");
    sqlite_exec(
        &db,
        &offline(&p, &["sql", "--engine", "sqlite", "--from", "2", "--to", "0"]),
    );
    assert_eq!(history(&db), ["3"]);
}

#[test]
fn offline_scripts_of_unterminated_migrations_run_in_psql() {
    let Some(pg) = Pg::create("offline_term") else { return };
    let p = Project::new();
    p.fleet(FLEET);
    unterminated_set(&p);
    let psql = |script: &str| {
        let mut cmd = Command::new("psql");
        cmd.args([
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
            "-d",
            &pg.name,
        ]);
        pipe_into(cmd, script);
    };
    psql(&offline(&p, &["sql", "--engine", "postgres", "--schema", "s_off"]));
    assert_eq!(
        pg.column("SELECT version::text FROM s_off.fleetmig_history ORDER BY version"),
        ["1", "2", "3"]
    );
    assert_eq!(pg.column("SELECT x::text FROM s_off.t2"), ["2"]);
    p.remove_migration("0003_three.up.sql");
    psql(&offline(
        &p,
        &[
            "sql", "--engine", "postgres", "--schema", "s_off", "--from", "2", "--to", "0",
        ],
    ));
    assert_eq!(
        pg.column("SELECT version::text FROM s_off.fleetmig_history ORDER BY version"),
        ["3"]
    );
}

#[test]
fn offline_scripts_of_unterminated_migrations_run_in_the_mariadb_client() {
    let Some(my) = My::create("offline_term") else { return };
    let p = Project::new();
    p.fleet(FLEET);
    unterminated_set(&p);
    let db = format!("{}_off", my.prefix);
    let client = |script: &str| {
        let mut cmd = Command::new("mariadb");
        cmd.args(["-h", "127.0.0.1", "-P", "3306", "-u", "root"]);
        pipe_into(cmd, script);
    };
    client(&offline(&p, &["sql", "--engine", "mysql", "--schema", &db]));
    assert_eq!(
        my.column(&format!(
            "SELECT CAST(version AS CHAR) FROM `{db}`.fleetmig_history ORDER BY version"
        )),
        ["1", "2", "3"]
    );
    assert_eq!(my.column(&format!("SELECT CAST(x AS CHAR) FROM `{db}`.t2")), ["2"]);
    p.remove_migration("0003_three.up.sql");
    client(&offline(
        &p,
        &["sql", "--engine", "mysql", "--schema", &db, "--from", "2", "--to", "0"],
    ));
    assert_eq!(
        my.column(&format!(
            "SELECT CAST(version AS CHAR) FROM `{db}`.fleetmig_history ORDER BY version"
        )),
        ["3"]
    );
}

#[test]
fn numbers_and_durations_out_of_range_are_usage_errors() {
    let p = project_at_v1();
    p.migration("0002_two.up.sql", "CREATE TABLE t2 (x INT);\n");
    let cases: &[(&[&str], &str)] = &[
        (
            &["up", "--lock-timeout", "500us"],
            "`500us` is not a whole number of milliseconds",
        ),
        (
            &["up", "--lock-timeout", "99999999999999h"],
            "`99999999999999h` is out of range: give a duration from 0s to 24days",
        ),
        (
            &["up", "--statement-timeout", "1500us"],
            "not a whole number of milliseconds",
        ),
        (&["up", "--connect-timeout", "0s"], "give a duration from 1ms to 1h"),
        (&["up", "--lock-wait", "400days"], "give a duration from 0s to 1day"),
        (&["up", "--bake", "8days"], "give a duration from 0s to 7days"),
        (
            &["up", "--to", "99999999999999999999"],
            "is not a migration version (a whole number from 0 to 9223372036854775807)",
        ),
        (&["up", "-j", "0"], "`0` is not a whole number from 1 to 1000"),
        (&["up", "-j", "4294967296"], "is not a whole number from 1 to 1000"),
        (
            &["up", "--retries", "4294967295"],
            "is not a whole number from 0 to 100000",
        ),
        (&["up", "--rate", "0"], "`0` is not a whole number from 1 to 100000"),
        (
            &["up", "--rate", "5", "--burst", "9999999"],
            "is not a whole number from 1 to 100000",
        ),
        (
            &["up", "--pause-after", "0"],
            "`0` is not a whole number from 1 to 10000",
        ),
        (&["up", "--waves", "5,2"], "wave sizes `5,2` are cumulative"),
        (&["up", "--waves", "50%,20%"], "wave sizes `50%,20%` are cumulative"),
        (&["down", "--steps", "0"], "`0` is not a whole number from 1 to 1000000"),
        (&["runs", "--limit=-1"], "is not a whole number from 1 to 1000000"),
        (&["wait", "--interval", "0s"], "give a duration from 10ms to 1h"),
        (&["up", "--shared", "--lease", "100h"], "give a duration from 1s to 1h"),
    ];
    for (args, expected) in cases {
        let r = run(&p, args);
        assert_refused(&args.join(" "), &r, &[expected]);
        assert_eq!(history(&p.db_path("a")), ["1"], "{args:?}");
    }
}

#[test]
fn fleet_file_numbers_and_durations_out_of_range_are_refused_naming_the_key() {
    let p = project_at_v1();
    p.migration("0002_two.up.sql", "CREATE TABLE t2 (x INT);\n");
    let cases: &[(&str, &str)] = &[
        (
            "hosts: {m: {url: 'postgres://postgres@127.0.0.1:1/x', max_connections: 4294967295}}\n",
            "host `m` max_connections: `4294967295` is not a whole number from 1 to 1000",
        ),
        (
            "rollout: {waves: '5,2'}\n",
            "rollout waves: wave sizes `5,2` are cumulative",
        ),
        (
            "rollout: {bake: 500us}\n",
            "rollout bake: `500us` is not a whole number of milliseconds",
        ),
        (
            "rollout: {bake: 99999999999999h}\n",
            "rollout bake: `99999999999999h` is out of range",
        ),
        ("tenants: []\n---\ntenants: []\n", "holds more than one YAML document"),
        (
            "rollout: {max_failures: [1]}\n",
            "rollout.max_failures: invalid type: sequence, expected a string, number or boolean",
        ),
    ];
    for (extra, expected) in cases {
        p.fleet(&format!("{extra}{FLEET}"));
        let r = run(&p, &["up"]);
        assert_refused(extra, &r, &["fleet file `tenants.yaml`", expected]);
        assert_eq!(history(&p.db_path("a")), ["1"], "{extra}");
    }
    std::fs::write(
        p.path().join("tenants.yaml"),
        b"tenants:\n  - {id: a, url: \"sqlite://data/\xff.db\"}\n",
    )
    .unwrap();
    let r = run(&p, &["up"]);
    assert_refused(
        "not UTF-8",
        &r,
        &["fleet file `tenants.yaml`: is not UTF-8 text: invalid byte at byte offset 41"],
    );
    let mut bom = "\u{feff}".to_owned();
    bom.push_str(FLEET);
    p.fleet(&bom);
    let r = run(&p, &["up"]);
    assert_eq!(r.code, 0, "a byte-order mark is no content: {r:?}");
    assert_eq!(history(&p.db_path("a")), ["1", "2"]);
}

/// A SQLite registry at `registry.db` whose `tenants` table holds `rows` of (id, url).
fn registry(p: &Project, rows: &[(&str, &str)]) {
    let db = p.path().join("registry.db");
    let _ = std::fs::remove_file(&db);
    let mut sql = "CREATE TABLE tenants (id TEXT, url TEXT);".to_owned();
    for (id, url) in rows {
        sql.push_str(&format!(
            "INSERT INTO tenants VALUES ('{id}', '{}');",
            url.replace('\'', "''")
        ));
    }
    sqlite_exec(&db, &sql);
    p.fleet("discover: {url: \"sqlite://registry.db\", query: \"SELECT id, url FROM tenants\"}\n");
}

#[test]
fn registry_rows_place_tenants_only_on_servers_the_fleet_file_lists() {
    let Some(pg) = Pg::create("regsrv") else { return };
    let p = Project::new();
    p.migration("0001_one.up.sql", "CREATE TABLE t1 (x INT);\n");
    // The row names a server by URL, with no password: the client would fill in this
    // machine's PGPASSWORD.
    let row_url = format!("postgres://postgres@localhost:5432/{}", pg.name);
    registry(&p, &[("evil", &row_url)]);
    let discover = "discover: {url: \"sqlite://registry.db\", query: \"SELECT id, url FROM tenants\"}\n";
    for args in [&["status"][..], &["up"]] {
        let r = p.run_env(args, &[("PGPASSWORD", "PlantedSecret")]);
        assert_refused(
            "unlisted server",
            &r,
            &[&format!(
                "discover row 1 (id `evil`) url: `{row_url}` names server localhost:5432, which no host in `hosts:` names"
            )],
        );
    }
    let histories = "SELECT count(*)::text FROM pg_tables WHERE tablename = 'fleetmig_history'";
    assert_eq!(pg.column(histories), ["0"], "the unlisted server was touched");
    // Listed under `hosts:`, the same row is taken.
    p.fleet(&format!(
        "hosts:\n  main: {{url: \"postgres://postgres@localhost:5432/{}\"}}\n{discover}",
        pg.name
    ));
    let r = p.run(&["up", "--retry-for", "0s"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(pg.column(histories), ["1"]);
}

#[test]
fn registry_rows_cannot_run_sql_through_url_parameters() {
    let p = Project::new();
    p.migration("0001_one.up.sql", "CREATE TABLE t1 (x INT);\n");
    let pwned = p.path().join("pwned.db");
    let attach = format!(
        "sqlite://data/evil.db?journal_mode=wal;ATTACH DATABASE '{}' AS p;CREATE TABLE p.x(y)",
        pwned.display()
    );
    let cases: Vec<(String, String)> = vec![
        (
            attach,
            "discover row 2 (id `evil`) url: `sqlite://data/evil.db?journal_mode=wal;ATTACH".into(),
        ),
        (
            "sqlite://data/evil.db?cache_size=10".into(),
            "discover row 2 (id `evil`) url: URL parameter `cache_size` is not one a registry row may give; \
             for sqlite only `journal_mode`, `synchronous`"
                .into(),
        ),
        (
            "sqlite://data/evil.db?journal_mode=banana".into(),
            "discover row 2 (id `evil`) url: URL parameter `journal_mode` is `banana`: expected one of delete".into(),
        ),
        (
            "postgres://postgres@127.0.0.1:5432/postgres?options=-c%20search_path%3Dx".into(),
            "discover row 2 (id `evil`) url: URL parameter `options` is not one a registry row may give; \
             for postgres only `sslmode`, `ssl-mode`, `application_name`"
                .into(),
        ),
        (
            "mysql://root@127.0.0.1:3306/?init_command=DROP%20DATABASE%20x".into(),
            "URL parameter `init_command` is not one a registry row may give; for mysql only `ssl-mode`, `sslmode`"
                .into(),
        ),
    ];
    for (url, expected) in &cases {
        registry(&p, &[("good", "sqlite://data/good.db?journal_mode=wal"), ("evil", url)]);
        for args in [&["status"][..], &["up"]] {
            let r = run(&p, args);
            assert_refused(url, &r, &["fleet file `tenants.yaml`", expected]);
        }
        assert!(!pwned.exists(), "{url}: the row's SQL ran");
        assert!(!p.path().join("data").exists(), "{url}: a tenant was touched");
    }
    registry(
        &p,
        &[("good", "sqlite://data/good.db?journal_mode=wal&synchronous=NORMAL")],
    );
    let r = run(&p, &["up"]);
    assert_eq!(r.code, 0, "known parameters with good values pass: {r:?}");
}

#[test]
fn a_sqlite_url_option_sqlite_would_ignore_is_refused_not_silently_dropped() {
    let p = Project::new();
    p.migration("0001_one.up.sql", "CREATE TABLE t1 (x INT);\n")
        .fleet("tenants:\n  - {id: a, url: \"sqlite://data/a.db?mode=ro\"}\n");
    for args in [&["up"][..], &["plan"]] {
        let r = run(&p, args);
        assert_refused(
            "mode=ro",
            &r,
            &["tenant `a` url: `sqlite://data/a.db?mode=ro`: `mode` is not a SQLite PRAGMA a URL may set"],
        );
    }
    assert!(!p.path().join("data").exists(), "the read-only tenant was written");
}

#[test]
fn sqlite_url_parameters_in_the_fleet_file_are_pragma_names_and_plain_values() {
    let p = project_at_v1();
    p.fleet("tenants:\n  - {id: a, url: \"sqlite://data/a.db?journal_mode=wal;DROP TABLE t1\"}\n");
    let r = run(&p, &["up"]);
    assert_refused(
        "pragma value with SQL",
        &r,
        &["tenant `a` url: `sqlite://data/a.db?journal_mode=wal;DROP TABLE t1`: SQLite URL parameters are PRAGMAs"],
    );
    assert_eq!(history(&p.db_path("a")), ["1"]);
    assert_eq!(
        sqlite_column(&p.db_path("a"), "SELECT name FROM sqlite_master WHERE name = 't1'"),
        ["t1"]
    );
}

/// A SQLite URL may not set the PRAGMAs fleetmig's guarantees rest on: the tenant lock
/// (`locking_mode`, `busy_timeout`), rolling a failed migration back (`journal_mode=off`)
/// and foreign keys during a migration.
#[test]
fn sqlite_url_pragmas_that_undercut_the_lock_or_the_rollback_are_refused() {
    for (param, expected) in [
        ("locking_mode=normal", "exclusive locking mode"),
        ("busy_timeout=5000", "use --lock-wait"),
        ("journal_mode=OFF", "cannot roll a failed migration back"),
        ("foreign_keys=on", "checks them before the commit"),
    ] {
        let p = project_at_v1();
        p.fleet(&format!(
            "tenants:\n  - {{id: a, url: \"sqlite://data/a.db?{param}\"}}\n"
        ));
        let r = run(&p, &["up"]);
        assert_refused(
            param,
            &r,
            &[
                &format!("tenant `a` url: `sqlite://data/a.db?{param}`: `{param}` is not taken: "),
                expected,
            ],
        );
        assert_eq!(history(&p.db_path("a")), ["1"], "{param}");
    }
    let p = project_at_v1();
    p.fleet("tenants:\n  - {id: a, url: \"sqlite://data/a.db?journal_mode=wal&synchronous=normal\"}\n");
    let r = run(&p, &["up"]);
    assert_eq!(r.code, 0, "{r:#?}");
}

#[test]
fn a_sqlite_tenant_file_of_bad_bytes_fails_at_once_naming_the_tenant_and_is_left_as_it_was() {
    let p = Project::new();
    p.migration("0001_a.up.sql", "CREATE TABLE a (x INT);");
    p.fleet("defaults: {url: \"sqlite://data/{id}.db\"}\ntenants:\n  - {id: good}\n  - {id: junk}\n");
    std::fs::create_dir_all(p.path().join("data")).unwrap();
    let junk = p.path().join("data/junk.db");
    let bytes: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(&junk, &bytes).unwrap();
    // No retries for a file that is not a database: it is not the moment's fault.
    let run = run(
        &p,
        &["up", "--format", "json", "--retry-for", "10m", "--max-failures", "all"],
    );
    assert_eq!(run.code, 1, "{}", run.all());
    assert!(!run.stdout.contains("\"step_retried\""), "{}", run.stdout);
    let junk_line = run
        .stdout
        .lines()
        .find(|l| l.contains("\"tenant_finished\"") && l.contains("\"junk\""))
        .unwrap_or_else(|| panic!("{}", run.stdout));
    assert!(junk_line.contains("\"failed\""), "{junk_line}");
    assert!(junk_line.contains("file is not a database"), "{junk_line}");
    assert!(
        run.stdout
            .lines()
            .any(|l| l.contains("\"tenant_finished\"") && l.contains("\"good\"") && l.contains("\"succeeded\"")),
        "{}",
        run.stdout
    );
    assert_eq!(std::fs::read(&junk).unwrap(), bytes, "the file was left as it was");
}
