//! Fleet-file keys that shape each session: `init_sql` by engine, a schema-tenant's
//! `search_path`, and `create_database`, against the real servers.

use crate::support::{self, My, Pg, Project, sqlite_column, tenant_line};

/// A child table whose foreign key names a parent created by a later statement.
const CHILD_BEFORE_PARENT: &str = "CREATE TABLE child (id INTEGER PRIMARY KEY, parent_id INTEGER, \
     FOREIGN KEY (parent_id) REFERENCES parent (id));\n\
     CREATE TABLE parent (id INTEGER PRIMARY KEY);\n";

#[test]
fn init_sql_by_engine_reaches_only_the_tenants_of_that_engine() {
    let Some(my) = My::create("init_by_engine") else { return };
    let p = Project::new();
    p.migration("0001_child_before_parent.sql", CHILD_BEFORE_PARENT);
    let fleet = |init_sql: &str| {
        format!(
            "defaults: {{ url: \"{}\", database: \"{}_{{id}}\"{init_sql} }}\n\
             tenants:\n  - {{ id: plain }}\n  - {{ id: acme }}\n  - {{ id: lite, url: \"sqlite://data/lite.db\" }}\n",
            support::MYSQL_ADMIN,
            my.prefix
        )
    };

    // Without the setting MariaDB refuses the foreign key to a table not made yet.
    p.fleet(&fleet(""));
    let run = p.run(&["up", "--select", "id=plain"]);
    assert_eq!(run.code, 1, "{run:#?}");
    assert!(
        tenant_line(&run.stdout, "plain").contains("Foreign key constraint is incorrectly formed"),
        "{run:#?}"
    );

    p.fleet(&fleet(", init_sql: { mysql: \"SET FOREIGN_KEY_CHECKS = 0\" }"));
    let run = p.run(&["up", "--select", "id=acme", "--select", "id=lite"]);
    assert_eq!(run.code, 0, "{run:#?}");
    let db = format!("{}_acme", my.prefix);
    assert_eq!(
        my.column(&format!(
            "SELECT CAST(TABLE_NAME AS CHAR) FROM information_schema.TABLES WHERE TABLE_SCHEMA = '{db}' ORDER BY 1"
        )),
        ["child", "fleetmig_history", "parent"]
    );
    // SQLite would have refused `SET FOREIGN_KEY_CHECKS = 0` had it been sent.
    assert_eq!(
        sqlite_column(&p.db_path("lite"), "SELECT version FROM fleetmig_history"),
        ["1"]
    );
}

#[test]
fn postgres_search_path_reaches_a_shared_type_after_the_tenant_schema() {
    let Some(pg) = Pg::create("search_path") else { return };
    pg.exec("CREATE TYPE public.mood AS ENUM ('ok', 'sad')");
    let p = Project::new();
    p.migration(
        "0001_feelings.sql",
        "CREATE TABLE feelings (id INT PRIMARY KEY, m mood NOT NULL DEFAULT 'ok');\n",
    );
    p.fleet(&format!(
        "hosts:\n  pg: {{ url: \"{}\" }}\n\
         defaults: {{ host: pg, schema: \"t_{{id}}\", search_path: \"{{schema}}, public\" }}\n\
         tenants:\n  - {{ id: acme }}\n  - {{ id: globex }}\n  - {{ id: plain, search_path: \"{{schema}}\" }}\n",
        pg.url()
    ));
    let run = p.run(&["up", "--max-failures", "all"]);
    assert_eq!(run.code, 1, "{run:#?}");
    assert!(
        tenant_line(&run.stdout, "plain").contains("type \"mood\" does not exist"),
        "{run:#?}"
    );
    for t in ["acme", "globex"] {
        assert_eq!(
            pg.column(&format!(
                "SELECT c.relname || ':' || format_type(a.atttypid, a.atttypmod) FROM pg_attribute a \
                 JOIN pg_class c ON c.oid = a.attrelid WHERE c.relnamespace = 't_{t}'::regnamespace \
                 AND a.attname = 'm'"
            )),
            ["feelings:mood"],
            "the table in the tenant's schema, its column of the shared type"
        );
        assert_eq!(pg.column(&format!("SELECT version FROM t_{t}.fleetmig_history")), ["1"]);
    }
    assert_eq!(
        pg.column("SELECT to_regclass('public.fleetmig_history')::text || to_regclass('public.feelings')::text"),
        ["NULL"],
        "nothing is made in public"
    );
}

#[test]
fn postgres_create_database_makes_a_missing_tenant_database() {
    let Some(pg) = Pg::create("create_db") else { return };
    let ids = ["acme", "globex", "initech", "hooli"];
    // Each drops its database at the end, whoever made it.
    let _made: Vec<Pg> = ids
        .iter()
        .map(|id| Pg {
            name: format!("{}_{id}", pg.name),
        })
        .collect();
    let exists = |id: &str| {
        pg.column(&format!(
            "SELECT count(*)::text FROM pg_database WHERE datname = '{}_{id}'",
            pg.name
        )) == ["1"]
    };
    let p = Project::new();
    p.migration("0001_widgets.sql", "CREATE TABLE widgets (id INT PRIMARY KEY);\n");
    let fleet = |create: &str, tenants: &[&str]| {
        let tenants: String = tenants.iter().map(|t| format!("  - {{ id: {t} }}\n")).collect();
        format!(
            "hosts:\n  pg: {{ url: \"{}\" }}\n\
             defaults: {{ host: pg, database: \"{}_{{id}}\"{create} }}\ntenants:\n{tenants}",
            pg.url(),
            pg.name
        )
    };

    // As before: a missing PostgreSQL database is the tenant's failure, and stays missing.
    p.fleet(&fleet("", &["acme"]));
    let run = p.run(&["up", "--retry-for", "0s"]);
    assert_eq!(run.code, 1, "{run:#?}");
    let line = tenant_line(&run.stdout, "acme");
    assert!(
        line.contains(&format!("database \"{}_acme\" does not exist (code 3D000)", pg.name)),
        "{run:#?}"
    );
    assert!(!exists("acme"));

    p.fleet(&fleet(", create_database: true", &["acme", "globex"]));
    let status = p.run(&["status"]);
    assert!(!exists("acme"), "reading never creates: {status:#?}");
    let run = p.run(&["up"]);
    assert_eq!(run.code, 0, "{run:#?}");
    for t in ["acme", "globex"] {
        let db = Pg {
            name: format!("{}_{t}", pg.name),
        };
        assert_eq!(db.column("SELECT version FROM public.fleetmig_history"), ["1"]);
        assert_eq!(db.column("SELECT to_regclass('public.widgets')::text"), ["widgets"]);
        std::mem::forget(db);
    }
    let again = p.run(&["up"]);
    assert_eq!(again.code, 0, "{again:#?}");

    // Two runners at once: whichever creates a database second is not failed for it.
    p.fleet(&fleet(", create_database: true", &["initech", "hooli"]));
    let runners: Vec<_> = (0..2)
        .map(|_| {
            p.command(&["up"])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for runner in runners {
        let out = runner.wait_with_output().unwrap();
        assert!(out.status.success(), "{out:#?}");
    }
    assert!(exists("initech") && exists("hooli"));
}

#[test]
fn mariadb_creates_a_missing_database_unless_told_not_to() {
    let Some(my) = My::create("create_db") else { return };
    let p = Project::new();
    p.migration("0001_widgets.sql", "CREATE TABLE widgets (id INT PRIMARY KEY);\n");
    p.fleet(&format!(
        "defaults: {{ url: \"{}\", database: \"{}_{{id}}\", create_database: false }}\n\
         tenants:\n  - {{ id: acme }}\n  - {{ id: globex, create_database: true }}\n",
        support::MYSQL_ADMIN,
        my.prefix
    ));
    let run = p.run(&["up", "--max-failures", "all"]);
    assert_eq!(run.code, 1, "{run:#?}");
    assert!(
        tenant_line(&run.stdout, "acme").contains(&format!("Unknown database '{}_acme'", my.prefix)),
        "{run:#?}"
    );
    let made = |db: &str| {
        my.column(&format!(
            "SELECT CAST(SCHEMA_NAME AS CHAR) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = '{}_{db}'",
            my.prefix
        ))
    };
    assert!(made("acme").is_empty());
    assert_eq!(made("globex"), [format!("{}_globex", my.prefix)]);
}
