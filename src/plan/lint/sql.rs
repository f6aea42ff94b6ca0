//! MySQL and SQLite through sqlparser: the file split into statements at its `;` tokens
//! (so one statement sqlparser cannot read does not hide the others), each parsed alone
//! and turned into the facts the rules look at.

use sqlparser::ast::{
    AlterColumnOperation, AlterTableOperation, ColumnOption, FromTable, ObjectName, ObjectType, RenameTableNameKind,
    Statement, TableFactor, TableWithJoins,
};
use sqlparser::dialect::{Dialect, MySqlDialect, SQLiteDialect};
use sqlparser::parser::Parser;
use sqlparser::tokenizer::{Token, Tokenizer, TokenizerError};

use super::facts::{Fact, Stmt, normalise};
use crate::model::fleet::Engine;

/// How many `;`-separated pieces a statement may span (a trigger's body has its own).
const MAX_PIECES: usize = 64;

/// A MySQL or SQLite file's statements with their facts.
pub fn read(engine: Engine, text: &str) -> Vec<Stmt> {
    let dialect: Box<dyn Dialect> = match engine {
        Engine::MySql => Box::new(MySqlDialect {}),
        _ => Box::new(SQLiteDialect {}),
    };
    let pieces = match pieces(dialect.as_ref(), text) {
        Ok(pieces) => pieces,
        Err(e) => {
            return vec![Stmt {
                start: 0,
                end: text.len(),
                facts: vec![Fact::Unparsed { why: e.to_string() }],
            }];
        }
    };
    let mut out = Vec::new();
    let mut i = 0;
    while i < pieces.len() {
        let (start, _) = pieces[i];
        let mut parsed = None;
        for (j, &(_, end)) in pieces.iter().enumerate().skip(i).take(MAX_PIECES) {
            if let Ok(statements) = Parser::parse_sql(dialect.as_ref(), &text[start..end]) {
                parsed = Some((j, end, statements));
                break;
            }
        }
        match parsed {
            Some((j, end, statements)) => {
                let facts = statements.iter().flat_map(|s| facts(engine, s)).collect();
                out.push(Stmt { start, end, facts });
                i = j + 1;
            }
            None => {
                let end = pieces[i].1;
                let why = Parser::parse_sql(dialect.as_ref(), &text[start..end])
                    .err()
                    .map_or_else(|| "unreadable".to_owned(), |e| e.to_string());
                out.push(Stmt {
                    start,
                    end,
                    facts: vec![Fact::Unparsed { why }],
                });
                i += 1;
            }
        }
    }
    out
}

/// The byte spans of the `;`-separated pieces that hold a token other than white space
/// and comments: from that token to just past the `;` (or the end).
fn pieces(dialect: &dyn Dialect, text: &str) -> Result<Vec<(usize, usize)>, TokenizerError> {
    let tokens = Tokenizer::new(dialect, text).tokenize_with_location()?;
    let lines: Vec<usize> = std::iter::once(0)
        .chain(text.match_indices('\n').map(|(i, _)| i + 1))
        .collect();
    let offset = |line: u64, column: u64| -> usize {
        let Some(&from) = lines.get((line as usize).saturating_sub(1)) else {
            return text.len();
        };
        text[from..]
            .char_indices()
            .nth((column as usize).saturating_sub(1))
            .map_or(text.len(), |(i, _)| from + i)
    };
    let mut out = Vec::new();
    let mut start = None;
    for t in &tokens {
        match &t.token {
            Token::Whitespace(_) | Token::EOF => {}
            Token::SemiColon => {
                let end = offset(t.span.start.line, t.span.start.column) + 1;
                if let Some(s) = start.take() {
                    out.push((s, end));
                }
            }
            _ => {
                if start.is_none() {
                    start = Some(offset(t.span.start.line, t.span.start.column));
                }
            }
        }
    }
    if let Some(s) = start {
        out.push((s, text.len()));
    }
    Ok(out)
}

fn name(n: &ObjectName) -> String {
    normalise(&n.to_string())
}

fn table_of(t: &TableWithJoins) -> Option<String> {
    match &t.relation {
        TableFactor::Table { name: n, .. } => Some(name(n)),
        _ => None,
    }
}

fn facts(engine: Engine, s: &Statement) -> Vec<Fact> {
    match s {
        Statement::CreateTable(t) => vec![
            Fact::Ddl,
            Fact::CreateTable {
                table: name(&t.name),
                types: vec![],
            },
        ],
        Statement::AlterTable(a) => {
            let table = name(&a.name);
            let mut out = vec![Fact::Ddl];
            out.extend(a.operations.iter().filter_map(|op| alter(engine, &table, op)));
            out
        }
        Statement::Drop {
            object_type: ObjectType::Table,
            names,
            ..
        } => vec![
            Fact::Ddl,
            Fact::DropTables {
                tables: names.iter().map(name).collect(),
            },
        ],
        Statement::RenameTable(renames) => {
            let mut out = vec![Fact::Ddl];
            out.extend(renames.iter().map(|r| Fact::RenameTable {
                from: name(&r.old_name),
                to: name(&r.new_name),
            }));
            out
        }
        Statement::Update(u) => {
            let mut out = vec![Fact::Data];
            if let (None, Some(table)) = (&u.selection, table_of(&u.table)) {
                out.push(Fact::WholeTable { table, verb: "UPDATE" });
            }
            out
        }
        Statement::Delete(d) => {
            let mut out = vec![Fact::Data];
            let from = match &d.from {
                FromTable::WithFromKeyword(t) | FromTable::WithoutKeyword(t) => t,
            };
            if let (None, Some(table)) = (&d.selection, from.first().and_then(table_of)) {
                out.push(Fact::WholeTable { table, verb: "DELETE" });
            }
            out
        }
        Statement::Insert(_) => vec![Fact::Data],
        Statement::Pragma { name: n, .. } if name(n) == "foreign_key_check" => vec![Fact::FkCheck],
        Statement::CreateIndex(_)
        | Statement::Drop { .. }
        | Statement::CreateView(_)
        | Statement::CreateTrigger(_)
        | Statement::DropTrigger(_)
        | Statement::CreateFunction(_)
        | Statement::Truncate(_) => vec![Fact::Ddl],
        _ => vec![],
    }
}

fn alter(engine: Engine, table: &str, op: &AlterTableOperation) -> Option<Fact> {
    let table = table.to_owned();
    match op {
        AlterTableOperation::AddColumn { column_def, .. } => {
            let has = |f: fn(&ColumnOption) -> bool| column_def.options.iter().any(|o| f(&o.option));
            Some(Fact::AddColumn {
                table,
                ty: None,
                not_null_without_default: has(|o| matches!(o, ColumnOption::NotNull))
                    && !has(|o| matches!(o, ColumnOption::Default(_) | ColumnOption::Generated { .. })),
            })
        }
        AlterTableOperation::DropColumn { .. } => Some(Fact::DropColumn { table }),
        AlterTableOperation::RenameColumn { .. } => Some(Fact::RenameColumn { table }),
        AlterTableOperation::ChangeColumn { old_name, new_name, .. } if old_name != new_name => {
            Some(Fact::RenameColumn { table })
        }
        AlterTableOperation::RenameTable {
            table_name: RenameTableNameKind::As(to) | RenameTableNameKind::To(to),
        } => Some(Fact::RenameTable {
            from: table,
            to: name(to),
        }),
        AlterTableOperation::ModifyColumn { .. } | AlterTableOperation::ChangeColumn { .. }
            if engine == Engine::MySql =>
        {
            Some(Fact::ChangeType { table })
        }
        AlterTableOperation::AlterColumn {
            op: AlterColumnOperation::SetDataType { .. },
            ..
        } => Some(Fact::ChangeType { table }),
        _ => None,
    }
}
