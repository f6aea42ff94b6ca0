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
