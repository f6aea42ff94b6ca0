//! `fleetmig lint`: every rule fires on its fixture and not on the safe rewrite
//! (tests/fixtures/lint/<engine>/<rule-id>/{bad,good}.sql, with `before.sql` as the set's
//! earlier migration when the rule needs one); suppressions; the output formats; the
//! fleet's counts; and `plan` and `up`, which lint before anything runs.

use std::path::{Path, PathBuf};

use fleetmig::internal::lint::{Context, Source, lint_file};
use fleetmig::model::fleet::Engine;
use fleetmig::model::lint::{Finding, Rule};
use fleetmig::model::migration::Script;

const ENGINES: [(Engine, &str); 3] = [
    (Engine::Postgres, "postgres"),
    (Engine::MySql, "mysql"),
    (Engine::Sqlite, "sqlite"),
];

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/lint")
}

/// The findings of `file`, after `before` (the set's earlier migration), if any.
fn lint_fixture(engine: Engine, dir: &Path, file: &str) -> Vec<Finding> {
    let mut context = Context::default();
    let before = dir.join("before.sql");
    if before.exists() {
        let text = std::fs::read_to_string(&before).unwrap();
        let source = Source {
            path: &before,
            version: None,
            text: &text,
            transactional: true,
        };
        lint_file(engine, &source, &mut context);
    }
    let path = dir.join(file);
    let script = Script::new(std::fs::read_to_string(&path).unwrap());
    let source = Source {
        path: &path,
        version: None,
        text: &script.sql,
        transactional: script.transactional,
    };
    lint_file(engine, &source, &mut context)
}

/// Each rule, on each engine it applies to, has a `bad.sql` it fires on and a `good.sql`
/// (the safe pattern) it stays quiet on; no fixture folder names a rule or engine that
/// does not exist. A new rule without fixtures fails here.
#[test]
fn every_rule_fires_on_its_fixture_and_not_on_the_safe_rewrite() {
    let mut problems = Vec::new();
    for rule in Rule::ALL {
        for (engine, name) in ENGINES.into_iter().filter(|(e, _)| rule.applies_to(*e)) {
            let dir = fixtures().join(name).join(rule.id());
            if !dir.join("bad.sql").exists() || !dir.join("good.sql").exists() {
                problems.push(format!("{name}/{}: no bad.sql and good.sql", rule.id()));
                continue;
            }
            let bad = lint_fixture(engine, &dir, "bad.sql");
            if !bad.iter().any(|f| f.rule == rule && f.is_live()) {
                problems.push(format!("{name}/{}/bad.sql: not found; found {bad:#?}", rule.id()));
            }
            let good = lint_fixture(engine, &dir, "good.sql");
            if let Some(f) = good.iter().find(|f| f.rule == rule && f.is_live()) {
                problems.push(format!("{name}/{}/good.sql: found {f:#?}", rule.id()));
            }
        }
    }
    for (engine, name) in ENGINES {
        for entry in std::fs::read_dir(fixtures().join(name)).unwrap() {
            let id = entry.unwrap().file_name().to_string_lossy().into_owned();
            if !Rule::from_id(&id).is_some_and(|r| r.applies_to(engine)) {
                problems.push(format!("{name}/{id}: no such rule for {name}"));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
