//! Tenants found by the fleet file's `discover:` query: each row becomes a tenant through
//! the same defaults and checks as the tenants the file lists.

use std::collections::{HashMap, HashSet};

use crate::load::fleet::{Entry, FleetError, FleetFile};
use crate::model::fleet::{Fleet, RegistryRow, TenantId, quoted};

/// Adds the tenants of `rows` (the `discover:` query's answer, in its order) after the
/// listed ones. Columns `id`, `schema`, `database`, `url`, `host` and `canary` are fields,
/// every other column is a label; NULL is absent. Values are taken as they are: a row
/// never expands `${VAR}`, so a registry cannot read fleetmig's environment.
/// Rows count from 1 in messages.
pub fn merge(file: FleetFile, rows: Vec<RegistryRow>) -> Result<Fleet, FleetError> {
    let FleetFile { mut fleet, rules } = file;
    let default_host = fleet.discover.as_ref().and_then(|d| d.host.clone());
    let listed: HashSet<TenantId> = fleet.tenants.iter().map(|t| t.id.clone()).collect();
    let mut found: HashMap<TenantId, usize> = HashMap::new();
    fleet.tenants.reserve(rows.len());
    for (index, row) in rows.into_iter().enumerate() {
        let number = index + 1;
        let row_context = format!("discover row {number}");
        let columns: Vec<String> = row.iter().map(|(c, _)| format!("`{c}`")).collect();
        let mut names = HashSet::new();
        let mut id = None;
        let mut canary = None;
        let mut entry = Entry {
            registry: true,
            ..Entry::default()
        };
        for (column, value) in row {
            if !names.insert(column.clone()) {
                return Err(rules.invalid(row_context, format!("the query gives two columns named `{column}`")));
            }
            match column.as_str() {
                "id" => id = Some(value),
                "schema" => entry.schema = value,
                "database" => entry.database = value,
                "url" => entry.url = value,
                "host" => entry.host = value,
                "canary" => canary = value,
                "init_sql" => {
                    return Err(rules.invalid(
                        row_context,
                        "a registry row cannot give `init_sql`; put it in `defaults:` or `hosts:`",
                    ));
                }
                _ => {
                    if let Some(value) = value {
                        entry.labels.insert(column, value);
                    }
                }
            }
        }
        let raw_id = match id {
            None => {
                return Err(rules.invalid(
                    row_context,
                    format!("the query gives no `id` column (its columns: {})", columns.join(", ")),
                ));
            }
            Some(None) => return Err(rules.invalid(row_context, "`id` is NULL")),
            Some(Some(raw)) => raw,
        };
        let id = TenantId::new(&raw_id)
            .map_err(|m| rules.invalid(format!("{row_context} (id `{}`)", quoted(&raw_id)), m))?;
        let context = format!("{row_context} (id `{id}`)");
        if listed.contains(&id) {
            return Err(rules.invalid(context, format!("tenant `{id}` is listed in `tenants:` too")));
        }
        if let Some(first) = found.insert(id.clone(), number) {
            return Err(rules.invalid(context, format!("discover row {first} has the same id")));
        }
        entry.canary = canary
            .map(|text| {
                parse_bool(&text).ok_or_else(|| {
                    rules.invalid(
                        format!("{context} canary"),
                        format!("`{}` is not true or false", quoted(&text)),
                    )
                })
            })
            .transpose()?
            .unwrap_or(false);
        if entry.url.is_none() && entry.host.is_none() {
            entry.host.clone_from(&default_host);
        }
        fleet.tenants.push(rules.tenant(id, entry, &context)?);
    }
    Ok(fleet)
}

/// A boolean as databases write it as text: `true`/`false`, `t`/`f` (PostgreSQL), `1`/`0`
/// (MySQL, SQLite), `yes`/`no`.
fn parse_bool(text: &str) -> Option<bool> {
    match text.trim().to_ascii_lowercase().as_str() {
        "true" | "t" | "1" | "yes" | "y" | "on" => Some(true),
        "false" | "f" | "0" | "no" | "n" | "off" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::load::fleet::parse_file;
    use crate::model::fleet::Engine;

    const FLEET: &str = r#"
hosts:
  main: { url: "postgres://app:${PW}@db:5432/app" }
  other: { url: "mysql://root@my:3306/" }
defaults:
  host: main
  schema: "tenant_{id}"
  labels: { tier: free, region: eu }
  init_sql: "SET x = 1"
tenants:
  - id: acme
    labels: { tier: enterprise }
discover:
  url: "postgres://reg:${PW}@registry/reg"
  query: "SELECT id, tier FROM tenants"
"#;

    fn env(name: &str) -> Option<String> {
        (name == "PW").then(|| "hunter2".to_owned())
    }

    fn file(text: &str) -> FleetFile {
        parse_file(Path::new("/fleet/tenants.yaml"), text, &env).unwrap()
    }

    fn row(cells: &[(&str, Option<&str>)]) -> RegistryRow {
        cells
            .iter()
            .map(|(c, v)| (c.to_string(), v.map(str::to_owned)))
            .collect()
    }

    fn error(text: &str, rows: Vec<RegistryRow>) -> String {
        let err = merge(file(text), rows).unwrap_err().to_string();
        assert!(err.starts_with("fleet file `/fleet/tenants.yaml`: "), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
        err
    }

    #[test]
    fn rows_become_tenants_after_the_listed_ones_with_the_defaults() {
        let fleet = merge(
            file(FLEET),
            vec![
                row(&[("id", Some("globex")), ("tier", Some("pro")), ("seats", Some("5"))]),
                row(&[("id", Some("initech")), ("schema", Some("custom")), ("region", None)]),
                row(&[("id", Some("42")), ("host", Some("other")), ("canary", Some("t"))]),
                row(&[
                    ("id", Some("lite")),
                    ("url", Some("sqlite://data/lite.db")),
                    ("canary", Some("0")),
                ]),
            ],
        )
        .unwrap();
        let ids: Vec<&str> = fleet.tenants.iter().map(|t| t.id.as_str()).collect();
        assert_eq!(ids, ["acme", "globex", "initech", "42", "lite"]);

        let globex = fleet.tenant("globex").unwrap();
        assert_eq!(globex.host.as_deref(), Some("main"));
        assert_eq!(globex.namespace.schema.as_ref().unwrap().as_str(), "tenant_globex");
        assert_eq!(globex.labels["tier"], "pro");
        assert_eq!(globex.labels["region"], "eu");
        assert_eq!(globex.labels["seats"], "5");
        assert_eq!(globex.init_sql, ["SET x = 1"]);
        assert!(!globex.canary);

        let initech = fleet.tenant("initech").unwrap();
        assert_eq!(initech.namespace.schema.as_ref().unwrap().as_str(), "custom");
        assert_eq!(initech.labels["region"], "eu", "NULL leaves the default");

        let mysql = fleet.tenant("42").unwrap();
        assert_eq!(mysql.engine, Engine::MySql);
        assert_eq!(mysql.namespace.database.as_ref().unwrap().as_str(), "tenant_42");
        assert!(mysql.canary);

        let lite = fleet.tenant("lite").unwrap();
        assert_eq!(lite.engine, Engine::Sqlite);
        assert_eq!(lite.url.url().path(), "/fleet/data/lite.db");
        assert!(lite.namespace.schema.is_none());
        assert!(!lite.canary);
    }

    #[test]
    fn the_discover_host_comes_before_the_defaults() {
        let text = FLEET.replace("  query:", "  host: other\n  query:");
        let fleet = merge(
            file(&text),
            vec![
                row(&[("id", Some("a"))]),
                row(&[("id", Some("b")), ("host", Some("main"))]),
            ],
        )
        .unwrap();
        assert_eq!(fleet.tenant("a").unwrap().host.as_deref(), Some("other"));
        assert_eq!(fleet.tenant("b").unwrap().host.as_deref(), Some("main"));
        assert_eq!(fleet.tenant("acme").unwrap().host.as_deref(), Some("main"));
    }

    #[test]
    fn a_row_may_name_a_listed_server_by_url() {
        let rows = vec![
            row(&[
                ("id", Some("a")),
                ("url", Some("postgres://other:pw@DB:5432/elsewhere")),
            ]),
            row(&[("id", Some("b")), ("url", Some("mysql://root@my/b"))]),
            row(&[("id", Some("c")), ("url", Some("sqlite:///srv/tenants/c.db"))]),
        ];
        let fleet = merge(file(FLEET), rows).unwrap();
        assert_eq!(fleet.tenant("b").unwrap().engine, Engine::MySql);
    }

    #[test]
    fn values_are_not_expanded() {
        let rows = vec![row(&[("id", Some("a")), ("url", Some("postgres://u:${PW}@db/db"))])];
        let fleet = merge(file(FLEET), rows).unwrap();
        assert_eq!(fleet.tenant("a").unwrap().url.password(), Some("$%7BPW%7D"));
    }

    #[test]
    fn bad_rows_name_the_row_and_the_column() {
        let ok = ("id", Some("ok"));
        let cases: Vec<(Vec<RegistryRow>, &str)> = vec![
            (
                vec![row(&[("tenant_id", Some("a")), ("tier", None)])],
                "discover row 1: the query gives no `id` column (its columns: `tenant_id`, `tier`)",
            ),
            (vec![row(&[ok]), row(&[("id", None)])], "discover row 2: `id` is NULL"),
            (
                vec![row(&[ok]), row(&[("id", Some("ok2"))]), row(&[("id", Some("x y"))])],
                "discover row 3 (id `x y`): tenant id `x y` holds ` `",
            ),
            (
                vec![row(&[("id", Some("b")), ("schema", Some("b\"; drop"))])],
                "discover row 1 (id `b`) schema: `b\\\"; drop` holds `\\\"`",
            ),
            (
                vec![row(&[("id", Some("acme"))])],
                "discover row 1 (id `acme`): tenant `acme` is listed in `tenants:` too",
            ),
            (
                vec![row(&[ok]), row(&[ok])],
                "discover row 2 (id `ok`): discover row 1 has the same id",
            ),
            (
                vec![row(&[ok, ("canary", Some("maybe"))])],
                "discover row 1 (id `ok`) canary: `maybe` is not true or false",
            ),
            (
                vec![row(&[ok, ("host", Some("nope"))])],
                "discover row 1 (id `ok`): host `nope` is not in `hosts`",
            ),
            (
                vec![row(&[ok, ("host", Some("main")), ("url", Some("sqlite://x.db"))])],
                "discover row 1 (id `ok`): give either `url` or `host`, not both",
            ),
            (
                vec![row(&[ok, ("url", Some("oracle://u:pw@h/db"))])],
                "discover row 1 (id `ok`) url: `oracle://u:***@h/db` has an unknown scheme",
            ),
            (
                vec![row(&[ok, ("tier", Some("a")), ("tier", Some("b"))])],
                "discover row 1: the query gives two columns named `tier`",
            ),
            (
                vec![row(&[ok, ("init_sql", Some("DROP TABLE x"))])],
                "discover row 1: a registry row cannot give `init_sql`",
            ),
            (
                vec![row(&[
                    ok,
                    ("url", Some("sqlite://x.db?journal_mode=wal;ATTACH 'y' AS y")),
                ])],
                "discover row 1 (id `ok`) url: `sqlite://x.db?journal_mode=wal;ATTACH 'y' AS y`: SQLite URL parameters are PRAGMAs",
            ),
            (
                vec![row(&[ok, ("url", Some("postgres://u:pw@h/db?options=-c%20role%3Dx"))])],
                "discover row 1 (id `ok`) url: URL parameter `options` is not one a registry row may give",
            ),
            (
                vec![row(&[ok, ("url", Some("postgres://u@h/db?sslmode=off"))])],
                "discover row 1 (id `ok`) url: URL parameter `sslmode` is `off`: expected one of disable, allow",
            ),
            (
                vec![row(&[ok, ("url", Some("postgres://u@h/db?password=hunter2"))])],
                "discover row 1 (id `ok`) url: URL parameter `password` is not one a registry row may give",
            ),
            (
                vec![row(&[ok, ("url", Some("postgres://u:hunter2@evil.example/db"))])],
                "discover row 1 (id `ok`) url: `postgres://u:***@evil.example/db` names server evil.example:5432, \
                 which no host in `hosts:` names",
            ),
            (
                vec![row(&[ok, ("url", Some("mysql://root@my:3307/x"))])],
                "names server my:3307, which no host",
            ),
            (
                vec![row(&[("id", Some("postgres://u:hunter2@h/db?password=hunter2"))])],
                "discover row 1 (id `postgres://u:***@h/db?password=***`): tenant id",
            ),
        ];
        for (rows, expected) in cases {
            let err = error(FLEET, rows);
            assert!(err.contains(expected), "`{err}` lacks `{expected}`");
            assert!(!err.contains("hunter2"), "{err}");
        }
    }

    #[test]
    fn no_rows_and_no_listed_tenants_is_an_empty_fleet() {
        let text = FLEET.replace("tenants:\n  - id: acme\n    labels: { tier: enterprise }\n", "");
        let fleet = merge(file(&text), Vec::new()).unwrap();
        assert!(fleet.tenants.is_empty());
    }

    #[test]
    fn booleans_in_every_engine_spelling() {
        for t in ["true", "t", "1", "TRUE", "yes"] {
            assert_eq!(parse_bool(t), Some(true), "{t}");
        }
        for f in ["false", "f", "0", "no"] {
            assert_eq!(parse_bool(f), Some(false), "{f}");
        }
        assert_eq!(parse_bool("2"), None);
    }
}
