//! `discover:`: tenants found by a query on a registry database (a SQLite file, PostgreSQL
//! or MariaDB), after the listed ones, with labels from columns; a bad row, a failing query
//! or an unreachable registry is refused with exit 2 before any tenant is touched.

use serde_json::Value;

use crate::support::{My, Pg, Project, Run, sqlite_column, sqlite_exec};

/// Unset in every run here.
const UNSET: &str = "FM_SURELY_UNSET_VAR";

fn migrations(p: &Project) {
    p.migration("0001_one.up.sql", "CREATE TABLE t1 (x INT);\n")
        .migration("0001_one.down.sql", "DROP TABLE t1;\n")
        .migration("0002_two.up.sql", "CREATE TABLE t2 (x INT);\n")
        .migration("0002_two.down.sql", "DROP TABLE t2;\n");
}

fn run(p: &Project, args: &[&str]) -> Run {
    p.command(args).env_remove(UNSET).output().unwrap().into()
}

fn json(run: &Run) -> Value {
    serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("{e}: {run:?}"))
}

/// `(id, state)` of every tenant `status` shows, in its order.
fn status(p: &Project, select: &[&str]) -> Vec<(String, String)> {
    let mut args = vec!["status", "--format", "json"];
    for s in select {
        args.extend(["--select", s]);
    }
    let run = run(p, &args);
    assert!(run.code <= 1, "{run:?}");
    json(&run)["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["id"].as_str().unwrap().to_owned(),
                t["state"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn ids(rows: &[(String, String)]) -> Vec<&str> {
    rows.iter().map(|(id, _)| id.as_str()).collect()
}

/// `(wave, id)` in rollout order, from `plan`.
fn plan(p: &Project) -> Vec<(u64, String)> {
    let run = run(p, &["plan", "--format", "json"]);
    assert_eq!(run.code, 0, "{run:?}");
    json(&run)["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["wave"].as_u64().unwrap(), t["id"].as_str().unwrap().to_owned()))
        .collect()
}

fn sqlite_versions(p: &Project, id: &str) -> Vec<String> {
    sqlite_column(
        &p.db_path(id),
        "SELECT CAST(version AS TEXT) FROM fleetmig_history ORDER BY version",
    )
}

/// The database files in `data/`.
fn db_files(p: &Project) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(p.path().join("data")) else {
        return vec![];
    };
    let mut files: Vec<String> = entries
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|f| f.ends_with(".db"))
        .collect();
    files.sort();
    files
}

/// A project whose registry is `registry.db` beside the fleet file.
fn sqlite_registry(p: &Project, sql: &str) {
    sqlite_exec(&p.path().join("registry.db"), sql);
}

#[test]
fn a_sqlite_registry_adds_tenants_with_labels_and_canaries() {
    let p = Project::new();
    migrations(&p);
    sqlite_registry(
        &p,
        "CREATE TABLE tenants (id TEXT, tier TEXT, canary INTEGER, active INTEGER, seats INTEGER);
         INSERT INTO tenants VALUES ('b', 'pro', 0, 1, 5), ('c', NULL, 1, 1, NULL), ('d', 'pro', 0, 0, 3);",
    );
    p.fleet(
        "defaults:\n  url: \"sqlite://data/{id}.db\"\n  labels: { tier: free }\n\
         tenants:\n  - id: a\n\
         discover:\n  url: \"sqlite://registry.db\"\n\
         \x20 query: SELECT id, tier, canary, seats FROM tenants WHERE active = 1 ORDER BY id\n",
    );
    assert_eq!(
        plan(&p),
        [(1, "c".to_owned()), (2, "a".to_owned()), (2, "b".to_owned())],
        "the canary row forms wave 1; listed tenants come before discovered ones"
    );

    let up = run(&p, &["up"]);
    assert_eq!(up.code, 0, "{up:?}");
    for id in ["a", "b", "c"] {
        assert_eq!(sqlite_versions(&p, id), ["1", "2"], "tenant {id}");
    }
    assert_eq!(db_files(&p), ["a.db", "b.db", "c.db"], "the inactive row is no tenant");

    let all = status(&p, &[]);
    assert_eq!(ids(&all), ["a", "b", "c"]);
    assert!(all.iter().all(|(_, state)| state == "current"), "{all:?}");
    assert_eq!(ids(&status(&p, &["tier=pro"])), ["b"]);
    assert_eq!(ids(&status(&p, &["seats=5"])), ["b"]);
    assert_eq!(
        ids(&status(&p, &["tier=free"])),
        ["a", "c"],
        "a NULL label keeps the default"
    );

    let down = run(&p, &["down", "--steps", "1", "--select", "tier=free"]);
    assert_eq!(down.code, 0, "{down:?}");
    assert_eq!(sqlite_versions(&p, "a"), ["1"]);
    assert_eq!(sqlite_versions(&p, "b"), ["1", "2"]);
    assert_eq!(sqlite_versions(&p, "c"), ["1"]);

    let sql = run(&p, &["sql"]);
    assert_eq!(sql.code, 0, "every tenant, found or listed, is SQLite: {sql:?}");

    // The registry is only read: a query that writes is refused.
    p.fleet(
        "defaults: { url: \"sqlite://data/{id}.db\" }\ntenants: []\n\
         discover:\n  url: \"sqlite://registry.db\"\n  query: DELETE FROM tenants RETURNING id\n",
    );
    let refused = run(&p, &["status"]);
    assert_eq!(refused.code, 2, "{refused:?}");
    assert!(refused.stderr.contains("running the query"), "{refused:?}");
    assert_eq!(
        sqlite_column(
            &p.path().join("registry.db"),
            "SELECT CAST(count(*) AS TEXT) FROM tenants"
        ),
        ["3"]
    );
}

/// Tenants `a` and `b` (listed) at version 1 with migration 2 pending, and a registry file.
fn project_at_v1() -> Project {
    let p = Project::new();
    p.migration("0001_one.up.sql", "CREATE TABLE t1 (x INT);\n");
    p.fleet("defaults: { url: \"sqlite://data/{id}.db\" }\ntenants: [ {id: a}, {id: b} ]\n");
    let up = run(&p, &["up"]);
    assert_eq!(up.code, 0, "{up:?}");
    p.migration("0002_two.up.sql", "CREATE TABLE t2 (x INT);\n");
    sqlite_registry(&p, "CREATE TABLE tenants (id TEXT);");
    p
}

fn discover_fleet(url: &str, query: &str) -> String {
    format!(
        "defaults: {{ url: \"sqlite://data/{{id}}.db\" }}\ntenants: [ {{id: a}}, {{id: b}} ]\n\
         discover:\n  url: \"{url}\"\n  query: |\n    {query}\n"
    )
}

/// `up`, `status` and `plan` exit 2 with each of `expected` on stderr and nothing on
/// stdout; `a` and `b` stay at version 1 and no tenant file appears.
fn assert_refused(p: &Project, case: &str, expected: &[&str]) {
    for command in [&["up"][..], &["status"], &["plan"]] {
        let what = format!("{case}: fleetmig {}", command.join(" "));
        let run = run(p, command);
        assert_eq!(run.code, 2, "{what}: {run:?}");
        assert_eq!(run.stdout, "", "{what}: {run:?}");
        assert!(run.stderr.contains("tenants.yaml"), "{what}: {run:?}");
        for e in expected {
            assert!(run.stderr.contains(e), "{what}: stderr lacks `{e}`:\n{}", run.stderr);
        }
    }
    for id in ["a", "b"] {
        assert_eq!(sqlite_versions(p, id), ["1"], "{case}: tenant {id} changed");
    }
    assert_eq!(db_files(p), ["a.db", "b.db"], "{case}: a tenant file appeared");
}

#[test]
fn bad_rows_are_refused_naming_the_row() {
    let p = project_at_v1();
    let cases: &[(&str, &str, &[&str])] = &[
        (
            "no id column",
            "SELECT 'c' AS tenant, 'pro' AS tier",
            &["discover row 1: the query gives no `id` column (its columns: `tenant`, `tier`)"],
        ),
        (
            "NULL id",
            "SELECT 'c' AS id UNION ALL SELECT NULL",
            &["discover row 2: `id` is NULL"],
        ),
        (
            "bad id",
            "SELECT 'c' AS id UNION ALL SELECT 'd' UNION ALL SELECT 'x y'",
            &["discover row 3 (id `x y`): tenant id `x y` holds ` `"],
        ),
        (
            "quote in a schema name",
            "SELECT 'c' AS id, 'c\"; DROP TABLE t1; --' AS schema",
            &["discover row 1 (id `c`) schema: `c\\\"; DROP TABLE t1; --` holds `\\\"`"],
        ),
        (
            "id of a listed tenant",
            "SELECT 'c' AS id UNION ALL SELECT 'a'",
            &["discover row 2 (id `a`): tenant `a` is listed in `tenants:` too"],
        ),
        (
            "two rows with one id",
            "SELECT 'c' AS id UNION ALL SELECT 'c'",
            &["discover row 2 (id `c`): discover row 1 has the same id"],
        ),
        (
            "not a boolean",
            "SELECT 'c' AS id, 'maybe' AS canary",
            &["discover row 1 (id `c`) canary: `maybe` is not true or false"],
        ),
        (
            "unknown host",
            "SELECT 'c' AS id, 'nope' AS host",
            &["discover row 1 (id `c`): host `nope` is not in `hosts`"],
        ),
        (
            "failing query",
            "SELECT id FROM no_such_table",
            &[
                "discover: registry `sqlite://",
                "registry.db`: running the query",
                "no_such_table",
            ],
        ),
    ];
    for (case, query, expected) in cases {
        p.fleet(&discover_fleet("sqlite://registry.db", query));
        assert_refused(&p, case, expected);
    }
    p.fleet(&discover_fleet("sqlite://missing.db", "SELECT 'c' AS id"));
    assert_refused(
        &p,
        "missing registry file",
        &["registry `sqlite://", "missing.db`: connecting"],
    );
    assert!(
        !p.path().join("missing.db").exists(),
        "discovery created the registry file"
    );

    p.fleet(&format!(
        "{}  sceham: x\n",
        discover_fleet("sqlite://registry.db", "SELECT 'c' AS id")
    ));
    assert_refused(&p, "unknown key", &["unknown field `sceham`"]);
}

#[test]
fn an_unreachable_registry_is_named_without_its_password() {
    let p = project_at_v1();
    let pw = "s3cret-registry-pw";
    p.fleet(&discover_fleet(
        "postgres://app:${REGISTRY_PW}@127.0.0.1:1/registry",
        "SELECT id FROM tenants",
    ));
    for command in [&["up", "--connect-timeout", "3s"][..], &["status"]] {
        let run = p.run_env(command, &[("REGISTRY_PW", pw)]);
        assert_eq!(run.code, 2, "{run:?}");
        assert_eq!(run.stdout, "", "{run:?}");
        assert!(
            run.stderr.contains(
                "fleet file `tenants.yaml`: discover: registry `postgres://app:***@127.0.0.1:1/registry`: connecting"
            ),
            "{run:?}"
        );
        assert!(!run.all().contains(pw), "{run:?}");
    }
    let run = run(&p, &["status"]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stderr
            .contains("discover url: environment variable `REGISTRY_PW` is not set"),
        "{run:?}"
    );
    for id in ["a", "b"] {
        assert_eq!(sqlite_versions(&p, id), ["1"]);
    }
}

#[test]
fn a_postgres_registry_finds_schema_tenants() {
    let Some(pg) = Pg::create("discover") else { return };
    pg.exec(
        "CREATE TYPE region AS ENUM ('eu', 'us');
         CREATE TABLE registry (id text, schema_name name, tier varchar(10), region region,
                                seats int, canary boolean, active boolean);
         INSERT INTO registry VALUES
           ('globex', NULL, 'pro', 'eu', 10, false, true),
           ('initech', 'custom_initech', 'free', 'us', NULL, true, true),
           ('hooli', NULL, 'pro', 'us', 3, false, false);",
    );
    let p = Project::new();
    migrations(&p);
    p.fleet(&format!(
        "hosts:\n  pg: {{ url: \"{url}\" }}\n\
         defaults: {{ host: pg, schema: \"tenant_{{id}}\", labels: {{ tier: enterprise }} }}\n\
         tenants:\n  - id: acme\n\
         discover:\n  url: \"{reg}\"\n\
         \x20 query: SELECT id, schema_name AS schema, tier, region, seats, canary FROM registry WHERE active ORDER BY id\n",
        url = pg.url(),
        reg = pg.url().replace("postgres@", "postgres:${REGISTRY_PW}@"),
    ));
    let env = [("REGISTRY_PW", "ignored-by-trust")];
    let up = p.run_env(&["up"], &env);
    assert_eq!(up.code, 0, "{up:?}");
    assert_eq!(
        pg.column(
            "SELECT nspname::text FROM pg_namespace WHERE nspname LIKE 'tenant\\_%' OR nspname LIKE 'custom\\_%' ORDER BY 1"
        ),
        ["custom_initech", "tenant_acme", "tenant_globex"],
        "the inactive row is no tenant"
    );
    for schema in ["custom_initech", "tenant_acme", "tenant_globex"] {
        assert_eq!(
            pg.column(&format!(
                "SELECT version::text FROM \"{schema}\".fleetmig_history ORDER BY version"
            )),
            ["1", "2"],
            "{schema}"
        );
    }

    let status = |select: &str| {
        let run = p.run_env(&["status", "--format", "json", "--select", select], &env);
        assert_eq!(run.code, 0, "{run:?}");
        let doc = json(&run);
        doc["tenants"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["id"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(status("id=*"), ["acme", "globex", "initech"]);
    assert_eq!(status("tier=pro"), ["globex"], "varchar label");
    assert_eq!(status("region=us"), ["initech"], "enum label");
    assert_eq!(status("seats=10"), ["globex"], "int label");
    assert_eq!(status("canary=true"), ["initech"], "boolean canary");
    assert_eq!(status("tier=enterprise"), ["acme"]);

    // The registry is only read, whatever the query says.
    p.fleet(&format!(
        "hosts:\n  pg: {{ url: \"{url}\" }}\ndefaults: {{ host: pg, schema: \"tenant_{{id}}\" }}\n\
         discover:\n  url: \"{url}\"\n  query: DELETE FROM registry RETURNING id\n",
        url = pg.url(),
    ));
    let refused = run(&p, &["status"]);
    assert_eq!(refused.code, 2, "{refused:?}");
    assert!(refused.stderr.contains("running the query"), "{refused:?}");
    assert!(refused.stderr.contains("read-only"), "{refused:?}");
    assert_eq!(pg.column("SELECT count(*)::text FROM registry"), ["3"]);
}

#[test]
fn a_postgres_registry_with_bad_rows_touches_nothing() {
    let Some(pg) = Pg::create("discover_bad") else { return };
    pg.exec("CREATE TABLE registry (n int, id text, schema_name text)");
    let p = Project::new();
    migrations(&p);
    let fleet = |query: &str| {
        format!(
            "hosts:\n  pg: {{ url: \"{url}\" }}\ndefaults: {{ host: pg, schema: \"tenant_{{id}}\" }}\n\
             tenants:\n  - id: acme\n\
             discover:\n  url: \"{url}\"\n  query: {query}\n",
            url = pg.url(),
        )
    };
    let cases: &[(&str, &str)] = &[
        (
            "INSERT INTO registry VALUES (1, 'globex', NULL), (2, NULL, NULL)",
            "discover row 2: `id` is NULL",
        ),
        (
            "INSERT INTO registry VALUES (1, 'globex', 'x\"y')",
            "discover row 1 (id `globex`) schema: `x\\\"y` holds `\\\"`",
        ),
        (
            "INSERT INTO registry VALUES (1, 'globex', NULL), (2, 'globex', NULL)",
            "discover row 2 (id `globex`): discover row 1 has the same id",
        ),
    ];
    for (rows, expected) in cases {
        pg.exec(&format!("TRUNCATE registry; {rows}"));
        p.fleet(&fleet("SELECT id, schema_name AS schema FROM registry ORDER BY n"));
        for command in ["up", "status"] {
            let run = run(&p, &[command]);
            assert_eq!(run.code, 2, "{rows}: {run:?}");
            assert!(
                run.stderr.contains(expected),
                "{rows}: stderr lacks `{expected}`: {run:?}"
            );
        }
        assert_eq!(
            pg.column("SELECT count(*)::text FROM pg_namespace WHERE nspname LIKE 'tenant\\_%'"),
            ["0"],
            "{rows}: a tenant was touched"
        );
    }
    p.fleet(&fleet("SELECT id FROM no_such_table"));
    let run = run(&p, &["up"]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stderr.contains(&format!(
            "discover: registry `{}`: running the query: relation \"no_such_table\" does not exist (code 42P01)",
            pg.url()
        )),
        "{run:?}"
    );
}

#[test]
fn a_mariadb_registry_finds_sqlite_tenants() {
    let Some(my) = My::create("discover") else { return };
    let db = format!("{}_reg", my.prefix);
    my.exec(&format!(
        "CREATE DATABASE `{db}`;
         CREATE TABLE `{db}`.tenants (id VARCHAR(20), tier ENUM('free', 'pro'), canary TINYINT(1), seats INT);
         INSERT INTO `{db}`.tenants VALUES ('b', 'pro', 0, 5), ('c', 'free', 1, NULL);"
    ));
    let p = Project::new();
    migrations(&p);
    p.fleet(&format!(
        "defaults: {{ url: \"sqlite://data/{{id}}.db\" }}\ntenants: [ {{id: a}} ]\n\
         discover:\n  url: \"mysql://root@127.0.0.1:3306/{db}\"\n  query: SELECT id, tier, canary, seats FROM tenants ORDER BY id\n"
    ));
    assert_eq!(
        plan(&p),
        [(1, "c".to_owned()), (2, "a".to_owned()), (2, "b".to_owned())]
    );
    let up = run(&p, &["up"]);
    assert_eq!(up.code, 0, "{up:?}");
    for id in ["a", "b", "c"] {
        assert_eq!(sqlite_versions(&p, id), ["1", "2"], "tenant {id}");
    }
    assert_eq!(ids(&status(&p, &["tier=pro"])), ["b"]);
    assert_eq!(ids(&status(&p, &["seats=5"])), ["b"]);

    p.fleet(&format!(
        "defaults: {{ url: \"sqlite://data/{{id}}.db\" }}\ntenants: []\n\
         discover:\n  url: \"mysql://root@127.0.0.1:3306/{db}\"\n  query: DELETE FROM tenants\n"
    ));
    let refused = run(&p, &["status"]);
    assert_eq!(refused.code, 2, "{refused:?}");
    assert!(refused.stderr.contains("READ ONLY"), "{refused:?}");
    assert_eq!(
        my.column(&format!("SELECT CAST(count(*) AS CHAR) FROM `{db}`.tenants")),
        ["2"]
    );
}
