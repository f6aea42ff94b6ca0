//! The SQL of `fleetmig_repeatables`, where a tenant records the repeatable migrations
//! (Flyway's `R__`) it ran: by name, with the checksum it ran, so a changed file runs again.

use crate::model::fleet::Engine;
use crate::model::migration::Repeatable;

/// The table, in the PostgreSQL `schema` when a schema tenant's, else the session's.
fn table(schema: Option<&str>) -> String {
    match schema {
        Some(schema) => format!("{}.fleetmig_repeatables", crate::driver::quote::double(schema)),
        None => "fleetmig_repeatables".to_owned(),
    }
}

/// Creates the table when it is missing.
pub fn create(engine: Engine, schema: Option<&str>) -> String {
    let columns = match engine {
        Engine::MySql => {
            "name VARCHAR(255) NOT NULL PRIMARY KEY, checksum CHAR(64) NOT NULL, \
             applied_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3), duration_ms BIGINT NOT NULL, \
             run_id VARCHAR(64) NOT NULL"
        }
        Engine::Postgres => {
            "name TEXT PRIMARY KEY, checksum TEXT NOT NULL, applied_at TIMESTAMPTZ NOT NULL DEFAULT now(), \
             duration_ms BIGINT NOT NULL, run_id TEXT NOT NULL"
        }
        Engine::Sqlite => {
            "name TEXT NOT NULL PRIMARY KEY, checksum TEXT NOT NULL, \
             applied_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')), duration_ms INTEGER NOT NULL, \
             run_id TEXT NOT NULL"
        }
    };
    format!("CREATE TABLE IF NOT EXISTS {} ({columns})", table(schema))
}

/// Name, checksum and run of every recorded repeatable migration, as text.
pub fn select(engine: Engine, schema: Option<&str>) -> String {
    let text = |c: &str| match engine {
        Engine::MySql => format!("CAST({c} AS CHAR)"),
        Engine::Postgres | Engine::Sqlite => format!("CAST({c} AS TEXT)"),
    };
    format!(
        "SELECT {}, {}, {} FROM {}",
        text("name"),
        text("checksum"),
        text("run_id"),
        table(schema)
    )
}

/// Records that `r` ran (its checksum now), replacing its earlier row. The name and
/// checksum are checked when the set loads (letters, digits, `_-. `; hex): no quote can
/// be in them, and the run id is fleetmig's own.
pub fn record(schema: Option<&str>, r: &Repeatable, duration_ms: i64, run_id: &str) -> String {
    let table = table(schema);
    let name = r.name.replace('\'', "''");
    let run_id = run_id.replace('\'', "''");
    format!(
        "DELETE FROM {table} WHERE name = '{name}'; \
         INSERT INTO {table} (name, checksum, duration_ms, run_id) VALUES ('{name}', '{}', {duration_ms}, '{run_id}')",
        r.checksum.to_hex()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_schema_tenants_table_is_qualified_and_quotes_are_doubled() {
        let r = Repeatable::new("it's".into(), "SELECT 1".into(), "R__x.sql".into());
        let sql = record(Some("t\"1"), &r, 5, "run");
        assert!(sql.contains("\"t\"\"1\".fleetmig_repeatables"), "{sql}");
        assert!(sql.contains("'it''s'"), "{sql}");
        assert!(create(Engine::Sqlite, None).starts_with("CREATE TABLE IF NOT EXISTS fleetmig_repeatables"));
    }
}
