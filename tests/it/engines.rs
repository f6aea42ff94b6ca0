//! Each engine and tenant layout end to end against a real server or file: the up/down walk
//! checked against the catalog, failures part way, `no-transaction`, and the offline script.

use std::io::Write;
use std::process::{Command, Stdio};

use crate::support::{self, My, Pg, Project, Run, sqlite_column};

/// One migration of a test set and what it adds to the tenant's catalog, in the words of
/// the catalog readers below: `table.column`, `index name`, `function name`, `view name`.
struct Migration {
    name: &'static str,
    up: &'static str,
    down: &'static str,
    adds: &'static [&'static str],
}

const PG_SET: &[Migration] = &[
    Migration {
        name: "create_widgets",
        up: "CREATE TABLE widgets (\n    id bigint PRIMARY KEY,\n    name text NOT NULL\n);\n",
        down: "DROP TABLE widgets;\n",
        adds: &["widgets.id", "widgets.name"],
    },
    Migration {
        name: "widget_label",
        // Semicolons inside a `$$` body: only a script sent whole gets this right.
        up: r"ALTER TABLE widgets ADD COLUMN color text;
CREATE FUNCTION widget_label(w widgets) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    shade text;
BEGIN
    shade := coalesce(w.color, 'plain');
    RETURN w.name || ' (' || shade || ')';
END;
$$;
",
        down: "DROP FUNCTION widget_label(widgets);\nALTER TABLE widgets DROP COLUMN color;\n",
        adds: &["widgets.color", "function widget_label"],
    },
    Migration {
        name: "create_gadgets",
        up: r"CREATE TABLE gadgets (
    id bigint PRIMARY KEY,
    widget_id bigint NOT NULL REFERENCES widgets (id)
);
DO $$
BEGIN
    IF to_regclass('gadgets') IS NULL THEN
        RAISE EXCEPTION 'gadgets is not on the search_path';
    END IF;
    EXECUTE 'ALTER TABLE gadgets ADD COLUMN made_in_do text';
END;
$$;
",
        down: "DROP TABLE gadgets;\n",
        adds: &["gadgets.id", "gadgets.widget_id", "gadgets.made_in_do"],
    },
    Migration {
        name: "index_gadgets",
        up: "CREATE INDEX gadgets_widget_id ON gadgets (widget_id);\n",
        down: "DROP INDEX gadgets_widget_id;\n",
        adds: &["index gadgets_widget_id"],
    },
];

const MY_SET: &[Migration] = &[
    Migration {
        name: "create_widgets",
        up: "CREATE TABLE widgets (\n    id BIGINT PRIMARY KEY,\n    name VARCHAR(100) NOT NULL\n);\n",
        down: "DROP TABLE widgets;\n",
        adds: &["widgets.id", "widgets.name"],
    },
    Migration {
        name: "add_widget_color",
        up: "ALTER TABLE widgets ADD COLUMN color VARCHAR(20) NULL;\n",
        down: "ALTER TABLE widgets DROP COLUMN color;\n",
        adds: &["widgets.color"],
    },
    Migration {
        name: "create_gadgets",
        up: "CREATE TABLE gadgets (\n    id BIGINT PRIMARY KEY,\n    widget_id BIGINT NOT NULL\n);\n\
             ALTER TABLE gadgets ADD COLUMN label VARCHAR(50);\n",
        down: "DROP TABLE gadgets;\n",
        adds: &["gadgets.id", "gadgets.widget_id", "gadgets.label"],
    },
    Migration {
        name: "index_gadgets",
        up: "CREATE INDEX gadgets_widget_id ON gadgets (widget_id);\n",
        down: "DROP INDEX gadgets_widget_id ON gadgets;\n",
        adds: &["index gadgets_widget_id"],
    },
];

const SQLITE_SET: &[Migration] = &[
    Migration {
        name: "create_widgets",
        up: "CREATE TABLE widgets (\n    id INTEGER PRIMARY KEY,\n    name TEXT NOT NULL\n);\n",
        down: "DROP TABLE widgets;\n",
        adds: &["widgets.id", "widgets.name"],
    },
    Migration {
        name: "add_widget_color",
        up: "ALTER TABLE widgets ADD COLUMN color TEXT;\n",
        down: "ALTER TABLE widgets DROP COLUMN color;\n",
        adds: &["widgets.color"],
    },
    Migration {
        name: "create_gadgets",
        up: "CREATE TABLE gadgets (\n    id INTEGER PRIMARY KEY,\n    widget_id INTEGER NOT NULL REFERENCES widgets (id)\n);\n\
             CREATE VIEW widget_names AS SELECT name FROM widgets;\n",
        down: "DROP VIEW widget_names;\nDROP TABLE gadgets;\n",
        adds: &["gadgets.id", "gadgets.widget_id", "view widget_names"],
    },
    Migration {
        name: "index_gadgets",
        up: "CREATE INDEX gadgets_widget_id ON gadgets (widget_id);\n",
        down: "DROP INDEX gadgets_widget_id;\n",
        adds: &["index gadgets_widget_id"],
    },
];

fn write_set(p: &Project, set: &[Migration]) {
    for (i, m) in set.iter().enumerate() {
        p.migration(&format!("{:04}_{}.up.sql", i + 1, m.name), m.up);
        p.migration(&format!("{:04}_{}.down.sql", i + 1, m.name), m.down);
    }
}

/// The steps every layout walks, and the version each one leaves every tenant at.
const WALK: [(&[&str], usize); 5] = [
    (&["up", "--to", "2"], 2),
    (&["up"], 4),
    (&["down", "--steps", "2"], 2),
    (&["down", "--to", "0", "--yes"], 0),
    (&["up"], 4),
];

/// The words of `id`'s line in a run's text output.
fn tenant_words(run: &Run, id: &str) -> Vec<String> {
    crate::support::tenant_line(&run.stdout, id)
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

/// Walks `WALK` over `tenants`. After each step, `read(tenant)` gives the history rows
/// (`"1 create_widgets clean"`) and the catalog, which must be exactly what the applied
/// migrations of `set` make.
fn walk(p: &Project, tenants: &[&str], set: &[Migration], read: impl Fn(&str) -> (Vec<String>, Vec<String>)) {
    let mut at = 0;
    for (args, to) in WALK {
        let command = args.join(" ");
        let run = p.run(args);
        assert_eq!(run.code, 0, "`{command}`: {run:#?}");
        let (count, verb) = if to >= at {
            (to - at, "applied")
        } else {
            (at - to, "reverted")
        };
        for t in tenants {
            let words = tenant_words(&run, t);
            let expected = [
                t.to_string(),
                at.to_string(),
                "->".into(),
                to.to_string(),
                count.to_string(),
                verb.into(),
            ];
            assert!(words.starts_with(&expected), "`{command}`: tenant {t}: {words:?}");

            let (history, catalog) = read(t);
            let want_history: Vec<String> = set[..to]
                .iter()
                .enumerate()
                .map(|(i, m)| format!("{} {} clean", i + 1, m.name))
                .collect();
            assert_eq!(history, want_history, "`{command}`: history of tenant {t}");
            let mut want_catalog: Vec<String> = set[..to]
                .iter()
                .flat_map(|m| m.adds.iter().map(|s| s.to_string()))
                .collect();
            want_catalog.sort();
            assert_eq!(catalog, want_catalog, "`{command}`: catalog of tenant {t}");
        }
        at = to;
    }
    let status = p.run(&["status"]);
    assert_eq!(status.code, 0, "{status:#?}");
    assert!(
        status
            .stdout
            .contains(&format!("{n} of {n} tenant(s) current at 4.", n = tenants.len())),
        "{status:#?}"
    );
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

fn pg_history(pg: &Pg, table: &str) -> Vec<String> {
    pg.column(&format!(
        "SELECT version::text || ' ' || name || ' ' || CASE WHEN dirty THEN 'dirty' ELSE 'clean' END \
         FROM {table} ORDER BY version"
    ))
}

/// Columns (history table aside), indexes (primary keys aside) and functions in `schema`.
fn pg_catalog(pg: &Pg, schema: &str) -> Vec<String> {
    sorted(pg.column(&format!(
        "SELECT table_name::text || '.' || column_name::text FROM information_schema.columns \
           WHERE table_schema = '{schema}' AND table_name <> 'fleetmig_history' \
         UNION ALL SELECT 'index ' || c.relname::text FROM pg_index i \
           JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_namespace n ON n.oid = c.relnamespace \
           WHERE n.nspname = '{schema}' AND NOT i.indisprimary \
         UNION ALL SELECT 'function ' || p.proname::text FROM pg_proc p \
           JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = '{schema}'"
    )))
}

fn my_history(my: &My, db: &str) -> Vec<String> {
    my.column(&format!(
        "SELECT CAST(CONCAT(version, ' ', name, ' ', IF(dirty, 'dirty', 'clean')) AS CHAR) \
         FROM `{db}`.fleetmig_history ORDER BY version"
    ))
}

fn my_catalog(my: &My, db: &str) -> Vec<String> {
    sorted(my.column(&format!(
        "SELECT CAST(CONCAT(TABLE_NAME, '.', COLUMN_NAME) AS CHAR) FROM information_schema.COLUMNS \
           WHERE TABLE_SCHEMA = '{db}' AND TABLE_NAME <> 'fleetmig_history' \
         UNION ALL SELECT DISTINCT CAST(CONCAT('index ', INDEX_NAME) AS CHAR) FROM information_schema.STATISTICS \
           WHERE TABLE_SCHEMA = '{db}' AND INDEX_NAME <> 'PRIMARY'"
    )))
}

fn my_tables(my: &My, db: &str) -> Vec<String> {
    sorted(my.column(&format!(
        "SELECT CAST(TABLE_NAME AS CHAR) FROM information_schema.TABLES WHERE TABLE_SCHEMA = '{db}'"
    )))
}

fn sqlite_history(p: &Project, id: &str) -> Vec<String> {
    sqlite_column(
        &p.db_path(id),
        "SELECT version || ' ' || name || ' ' || CASE WHEN dirty THEN 'dirty' ELSE 'clean' END \
         FROM fleetmig_history ORDER BY version",
    )
}

fn sqlite_catalog(p: &Project, id: &str) -> Vec<String> {
    sorted(sqlite_column(
        &p.db_path(id),
        "SELECT m.name || '.' || c.name FROM sqlite_master m, pragma_table_info(m.name) c \
           WHERE m.type = 'table' AND m.name <> 'fleetmig_history' AND m.name NOT LIKE 'sqlite%' \
         UNION ALL SELECT type || ' ' || name FROM sqlite_master \
           WHERE type IN ('index', 'view', 'trigger') AND name NOT LIKE 'sqlite%'",
    ))
}

#[test]
fn postgres_schema_per_tenant_walks_up_and_down() {
    let Some(pg) = Pg::create("walk_schema") else { return };
    let p = Project::new();
    p.fleet(&format!(
        "hosts:\n  pg: {{ url: \"{}\", max_connections: 2 }}\n\
         defaults: {{ host: pg, schema: \"Tenant-{{id}}\" }}\n\
         tenants:\n  - {{ id: acme }}\n  - {{ id: globex }}\n  - {{ id: initech }}\n",
        pg.url()
    ));
    write_set(&p, PG_SET);
    // A schema name that only works quoted, everywhere fleetmig names it.
    walk(&p, &["acme", "globex", "initech"], PG_SET, |t| {
        let schema = format!("Tenant-{t}");
        (
            pg_history(&pg, &format!("\"{schema}\".fleetmig_history")),
            pg_catalog(&pg, &schema),
        )
    });
    pg.exec("INSERT INTO \"Tenant-acme\".widgets (id, name) VALUES (1, 'knob')");
    let label = pg.column("SELECT \"Tenant-acme\".widget_label(w) FROM \"Tenant-acme\".widgets w");
    assert_eq!(label, ["knob (plain)"]);
}

#[test]
fn postgres_database_per_tenant_walks_up_and_down() {
    let Some(pg) = Pg::create("walk_db") else { return };
    let ids = ["acme", "globex"];
    // fleetmig does not create PostgreSQL databases; each `Pg` drops its own at the end.
    let tenant_dbs: Vec<Pg> = ids
        .iter()
        .map(|id| {
            let name = format!("{}-{id}", pg.name);
            pg.exec(&format!("CREATE DATABASE \"{name}\""));
            Pg { name }
        })
        .collect();
    let p = Project::new();
    p.fleet(&format!(
        "hosts:\n  pg: {{ url: \"{}\" }}\n\
         defaults: {{ host: pg, database: \"{}-{{id}}\" }}\n\
         tenants:\n  - {{ id: acme }}\n  - {{ id: globex }}\n",
        pg.url(),
        pg.name
    ));
    write_set(&p, PG_SET);
    walk(&p, &ids, PG_SET, |t| {
        let db = &tenant_dbs[ids.iter().position(|id| *id == t).unwrap()];
        (pg_history(db, "public.fleetmig_history"), pg_catalog(db, "public"))
    });
    assert_eq!(
        pg.column("SELECT to_regclass('public.fleetmig_history')::text"),
        ["NULL"],
        "the database in the host URL is no tenant and must stay untouched"
    );
}

#[test]
fn mariadb_database_per_tenant_walks_up_and_down() {
    let Some(my) = My::create("walk") else { return };
    let p = Project::new();
    p.fleet(&format!(
        "hosts:\n  my: {{ url: \"{}\" }}\n\
         defaults: {{ host: my, database: \"{}-{{id}}\" }}\n\
         tenants:\n  - {{ id: acme }}\n  - {{ id: globex }}\n",
        support::MYSQL_ADMIN,
        my.prefix
    ));
    write_set(&p, MY_SET);
    walk(&p, &["acme", "globex"], MY_SET, |t| {
        let db = format!("{}-{t}", my.prefix);
        (my_history(&my, &db), my_catalog(&my, &db))
    });
}

#[test]
fn sqlite_walks_up_and_down() {
    let p = Project::new();
    p.fleet("defaults: { url: \"sqlite://data/{id}.db\" }\ntenants:\n  - { id: acme }\n  - { id: globex }\n");
    write_set(&p, SQLITE_SET);
    walk(&p, &["acme", "globex"], SQLITE_SET, |t| {
        (sqlite_history(&p, t), sqlite_catalog(&p, t))
    });
}

/// Migration 2 creates a table, writes a row, then fails; migration 3 must never run.
fn write_failing_set(p: &Project, create_widgets: &str) {
    p.migration("0001_create_widgets.up.sql", create_widgets);
    p.migration(
        "0002_half_done.up.sql",
        "CREATE TABLE half_done (id INTEGER);\n\
         INSERT INTO widgets (id, name) VALUES (1, 'written before the failure');\n\
         SELECT * FROM missing_table;\n",
    );
    p.migration(
        "0003_never_reached.up.sql",
        "CREATE TABLE never_reached (id INTEGER);\n",
    );
}

/// The first `up` fails at 2 on every tenant and leaves it cleanly at 1; fixing the file
/// and running again then works, because nothing of the failed attempt is left.
fn assert_rolled_back(
    p: &Project,
    tenants: &[&str],
    db_error: &str,
    read: impl Fn(&str) -> (Vec<String>, Vec<String>),
) {
    let first = p.run(&["up", "--to", "1"]);
    assert_eq!(first.code, 0, "{first:#?}");
    // Every tenant runs into the failure, rather than the run stopping at the first one.
    let run = p.run(&["up", "--max-failures", "all"]);
    assert_eq!(run.code, 1, "{run:#?}");
    for t in tenants {
        let words = tenant_words(&run, t).join(" ");
        assert!(words.contains("FAILED applying 0002_half_done:"), "{words}");
        assert!(words.contains(db_error), "{words}");
        assert!(words.contains("left at 1"), "{words}");
        assert!(!words.contains("dirty"), "{words}");
        let (history, tables) = read(t);
        assert_eq!(history, ["1 create_widgets clean"], "tenant {t}");
        assert_eq!(tables, ["widgets.id", "widgets.name", "widgets rows: 0"], "tenant {t}");
    }
    assert!(run.stdout.contains(&format!("{} failed", tenants.len())), "{run:#?}");

    let status = p.run(&["status", "--format", "json"]);
    assert_eq!(status.code, 1, "{status:#?}");
    let doc: serde_json::Value = serde_json::from_str(&status.stdout).unwrap();
    let rows = doc["tenants"].as_array().unwrap();
    assert_eq!(rows.len(), tenants.len(), "{status:#?}");
    for row in rows {
        assert_eq!(row["state"], "behind", "{row}");
        assert_eq!(row["version"], 1, "{row}");
        assert_eq!(row["pending"], 2, "{row}");
    }

    p.migration("0002_half_done.up.sql", "CREATE TABLE half_done (id INTEGER);\n");
    let run = p.run(&["up"]);
    assert_eq!(run.code, 0, "{run:#?}");
    for t in tenants {
        let (history, _) = read(t);
        assert_eq!(
            history,
            ["1 create_widgets clean", "2 half_done clean", "3 never_reached clean"],
            "tenant {t}"
        );
    }
}

/// The PostgreSQL failure walk for a fleet file made from the test database's URL.
fn postgres_failure(tag: &str, fleet: impl Fn(&str) -> String, tenants: &[&str]) {
    let Some(pg) = Pg::create(tag) else { return };
    let p = Project::new();
    p.fleet(&fleet(&pg.url()));
    write_failing_set(
        &p,
        "CREATE TABLE widgets (id bigint PRIMARY KEY, name text NOT NULL);\n",
    );
    assert_rolled_back(
        &p,
        tenants,
        "relation \"missing_table\" does not exist (code 42P01)",
        |t| {
            let schema = format!("t_{t}");
            let mut tables = pg_catalog(&pg, &schema);
            tables.extend(pg.column(&format!("SELECT 'widgets rows: ' || count(*) FROM {schema}.widgets")));
            (pg_history(&pg, &format!("{schema}.fleetmig_history")), tables)
        },
    );
}

#[test]
fn postgres_failure_leaves_no_trace() {
    postgres_failure(
        "fail",
        |url| {
            format!(
                "defaults: {{ url: \"{url}\", schema: \"t_{{id}}\" }}\ntenants:\n  - {{ id: acme }}\n  - {{ id: globex }}\n"
            )
        },
        &["acme", "globex"],
    );
}

/// Schema-tenants of a named host share pooled connections: with one connection for three
/// tenants, a connection left in a failed transaction must not reach the next tenant.
#[test]
fn postgres_failure_on_a_pooled_host_leaves_no_trace() {
    postgres_failure(
        "fail_pool",
        |url| {
            format!(
                "hosts:\n  pg: {{ url: \"{url}\", max_connections: 1 }}\n\
                 defaults: {{ host: pg, schema: \"t_{{id}}\" }}\n\
                 tenants:\n  - {{ id: acme }}\n  - {{ id: globex }}\n  - {{ id: initech }}\n"
            )
        },
        &["acme", "globex", "initech"],
    );
}

#[test]
fn sqlite_failure_leaves_no_trace() {
    let p = Project::new();
    p.fleet("defaults: { url: \"sqlite://data/{id}.db\" }\ntenants:\n  - { id: acme }\n  - { id: globex }\n");
    write_failing_set(
        &p,
        "CREATE TABLE widgets (id INTEGER PRIMARY KEY, name TEXT NOT NULL);\n",
    );
    assert_rolled_back(&p, &["acme", "globex"], "no such table: missing_table", |t| {
        let mut tables = sqlite_catalog(&p, t);
        tables.extend(sqlite_column(
            &p.db_path(t),
            "SELECT 'widgets rows: ' || count(*) FROM widgets",
        ));
        (sqlite_history(&p, t), tables)
    });
}

#[test]
fn mariadb_failure_leaves_a_dirty_tenant_until_stamped() {
    let Some(my) = My::create("dirty") else { return };
    let p = Project::new();
    p.fleet(&format!(
        "defaults: {{ url: \"{}\", database: \"{}_{{id}}\" }}\ntenants:\n  - {{ id: acme }}\n  - {{ id: globex }}\n",
        support::MYSQL_ADMIN,
        my.prefix
    ));
    write_failing_set(
        &p,
        "CREATE TABLE widgets (id BIGINT PRIMARY KEY, name VARCHAR(100) NOT NULL);\n",
    );
    let tenants = ["acme", "globex"];
    let db = |t: &str| format!("{}_{t}", my.prefix);

    let first = p.run(&["up", "--to", "1"]);
    assert_eq!(first.code, 0, "{first:#?}");
    let run = p.run(&["up", "--max-failures", "all"]);
    assert_eq!(run.code, 1, "{run:#?}");
    for t in tenants {
        let words = tenant_words(&run, t).join(" ");
        assert!(words.contains("FAILED applying 0002_half_done:"), "{words}");
        assert!(words.contains("ERROR 1146 (42S02): Table '"), "{words}");
        assert!(words.contains("missing_table' doesn't exist"), "{words}");
        assert!(
            words.contains("left at 1, dirty at migration 2 [fix by hand"),
            "{words}"
        );
        // DDL committed as it went: the half-made table stays, and the row says so.
        assert_eq!(my_history(&my, &db(t)), ["1 create_widgets clean", "2 half_done dirty"]);
        assert_eq!(my_tables(&my, &db(t)), ["fleetmig_history", "half_done", "widgets"]);
    }

    let status = p.run(&["status", "--format", "json"]);
    assert_eq!(status.code, 1, "{status:#?}");
    let doc: serde_json::Value = serde_json::from_str(&status.stdout).unwrap();
    let rows = doc["tenants"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    for row in rows {
        assert_eq!(row["state"], "dirty", "{row}");
        let detail = row["detail"].as_str().unwrap();
        assert!(
            detail.starts_with("migration 2 failed part way: check by hand")
                && detail.contains("`fleetmig stamp 1 --select id="),
            "{row}"
        );
        assert_eq!(row["version"], 1, "the run said `left at 1`: {row}");
        assert_eq!(row["dirty"], 2, "{row}");
    }

    let again = p.run(&["up"]);
    assert_eq!(again.code, 1, "{again:#?}");
    for t in tenants {
        let words = tenant_words(&again, t).join(" ");
        assert!(words.contains("SKIPPED (dirty): migration 2 is dirty"), "{words}");
        assert_eq!(my_history(&my, &db(t)), ["1 create_widgets clean", "2 half_done dirty"]);
        assert!(!my_tables(&my, &db(t)).contains(&"never_reached".to_owned()));
    }

    for t in tenants {
        my.exec(&format!(
            "DROP TABLE `{}`.half_done; DELETE FROM `{}`.widgets",
            db(t),
            db(t)
        ));
    }
    let stamp = p.run(&["stamp", "1"]);
    assert_eq!(stamp.code, 0, "{stamp:#?}");
    for t in tenants {
        assert_eq!(my_history(&my, &db(t)), ["1 create_widgets clean"]);
    }
    let status = p.run(&["status", "--format", "json"]);
    let doc: serde_json::Value = serde_json::from_str(&status.stdout).unwrap();
    assert!(
        doc["tenants"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["state"] == "behind"),
        "{status:#?}"
    );

    p.migration("0002_half_done.up.sql", "CREATE TABLE half_done (id INTEGER);\n");
    let fixed = p.run(&["up"]);
    assert_eq!(fixed.code, 0, "{fixed:#?}");
    for t in tenants {
        assert_eq!(
            my_history(&my, &db(t)),
            ["1 create_widgets clean", "2 half_done clean", "3 never_reached clean"]
        );
        assert_eq!(
            my_tables(&my, &db(t)),
            ["fleetmig_history", "half_done", "never_reached", "widgets"]
        );
    }
}

/// `stamp` on PostgreSQL rewrites the history alone: an edited migration's checksum and a
/// dirty mark are updated, a missing row is added, rows past the target are removed.
#[test]
fn postgres_stamp_rewrites_the_history_only() {
    let Some(pg) = Pg::create("stamp") else { return };
    let p = Project::new();
    p.fleet(&format!(
        "defaults: {{ url: \"{}\", schema: \"s_{{id}}\" }}\ntenants:\n  - {{ id: acme }}\n",
        pg.url()
    ));
    for i in 1..=3 {
        p.migration(&format!("000{i}_t{i}.up.sql"), &format!("CREATE TABLE t{i} (id int);"));
    }
    let up = p.run(&["up", "--to", "2"]);
    assert_eq!(up.code, 0, "{up:#?}");
    pg.exec("UPDATE s_acme.fleetmig_history SET dirty = TRUE WHERE version = '2'");
    p.migration("0001_t1.up.sql", "CREATE TABLE t1 (id bigint);");
    let refused = p.run(&["up"]);
    assert_ne!(refused.code, 0, "the edited migration is refused first: {refused:#?}");

    let stamp = p.run(&["stamp", "3"]);
    assert_eq!(stamp.code, 0, "{stamp:#?}");
    let history = "s_acme.fleetmig_history";
    assert_eq!(pg_history(&pg, history), ["1 t1 clean", "2 t2 clean", "3 t3 clean"]);
    let tables = pg.column("SELECT tablename::text FROM pg_tables WHERE schemaname = 's_acme' ORDER BY 1");
    assert_eq!(tables, ["fleetmig_history", "t1", "t2"], "no script ran");
    let up = p.run(&["up"]);
    assert_eq!(up.code, 0, "the new checksum is recorded: {up:#?}");

    let stamp = p.run(&["stamp", "1"]);
    assert_eq!(stamp.code, 0, "{stamp:#?}");
    assert_eq!(pg_history(&pg, history), ["1 t1 clean"]);
}

#[test]
fn postgres_no_transaction_creates_an_index_concurrently() {
    let Some(pg) = Pg::create("concurrently") else { return };
    let p = Project::new();
    p.fleet(&format!(
        "defaults: {{ url: \"{}\", schema: \"t_{{id}}\" }}\ntenants:\n  - {{ id: acme }}\n  - {{ id: globex }}\n",
        pg.url()
    ));
    p.migration(
        "0001_create_items.up.sql",
        "CREATE TABLE items (id bigint PRIMARY KEY, name text NOT NULL);\n\
         INSERT INTO items SELECT g, 'item ' || g FROM generate_series(1, 1000) g;\n",
    );
    p.migration("0001_create_items.down.sql", "DROP TABLE items;\n");
    p.migration(
        "0002_index_items_name.up.sql",
        "-- fleetmig: no-transaction\nCREATE INDEX CONCURRENTLY items_name ON items (name);\n",
    );
    p.migration(
        "0002_index_items_name.down.sql",
        "-- fleetmig: no-transaction\nDROP INDEX CONCURRENTLY items_name;\n",
    );

    let history = p.run(&["history", "--format", "json"]);
    let doc: serde_json::Value = serde_json::from_str(&history.stdout).unwrap();
    assert_eq!(doc["migrations"][1]["transactional"], false, "{history:#?}");

    let index_state = |schema: &str| {
        pg.column(&format!(
            "SELECT i.indisvalid::text || ' ' || i.indisready::text FROM pg_index i \
             JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = '{schema}' AND c.relname = 'items_name'"
        ))
    };
    let run = p.run(&["up"]);
    assert_eq!(run.code, 0, "{run:#?}");
    for t in ["acme", "globex"] {
        let schema = format!("t_{t}");
        assert_eq!(index_state(&schema), ["true true"], "tenant {t}");
        assert_eq!(
            pg_history(&pg, &format!("{schema}.fleetmig_history")),
            ["1 create_items clean", "2 index_items_name clean"]
        );
    }

    let down = p.run(&["down", "--steps", "1"]);
    assert_eq!(down.code, 0, "{down:#?}");
    for t in ["acme", "globex"] {
        let schema = format!("t_{t}");
        assert!(index_state(&schema).is_empty(), "tenant {t}");
        assert_eq!(
            pg_history(&pg, &format!("{schema}.fleetmig_history")),
            ["1 create_items clean"]
        );
    }
}

/// `psql` on the PATH, or `None` after saying the test is skipped.
fn psql() -> Option<&'static str> {
    match Command::new("psql").arg("--version").output() {
        Ok(out) if out.status.success() => Some("psql"),
        other => {
            let why = format!("{other:?}");
            if support::servers_required() {
                panic!("psql is required (FLEETMIG_REQUIRE_SERVERS=1) but does not run: {why}");
            }
            eprintln!("SKIPPED: psql does not run ({why}); set FLEETMIG_REQUIRE_SERVERS=1 to make this a failure");
            None
        }
    }
}

#[test]
fn postgres_offline_script_through_psql_matches_up() {
    let Some(pg) = Pg::create("offline") else { return };
    let Some(psql) = psql() else { return };
    let p = Project::new();
    p.fleet(&format!(
        "tenants:\n  - {{ id: online, url: \"{}\", schema: s_online }}\n",
        pg.url()
    ));
    write_set(&p, PG_SET);
    p.migration(
        "0005_index_widgets_name.up.sql",
        "-- fleetmig: no-transaction\nCREATE INDEX CONCURRENTLY widgets_name ON widgets (name);\n",
    );

    let up = p.run(&["up"]);
    assert_eq!(up.code, 0, "{up:#?}");
    let sql = p.run(&["sql", "--engine", "postgres", "--schema", "s_offline"]);
    assert_eq!(sql.code, 0, "{sql:#?}");

    let mut child = Command::new(psql)
        .args([
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
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(sql.stdout.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "psql failed on the script:\n{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        sql.stdout
    );

    let columns = |schema: &str| {
        pg.column(&format!(
            "SELECT table_name::text || '.' || column_name::text || ' ' || data_type::text || ' ' \
                    || is_nullable::text || ' ' || coalesce(column_default::text, '-') \
             FROM information_schema.columns WHERE table_schema = '{schema}' \
             ORDER BY table_name, ordinal_position"
        ))
    };
    let history = |schema: &str| {
        pg.column(&format!(
            "SELECT version::text || ' ' || name || ' ' || checksum || ' ' || dirty::text \
             FROM {schema}.fleetmig_history ORDER BY version"
        ))
    };
    let online = columns("s_online");
    assert!(
        online.iter().any(|c| c.starts_with("gadgets.made_in_do text")),
        "{online:#?}"
    );
    assert!(
        online.iter().any(|c| c.starts_with("fleetmig_history.checksum")),
        "{online:#?}"
    );
    assert_eq!(columns("s_offline"), online);

    let online = history("s_online");
    assert_eq!(online.len(), 5, "{online:#?}");
    assert_eq!(history("s_offline"), online);

    assert_eq!(pg_catalog(&pg, "s_offline"), pg_catalog(&pg, "s_online"));
    assert!(pg_catalog(&pg, "s_online").contains(&"index widgets_name".to_owned()));
    let status = p.run(&["status"]);
    assert_eq!(status.code, 0, "{status:#?}");
}
