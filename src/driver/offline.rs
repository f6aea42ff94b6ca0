//! The offline script (`fleetmig sql`): what `up` or `down` would send, history writes
//! included, for a DBA to run by hand. No connection is made.

use std::fmt::Write;

use crate::driver::quote::{backtick, double};
use crate::driver::{mysql, postgres, sqlite};
use crate::model::fleet::{Engine, Ident};
use crate::model::migration::{Migration, MigrationSet, Version};
use crate::model::refusal::Refusal;

/// A string literal with its quotes doubled.
fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// The script that takes a tenant from `from` to `to` (down when `to < from`).
/// `namespace` is the schema (PostgreSQL) or database (MySQL) to create and use.
pub fn script(
    engine: Engine,
    set: &MigrationSet,
    from: Version,
    to: Version,
    namespace: Option<&Ident>,
) -> Result<String, Refusal> {
    let mut out = String::new();
    let direction = if to >= from { "up" } else { "down" };
    let _ = writeln!(
        out,
        "-- fleetmig offline script for {engine}: {direction} from {from} to {to}"
    );
    let _ = writeln!(
        out,
        "-- Run it as one session; it stops being correct if any statement fails.\n"
    );
    let table = "fleetmig_history";
    preamble(&mut out, engine, namespace);
    let transactional = |_: &Migration, sql_is_tx: bool| sql_is_tx && engine.has_transactional_ddl();
    if to >= from {
        for m in set.iter().filter(|m| m.version > from && m.version <= to) {
            let tx = transactional(m, m.up.transactional);
            let _ = writeln!(out, "-- {}", m.label());
            if tx {
                let _ = writeln!(out, "{};", begin(engine));
            }
            write_script(&mut out, &m.up.sql);
            let _ = writeln!(
                out,
                "INSERT INTO {table} (version, name, checksum, duration_ms, run_id, dirty) VALUES ({}, {}, {}, 0, 'offline', {});",
                literal(&m.version.text()),
                literal(&m.name),
                literal(&m.checksum.to_hex()),
                if engine == Engine::Sqlite { "0" } else { "FALSE" }
            );
            if tx {
                let _ = writeln!(out, "COMMIT;");
            }
            out.push('\n');
        }
    } else {
        for m in set.iter().rev().filter(|m| m.version > to && m.version <= from) {
            let down = m.down.as_ref().ok_or_else(|| m.irreversible())?;
            let tx = transactional(m, down.transactional);
            let _ = writeln!(out, "-- {} (down)", m.label());
            if tx {
                let _ = writeln!(out, "{};", begin(engine));
            }
            write_script(&mut out, &down.sql);
            let _ = writeln!(
                out,
                "DELETE FROM {table} WHERE version = {};",
                literal(&m.version.text())
            );
            if tx {
                let _ = writeln!(out, "COMMIT;");
            }
            out.push('\n');
        }
    }
    Ok(out)
}

/// The namespace to create and use, and the history table.
fn preamble(out: &mut String, engine: Engine, namespace: Option<&Ident>) {
    let columns = match engine {
        Engine::Postgres => postgres::HISTORY_COLUMNS,
        Engine::MySql => mysql::HISTORY_COLUMNS,
        Engine::Sqlite => sqlite::HISTORY_COLUMNS,
    };
    match (engine, namespace) {
        (Engine::Postgres, Some(schema)) => {
            let _ = writeln!(out, "CREATE SCHEMA IF NOT EXISTS {};", double(schema.as_str()));
            let _ = writeln!(out, "SET search_path TO {};", double(schema.as_str()));
        }
        (Engine::MySql, Some(db)) => {
            let _ = writeln!(out, "CREATE DATABASE IF NOT EXISTS {};", backtick(db.as_str()));
            let _ = writeln!(out, "USE {};", backtick(db.as_str()));
        }
        _ => {}
    }
    let _ = writeln!(out, "CREATE TABLE IF NOT EXISTS fleetmig_history ({columns});\n");
}

/// Writes a migration's script so that what follows is a statement of its own: a script
/// whose last line is not plainly terminated (no final `;`, or a last line that may be a
/// comment, such as `-- done` or `x; -- done`) gets a `;` on a line of its own. An empty
/// statement is harmless in psql, the mariadb client and the sqlite3 shell.
fn write_script(out: &mut String, sql: &str) {
    let sql = sql.trim_end();
    let last_line = sql.rsplit('\n').next().unwrap_or_default();
    let terminated = last_line.ends_with(';') && !last_line.contains("--") && !last_line.contains('#');
    let _ = writeln!(out, "{sql}");
    if !terminated {
        let _ = writeln!(out, ";");
    }
}

fn begin(engine: Engine) -> &'static str {
    match engine {
        Engine::Sqlite => "BEGIN IMMEDIATE",
        _ => "BEGIN",
    }
}
