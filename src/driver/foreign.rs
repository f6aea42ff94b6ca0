//! The SQL that reads another migration tool's history table, each column as text:
//! version, whether the row is good (not failed, not dirty), and Flyway's row type.

use crate::model::fleet::Engine;
use crate::model::foreign::Tool;

/// The query for `tool`'s table on `engine`; `schema`: the PostgreSQL schema it is in (a
/// `search_path` may name `public` after the tenant's, whose table is not the tenant's),
/// else the session's database is the tenant's.
pub fn query(tool: Tool, engine: Engine, schema: Option<&str>) -> String {
    let text = |expr: &str| match engine {
        Engine::MySql => format!("CAST({expr} AS CHAR)"),
        Engine::Postgres | Engine::Sqlite => format!("CAST({expr} AS TEXT)"),
    };
    let (ok, kind, filter) = match tool {
        Tool::Diesel | Tool::Dbmate | Tool::Alembic => ("1", "''".to_owned(), ""),
        Tool::Sqlx => ("CASE WHEN success THEN 1 ELSE 0 END", "''".to_owned(), ""),
        Tool::GolangMigrate => ("CASE WHEN dirty THEN 0 ELSE 1 END", "''".to_owned(), ""),
        // Repeatable migrations have no version; they are not adopted.
        Tool::Flyway => (
            "CASE WHEN success THEN 1 ELSE 0 END",
            text("type"),
            " WHERE version IS NOT NULL",
        ),
    };
    let table = match schema {
        Some(schema) => format!("{}.{}", crate::driver::quote::double(schema), tool.table()),
        None => tool.table().to_owned(),
    };
    // Alembic's column holds a revision id, read through the user's map in `plan::adopt`.
    let version = match tool {
        Tool::Alembic => "version_num",
        _ => "version",
    };
    format!("SELECT {}, {}, {kind} FROM {table}{filter}", text(version), text(ok))
}

/// Rows read by [`query`], from their three text columns.
pub fn rows(raw: Vec<[String; 3]>) -> Vec<crate::model::foreign::ForeignRow> {
    raw.into_iter()
        .map(|[version, ok, kind]| crate::model::foreign::ForeignRow {
            version: version.trim().to_owned(),
            ok: ok.trim() == "1",
            kind: kind.trim().to_owned(),
        })
        .collect()
}
