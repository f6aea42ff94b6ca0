//! Linting a file, or a set's migrations in order: parse, run the rules against what the
//! earlier migrations left, place each hit (line, column, statement) and apply the file's
//! `allow` comments.

use std::path::Path;

use super::facts::{Hit, Stmt};
use super::{postgres, rules, sql, suppress};
use crate::model::fleet::Engine;
use crate::model::lint::{Finding, Rule};
use crate::model::migration::{MigrationSet, Version};

pub use super::rules::Context;

/// One file to lint.
#[derive(Debug, Clone, Copy)]
pub struct Source<'a> {
    pub path: &'a Path,
    /// The migration it is, when it is one.
    pub version: Option<Version>,
    /// The SQL (no byte-order mark).
    pub text: &'a str,
    /// False when the file is marked `-- fleetmig: no-transaction`.
    pub transactional: bool,
}

/// The lines of a statement an excerpt shows.
const EXCERPT_LINES: usize = 3;

/// Lints `source` against what the files before it left (`context`), then adds what it
/// leaves to `context`.
pub fn lint_file(engine: Engine, source: &Source<'_>, context: &mut Context) -> Vec<Finding> {
    let (stmts, mut hits) = read(engine, source);
    hits.extend(rules::own(engine, &stmts, context, source.transactional));
    hits.retain(|h| h.rule.applies_to(engine));
    let created_here = created_tables(&stmts);
    hits.retain(|h| !(h.rule == Rule::IndexWithoutConcurrently && indexes_new_table(&stmts, h.at, &created_here)));
    let (allows, bad) = suppress::allows(source.text);
    let mut findings: Vec<Finding> = hits
        .into_iter()
        .map(|hit| {
            let stmt = statement_at(&stmts, hit.at);
            let suppressed = stmt.and_then(|i| {
                allows
                    .iter()
                    .find(|a| a.rule == hit.rule && next_statement(&stmts, a.at) == Some(i))
                    .map(|a| a.reason.clone())
            });
            let excerpt = stmt.map_or_else(String::new, |i| excerpt(&source.text[stmts[i].start..stmts[i].end]));
            place(source, hit, excerpt, suppressed)
        })
        .collect();
    findings.extend(bad.into_iter().map(|hit| {
        let line = source.text[hit.at..]
            .lines()
            .next()
            .unwrap_or_default()
            .trim()
            .to_owned();
        place(source, hit, line, None)
    }));
    findings.sort_by_key(|f| (f.line, f.column, f.rule));
    findings.dedup_by(|a, b| a.line == b.line && a.column == b.column && a.rule == b.rule);
    context.absorb(&stmts);
    findings
}

/// Lints the up scripts of `set`'s migrations that `wanted` picks, each against the whole
/// set before it.
pub fn lint_set(engine: Engine, set: &MigrationSet, wanted: impl Fn(Version) -> bool) -> Vec<Finding> {
    let mut context = Context::default();
    let mut out = Vec::new();
    for m in set.iter() {
        let source = Source {
            path: &m.path,
            version: Some(m.version),
            text: &m.up.sql,
            transactional: m.up.transactional,
        };
        if wanted(m.version) {
            out.extend(lint_file(engine, &source, &mut context));
        } else {
            context.absorb(&read(engine, &source).0);
        }
    }
    out
}

fn read(engine: Engine, source: &Source<'_>) -> (Vec<Stmt>, Vec<Hit>) {
    match engine {
        Engine::Postgres => postgres::read(source.text, source.transactional),
        _ => (sql::read(engine, source.text), Vec::new()),
    }
}

fn created_tables(stmts: &[Stmt]) -> Vec<String> {
    stmts
        .iter()
        .flat_map(|s| &s.facts)
        .filter_map(|f| match f {
            super::facts::Fact::CreateTable { table, .. } => Some(table.clone()),
            _ => None,
        })
        .collect()
}

/// Whether the statement at `at` indexes a table the same file creates (it is empty, so
/// a plain CREATE INDEX is fine).
fn indexes_new_table(stmts: &[Stmt], at: usize, created: &[String]) -> bool {
    let Some(i) = statement_at(stmts, at) else { return false };
    stmts[i].facts.iter().any(|f| match f {
        super::facts::Fact::CreateIndex { table, .. } => created.contains(table),
        _ => false,
    })
}

/// The statement that holds byte `at`, else the next one.
fn statement_at(stmts: &[Stmt], at: usize) -> Option<usize> {
    stmts
        .iter()
        .position(|s| s.start <= at && at < s.end)
        .or_else(|| next_statement(stmts, at))
}

/// The first statement that starts after byte `at`.
fn next_statement(stmts: &[Stmt], at: usize) -> Option<usize> {
    stmts.iter().position(|s| s.start > at)
}

/// A statement's first lines, trimmed, with `…` when there is more.
fn excerpt(text: &str) -> String {
    let text = text.trim();
    let lines: Vec<&str> = text.lines().collect();
    let mut out = lines[..lines.len().min(EXCERPT_LINES)].join("\n");
    if lines.len() > EXCERPT_LINES {
        out.push_str("\n…");
    }
    out
}

fn place(source: &Source<'_>, hit: Hit, statement: String, suppressed: Option<String>) -> Finding {
    let before = &source.text[..hit.at.min(source.text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().unwrap_or_default().chars().count() + 1;
    Finding {
        rule: hit.rule,
        file: source.path.to_path_buf(),
        version: source.version,
        line,
        column,
        message: hit.message,
        statement,
        suppressed,
    }
}
