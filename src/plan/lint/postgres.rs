//! PostgreSQL through squawk: its parser gives the statements and the facts fleetmig's own
//! rules need; its linter's violations, for the rules fleetmig shares with it, are mapped
//! onto fleetmig's rule ids.

use squawk_linter::{Linter, Rule as Squawk};
use squawk_syntax::ast::{self, AstNode};
use squawk_syntax::{SourceFile, SyntaxNode};

use super::facts::{Fact, Hit, Stmt, normalise, normalise_type};
use crate::model::lint::Rule;

/// Squawk's rules fleetmig runs, and the fleetmig rule each one reports as.
const MAPPED: &[(Squawk, Rule)] = &[
    (Squawk::RequireConcurrentIndexCreation, Rule::IndexWithoutConcurrently),
    (Squawk::AddingRequiredField, Rule::NotNullColumnWithoutDefault),
    (Squawk::ChangingColumnType, Rule::ColumnTypeRewrite),
    (Squawk::AddingNotNullableField, Rule::SetNotNullWithoutCheck),
    (Squawk::ConstraintMissingNotValid, Rule::ConstraintWithoutNotValid),
    (Squawk::AddingForeignKeyConstraint, Rule::ConstraintWithoutNotValid),
    (Squawk::RenamingColumn, Rule::RenameColumn),
    (Squawk::RenamingTable, Rule::RenameTable),
    (Squawk::BanDropColumn, Rule::DropColumn),
    (Squawk::BanDropTable, Rule::DropTable),
];

/// A file's statements with their facts, and squawk's violations as fleetmig hits.
pub fn read(text: &str, transactional: bool) -> (Vec<Stmt>, Vec<Hit>) {
    let parse = SourceFile::parse(text);
    let mut stmts: Vec<Stmt> = parse.tree().stmts().map(|s| statement(&s)).collect();
    let mut hits = Vec::new();
    for error in parse.errors() {
        let at = usize::from(error.range().start()).min(text.len());
        // One unreadable spot per statement is enough to say it was not checked.
        if hits.iter().any(|h: &Hit| same_stmt(&stmts, h.at, at)) {
            continue;
        }
        hits.push(Hit {
            rule: Rule::UnparsedStatement,
            at,
            message: format!("PostgreSQL parser: {}", error.message()),
        });
    }
    let mut linter = Linter::from(MAPPED.iter().map(|(s, _)| *s));
    linter.settings.assume_in_transaction = transactional;
    for v in linter.lint(&parse, text) {
        let Some((_, rule)) = MAPPED.iter().find(|(s, _)| *s == v.code) else {
            continue;
        };
        let at = usize::from(v.text_range.start());
        // Two squawk rules (constraint and foreign key) may say the same of one statement.
        if hits.iter().any(|h| h.rule == *rule && same_stmt(&stmts, h.at, at)) {
            continue;
        }
        let message = v.message.trim_end().trim_end_matches('.');
        let message = match &v.help {
            Some(help) => format!("{message}. {help}"),
            None => format!("{message}."),
        };
        hits.push(Hit {
            rule: *rule,
            at,
            message,
        });
    }
    hits.extend(missing_lock_timeout(&parse.tree()));
    stmts.sort_by_key(|s| s.start);
    (stmts, hits)
}

/// The first statement that takes an ACCESS EXCLUSIVE lock before any `SET lock_timeout`.
/// Squawk's own rule stops at the first slow statement whatever its lock; here each slow
/// statement is put to it alone, and only an ACCESS EXCLUSIVE one counts.
fn missing_lock_timeout(file: &SourceFile) -> Option<Hit> {
    for stmt in file.stmts() {
        if let ast::Stmt::Set(set) = &stmt {
            let written = set.syntax().text().to_string().to_lowercase();
            let words: Vec<&str> = written.split_whitespace().collect();
            if words.iter().take(3).any(|w| w.starts_with("lock_timeout")) {
                return None;
            }
            continue;
        }
        if !squawk_linter::analyze::possibly_slow_stmt(&stmt) {
            continue;
        }
        let text = stmt.syntax().text().to_string();
        let mut linter = Linter::from([Squawk::RequireLockTimeout]);
        let alone = linter.lint(&SourceFile::parse(&text), &text);
        if alone.iter().any(|v| v.message.contains("ACCESS EXCLUSIVE")) {
            return Some(Hit {
                rule: Rule::MissingLockTimeout,
                at: statement(&stmt).start,
                message: "takes an ACCESS EXCLUSIVE lock with no `SET lock_timeout` before it in this migration".into(),
            });
        }
    }
    None
}

fn same_stmt(stmts: &[Stmt], a: usize, b: usize) -> bool {
    let of = |at: usize| stmts.iter().position(|s| at < s.end);
    of(a) == of(b)
}

/// A statement's span (from its first token, not its leading comments) and facts.
fn statement(stmt: &ast::Stmt) -> Stmt {
    let node = stmt.syntax();
    let start = node
        .children_with_tokens()
        .find(|x| !x.kind().is_trivia())
        .map_or(node.text_range().start(), |x| x.text_range().start());
    Stmt {
        start: usize::from(start),
        end: usize::from(node.text_range().end()),
        facts: facts(stmt),
    }
}

fn text(node: &impl AstNode) -> String {
    normalise(&node.syntax().text().to_string())
}

fn facts(stmt: &ast::Stmt) -> Vec<Fact> {
    match stmt {
        ast::Stmt::CreateTable(t) => {
            let table = t.table_name().map(|n| text(&n)).unwrap_or_default();
            let types = column_types(t.syntax());
            vec![Fact::CreateTable { table, types }]
        }
        ast::Stmt::CreateType(t) => match (t.kind(), t.type_name()) {
            (Some(ast::CreateTypeKind::EnumType(_)), Some(name)) => vec![Fact::CreateEnum { name: text(&name) }],
            _ => vec![],
        },
        ast::Stmt::AlterTable(t) => {
            let table = t
                .table_relation_name()
                .map(|n| relation(n.syntax()))
                .unwrap_or_default();
            t.syntax()
                .descendants()
                .filter_map(ast::AddColumn::cast)
                .map(|c| Fact::AddColumn {
                    table: table.clone(),
                    ty: c.ty().map(|ty| normalise_type(&ty.syntax().text().to_string())),
                    not_null_without_default: false,
                })
                .collect()
        }
        ast::Stmt::DropTable(d) => vec![Fact::DropTables {
            tables: d.table_name_refs().map(|n| text(&n)).collect(),
        }],
        ast::Stmt::DropType(d) => vec![Fact::DropTypes {
            names: d.type_name_refs().map(|n| text(&n)).collect(),
        }],
        ast::Stmt::CreateIndex(i) => vec![Fact::CreateIndex {
            table: i
                .table_relation_name()
                .map(|n| relation(n.syntax()))
                .unwrap_or_default(),
            concurrently: i.concurrently_token().is_some(),
        }],
        ast::Stmt::DropIndex(d) if d.concurrently_token().is_some() => vec![Fact::DropIndexConcurrently],
        ast::Stmt::Update(u) => data_change(u.relation_name(), u.where_clause_or_current_of().is_none(), "UPDATE"),
        ast::Stmt::Delete(d) => data_change(d.relation_name(), d.where_clause_or_current_of().is_none(), "DELETE"),
        ast::Stmt::Insert(_) => vec![Fact::Data],
        _ => vec![],
    }
}

fn data_change(name: Option<ast::RelationName>, whole: bool, verb: &'static str) -> Vec<Fact> {
    match (name, whole) {
        (Some(name), true) => vec![
            Fact::Data,
            Fact::WholeTable {
                table: relation(name.syntax()),
                verb,
            },
        ],
        _ => vec![Fact::Data],
    }
}

/// A relation's name without `ONLY` and `*`.
fn relation(node: &SyntaxNode) -> String {
    let written = node.text().to_string();
    let name = written
        .split_whitespace()
        .filter(|w| !w.eq_ignore_ascii_case("only"))
        .collect::<Vec<_>>()
        .join(" ");
    normalise(name.trim_end_matches('*').trim())
}

/// The types of a CREATE TABLE's columns.
fn column_types(node: &SyntaxNode) -> Vec<String> {
    node.descendants()
        .filter_map(ast::Column::cast)
        .filter_map(|c| c.ty())
        .map(|ty| normalise_type(&ty.syntax().text().to_string()))
        .collect()
}
