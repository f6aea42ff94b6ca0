//! fleetmig's own rules, over the facts of a file's statements and what the set's earlier
//! migrations created. (PostgreSQL's rules shared with squawk are squawk's, in `postgres`.)

use std::collections::{BTreeMap, BTreeSet};

use super::facts::{Fact, Hit, Stmt};
use crate::model::fleet::Engine;
use crate::model::lint::Rule;

/// What the migrations before a file left: tables (with their columns' types) and enum
/// types.
#[derive(Debug, Clone, Default)]
pub struct Context {
    /// Table name → the types its columns use.
    tables: BTreeMap<String, BTreeSet<String>>,
    enums: BTreeSet<String>,
}

impl Context {
    /// Takes in a file's statements, in order, as if the migration had run.
    pub fn absorb(&mut self, stmts: &[Stmt]) {
        for fact in stmts.iter().flat_map(|s| &s.facts) {
            match fact {
                Fact::CreateTable { table, types } => {
                    self.tables.insert(table.clone(), types.iter().cloned().collect());
                }
                Fact::AddColumn {
                    table, ty: Some(ty), ..
                } => {
                    self.tables.entry(table.clone()).or_default().insert(ty.clone());
                }
                Fact::CreateEnum { name } => {
                    self.enums.insert(name.clone());
                }
                Fact::DropTables { tables } => tables.iter().for_each(|t| {
                    self.tables.remove(t);
                }),
                Fact::DropTypes { names } => names.iter().for_each(|n| {
                    self.enums.remove(n);
                }),
                Fact::RenameTable { from, to } => {
                    if let Some(types) = self.tables.remove(from) {
                        self.tables.insert(to.clone(), types);
                    }
                }
                _ => {}
            }
        }
    }
}

/// The hits of fleetmig's own rules in one file.
pub fn own(engine: Engine, stmts: &[Stmt], before: &Context, transactional: bool) -> Vec<Hit> {
    let mut hits = Vec::new();
    let created_here: BTreeSet<&str> = facts(stmts)
        .filter_map(|(_, f)| match f {
            Fact::CreateTable { table, .. } => Some(table.as_str()),
            _ => None,
        })
        .collect();
    let mut context = before.clone();
    for stmt in stmts {
        let hit = |rule: Rule, message: String| Hit {
            rule,
            at: stmt.start,
            message,
        };
        for fact in &stmt.facts {
            match fact {
                Fact::CreateIndex { concurrently: true, .. } | Fact::DropIndexConcurrently if transactional => {
                    hits.push(hit(
                        Rule::ConcurrentlyInTransaction,
                        "CONCURRENTLY in a migration that runs in a transaction: PostgreSQL refuses it, on every tenant".into(),
                    ))
                }
                Fact::DropTables { tables } if engine == Engine::Postgres => {
                    hits.extend(left_enums(stmts, &context, tables).map(|(table, ty)| {
                        hit(
                            Rule::DropTableLeavesEnum,
                            format!("dropping table {table} leaves its enum type {ty} behind"),
                        )
                    }))
                }
                Fact::WholeTable { table, verb }
                    if context.tables.contains_key(table) && !created_here.contains(table.as_str()) =>
                {
                    hits.push(hit(
                        Rule::UnbatchedDataChange,
                        format!("{verb} of every row of {table}, which an earlier migration created and may hold data"),
                    ))
                }
                Fact::Unparsed { why } => hits.push(hit(Rule::UnparsedStatement, format!("not checked: {why}"))),
                _ => {}
            }
        }
        context.absorb(std::slice::from_ref(stmt));
    }
    if engine != Engine::Postgres {
        hits.extend(portable(engine, stmts));
    }
    if engine == Engine::MySql {
        hits.extend(ddl_with_data(stmts));
    }
    hits
}

fn facts(stmts: &[Stmt]) -> impl Iterator<Item = (&Stmt, &Fact)> {
    stmts.iter().flat_map(|s| s.facts.iter().map(move |f| (s, f)))
}

/// The enum types `tables` use that the file does not drop.
fn left_enums<'a>(
    stmts: &'a [Stmt],
    context: &'a Context,
    tables: &'a [String],
) -> impl Iterator<Item = (&'a String, &'a String)> + 'a {
    let dropped: BTreeSet<&String> = facts(stmts)
        .filter_map(|(_, f)| match f {
            Fact::DropTypes { names } => Some(names),
            _ => None,
        })
        .flatten()
        .collect();
    tables.iter().flat_map(move |table| {
        let types = context.tables.get(table).into_iter().flatten();
        let dropped = dropped.clone();
        types
            .filter(move |ty| context.enums.contains(*ty) && !dropped.contains(ty))
            .map(move |ty| (table, ty))
    })
}

/// MySQL's and SQLite's hits of the rules PostgreSQL gets from squawk, and SQLite's table
/// rebuild (drop a table, rename another to its name), which is neither a drop nor a
/// rename to the application.
fn portable(engine: Engine, stmts: &[Stmt]) -> Vec<Hit> {
    let dropped: BTreeSet<&String> = facts(stmts)
        .filter_map(|(_, f)| match f {
            Fact::DropTables { tables } => Some(tables),
            _ => None,
        })
        .flatten()
        .collect();
    let rebuilt: BTreeSet<&String> = facts(stmts)
        .filter_map(|(_, f)| match f {
            Fact::RenameTable { to, .. } if engine == Engine::Sqlite && dropped.contains(to) => Some(to),
            _ => None,
        })
        .collect();
    let mut hits = Vec::new();
    for (i, stmt) in stmts.iter().enumerate() {
        let hit = |rule: Rule, message: String| Hit {
            rule,
            at: stmt.start,
            message,
        };
        for fact in &stmt.facts {
            match fact {
                Fact::AddColumn {
                    table,
                    not_null_without_default: true,
                    ..
                } => hits.push(hit(
                    Rule::NotNullColumnWithoutDefault,
                    format!("a NOT NULL column without a default added to {table}"),
                )),
                Fact::ChangeType { table } => hits.push(hit(
                    Rule::ColumnTypeRewrite,
                    format!("changing a column of {table} copies the whole table"),
                )),
                Fact::RenameColumn { table } => {
                    hits.push(hit(Rule::RenameColumn, format!("renames a column of {table}")))
                }
                Fact::DropColumn { table } => hits.push(hit(Rule::DropColumn, format!("drops a column of {table}"))),
                Fact::RenameTable { from, to } if rebuilt.contains(to) => {
                    let checked = stmts[i..].iter().any(|s| s.facts.contains(&Fact::FkCheck));
                    if !checked {
                        hits.push(hit(
                            Rule::SqliteRebuildWithoutFkCheck,
                            format!("table {to} rebuilt from {from} with no PRAGMA foreign_key_check after it"),
                        ));
                    }
                }
                Fact::RenameTable { from, to } => {
                    hits.push(hit(Rule::RenameTable, format!("renames table {from} to {to}")))
                }
                Fact::DropTables { tables } => {
                    for table in tables.iter().filter(|t| !rebuilt.contains(t)) {
                        hits.push(hit(Rule::DropTable, format!("drops table {table}")));
                    }
                }
                _ => {}
            }
        }
    }
    hits
}

/// MySQL: the first data change in a file that also changes the schema.
fn ddl_with_data(stmts: &[Stmt]) -> Option<Hit> {
    if !stmts.iter().any(|s| s.facts.contains(&Fact::Ddl)) {
        return None;
    }
    let data = stmts.iter().find(|s| s.facts.contains(&Fact::Data))?;
    Some(Hit {
        rule: Rule::MysqlDdlWithData,
        at: data.start,
        message: "a data change in a migration that also changes the schema: MySQL commits each DDL statement at once, so a failure leaves the tenant half applied".into(),
    })
}
