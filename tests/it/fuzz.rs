//! Property tests over hostile input, run with every `cargo test` at a fixed case count so
//! CI stays fast and deterministic in time: fleet files, migration file names and contents,
//! selectors, numbers and durations. The loaders never panic and every rejection carries a
//! message naming its subject; through the binary, every rejection is exit 2 with an
//! `error:` line and the tenants are untouched.

use std::path::Path;

use fleetmig::api::Selector;
use fleetmig::internal::fleet;
use fleetmig::internal::migrations;
use fleetmig::model::bounds;
use fleetmig::model::migration::Version;
use fleetmig::model::policy::WaveSpec;
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};

use crate::support::{Project, Run, sqlite_column};

/// Cases per in-process property: fast, so many.
const CASES: u32 = 256;
/// Cases per property that starts the binary: each costs a process.
const BINARY_CASES: u32 = 48;

/// A runner with a fixed seed, so a CI failure reproduces.
fn runner(cases: u32) -> TestRunner {
    TestRunner::new_with_rng(
        Config {
            cases,
            failure_persistence: None,
            ..Config::default()
        },
        TestRng::from_seed(RngAlgorithm::ChaCha, &[7; 32]),
    )
}

/// Text for a YAML value: well-formed and malformed scalars, lists, maps, numbers past
/// every range, durations, quotes, NUL, tabs, anchors, tags.
fn yaml_value() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        Just("a".to_owned()),
        Just("~".to_owned()),
        Just("0".to_owned()),
        Just("-1".to_owned()),
        Just("4294967295".to_owned()),
        Just("99999999999999999999999".to_owned()),
        Just("1.5".to_owned()),
        Just("true".to_owned()),
        Just("yes".to_owned()),
        Just("\"\\0\"".to_owned()),
        Just("500us".to_owned()),
        Just("99999999999999h".to_owned()),
        Just("\"5,2\"".to_owned()),
        Just("\"1,10%,100%\"".to_owned()),
        Just("sqlite://data/x.db".to_owned()),
        Just("\"sqlite://data/x.db?journal_mode=wal;DROP TABLE t\"".to_owned()),
        Just("\"postgres://u:pw@127.0.0.1:1/x?password=pw\"".to_owned()),
        Just("\"oracle://h/x\"".to_owned()),
        Just("\"${FM_FUZZ_UNSET}\"".to_owned()),
        Just("*nope".to_owned()),
        Just("&a x".to_owned()),
        Just("!!binary aGk=".to_owned()),
        Just("'unterminated".to_owned()),
        "[a-z0-9%,.:/ -]{0,12}",
        any::<String>().prop_map(|s| format!("{s:?}")),
    ];
    leaf.prop_recursive(2, 8, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(|v| format!("[{}]", v.join(", "))),
            prop::collection::vec((key(), inner), 0..4).prop_map(|kv| {
                let body: Vec<String> = kv.into_iter().map(|(k, v)| format!("{k}: {v}")).collect();
                format!("{{{}}}", body.join(", "))
            }),
        ]
    })
}

/// A key: mostly the fleet file's own, sometimes a near miss.
fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("hosts"),
        Just("defaults"),
        Just("rollout"),
        Just("ledger"),
        Just("tenants"),
        Just("discover"),
        Just("id"),
        Just("url"),
        Just("host"),
        Just("schema"),
        Just("database"),
        Just("labels"),
        Just("canary"),
        Just("init_sql"),
        Just("search_path"),
        Just("create_database"),
        Just("max_connections"),
        Just("waves"),
        Just("bake"),
        Just("check"),
        Just("max_failures"),
        Just("rollback"),
        Just("query"),
        Just("sceham"),
    ]
    .prop_map(str::to_owned)
}

/// A fleet file: a valid one with a fragment spliced in, or a structure of known keys and
/// hostile values, with an optional byte-order mark, document marker or stray bytes.
fn fleet_text() -> impl Strategy<Value = String> {
    let good = "tenants:\n  - {id: a, url: \"sqlite://data/{id}.db\"}\n";
    let structured = prop::collection::vec((key(), yaml_value()), 0..5)
        .prop_map(|kv| kv.into_iter().map(|(k, v)| format!("{k}: {v}\n")).collect::<String>());
    let tenant = (yaml_value(), yaml_value(), key(), yaml_value())
        .prop_map(|(id, url, k, v)| format!("tenants:\n  - {{id: {id}, url: {url}, {k}: {v}}}\n"));
    let prefix = prop_oneof![
        Just(""),
        Just("\u{feff}"),
        Just("---\n"),
        Just("\t"),
        Just("%YAML 1.2\n---\n")
    ];
    let suffix = prop_oneof![Just(""), Just("---\ntenants: []\n"), Just("\0"), Just("...\n")];
    (
        prefix,
        prop_oneof![
            structured.prop_map(move |s| format!("{good}{s}")),
            tenant,
            any::<String>(),
        ],
        suffix,
    )
        .prop_map(|(p, body, s)| format!("{p}{body}{s}"))
}

/// A migration file name: right, nearly right or wrong.
fn migration_name() -> impl Strategy<Value = String> {
    (
        prop_oneof![
            Just("0002".to_owned()),
            Just("002".to_owned()),
            Just("0".to_owned()),
            Just("9223372036854775808".to_owned()),
            "[0-9]{0,21}",
        ],
        prop_oneof![Just("_"), Just("-"), Just("")],
        "[a-zA-Z0-9_ -]{0,6}",
        prop_oneof![
            Just(".up.sql"),
            Just(".down.sql"),
            Just(".up.SQL"),
            Just(".UP.sql"),
            Just(".up.sq-"),
            Just(".sql"),
            Just(".up.sql "),
            Just(".up.sql~"),
            Just(".md"),
        ],
    )
        .prop_map(|(v, sep, name, suffix)| format!("{v}{sep}{name}{suffix}"))
}

/// Migration text: SQL, or arbitrary bytes (NUL and invalid UTF-8 included).
fn migration_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(b"CREATE TABLE t2 (x INT);\n".to_vec()),
        Just(b"CREATE TABLE t2 (x INT)\n-- no final semicolon".to_vec()),
        prop::collection::vec(any::<u8>(), 0..64),
    ]
}

/// Ends in a panic if `message` does not look like a rejection someone can act on.
fn assert_message(what: &str, message: &str) {
    assert!(!message.trim().is_empty(), "{what}: empty message");
    for bad in ["untagged enum", "FileDoc", "TenantDoc", "HostDoc", "panicked"] {
        assert!(!message.contains(bad), "{what}: `{message}` says `{bad}`");
    }
}

#[test]
fn fleet_files_load_or_are_refused_naming_the_file() {
    let path = Path::new("/fleet/tenants.yaml");
    runner(CASES)
        .run(&fleet_text(), |text| {
            if let Err(e) = fleet::parse(path, &text, &|_| None) {
                let message = fleetmig::error::render(&e);
                assert_message(&format!("{text:?}"), &message);
                prop_assert!(message.contains("/fleet/tenants.yaml"), "{text:?}: {message}");
                prop_assert!(!message.contains("pw@"), "{text:?}: {message}");
            }
            Ok(())
        })
        .unwrap();
}

#[test]
fn migration_folders_load_or_are_refused_naming_the_file() {
    runner(CASES)
        .run(
            &prop::collection::vec((migration_name(), migration_bytes()), 0..4),
            |files| {
                let dir = tempfile::tempdir().unwrap();
                std::fs::write(dir.path().join("0001_one.up.sql"), "CREATE TABLE t1 (x INT);").unwrap();
                for (name, bytes) in &files {
                    if !name.contains('/') {
                        std::fs::write(dir.path().join(name), bytes).unwrap();
                    }
                }
                match migrations::load(dir.path()) {
                    Ok(set) => {
                        for m in set.iter() {
                            prop_assert!(m.version > Version::ZERO);
                            prop_assert!(!m.up.sql.contains('\0'));
                        }
                    }
                    Err(e) => {
                        let message = fleetmig::error::render(&e);
                        assert_message(&format!("{files:?}"), &message);
                        prop_assert!(
                            message.contains(".sql") || message.contains(".up.") || message.contains(".down."),
                            "{files:?}: {message}"
                        );
                    }
                }
                Ok(())
            },
        )
        .unwrap();
}

#[test]
fn selectors_waves_numbers_and_durations_parse_or_say_why() {
    let text = prop_oneof![
        any::<String>(),
        "[a-z0-9=!*,%.: -]{0,16}",
        "[0-9]{1,25}(ns|us|ms|s|m|h|d|days)?",
    ];
    runner(CASES * 4)
        .run(&text, |text| {
            if let Err(m) = text.parse::<Selector>() {
                assert_message(&text, &m.to_string());
            }
            if let Err(m) = text.parse::<WaveSpec>() {
                assert_message(&text, &m.to_string());
            }
            match bounds::duration(&text, bounds::MS, bounds::HOUR) {
                Ok(d) => prop_assert!(d >= bounds::MS && d <= bounds::HOUR && d.subsec_nanos() % 1_000_000 == 0),
                Err(m) => assert_message(&text, &m.to_string()),
            }
            match bounds::number(&text, 1u32, 1000) {
                Ok(n) => prop_assert!((1..=1000).contains(&n)),
                Err(m) => assert_message(&text, &m.to_string()),
            }
            Ok(())
        })
        .unwrap();
}

/// A project whose SQLite tenant `a` is at version 1, and what it looked like then.
fn project_at_v1() -> Project {
    let p = Project::new();
    p.fleet("tenants:\n  - {id: a, url: \"sqlite://data/{id}.db\"}\n")
        .migration("0001_one.up.sql", "CREATE TABLE t1 (x INT);\n");
    let up = p.run(&["up"]);
    assert_eq!(up.code, 0, "{up:?}");
    p
}

fn untouched(p: &Project) -> bool {
    let files: Vec<String> = std::fs::read_dir(p.path().join("data"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|f| !f.ends_with("-journal") && !f.ends_with("-wal") && !f.ends_with("-shm"))
        .collect();
    files == ["a.db"]
        && sqlite_column(
            &p.db_path("a"),
            "SELECT CAST(version AS TEXT) FROM fleetmig_history ORDER BY version",
        ) == ["1"]
}

/// Exit 2 with an `error:` message and nothing touched, or a run that went ahead.
fn check_run(what: &str, p: &Project, run: &Run) -> Result<(), TestCaseError> {
    prop_assert!(!run.stderr.contains("panicked"), "{what}: {run:?}");
    prop_assert!([0, 1, 2].contains(&run.code), "{what}: {run:?}");
    if run.code == 2 {
        prop_assert!(run.stderr.starts_with("error:"), "{what}: {run:?}");
        assert_message(what, &run.stderr);
        prop_assert!(untouched(p), "{what}: refused, yet a tenant changed: {run:?}");
    }
    Ok(())
}

#[test]
fn the_binary_refuses_bad_fleet_files_with_exit_2_and_touches_nothing() {
    let p = project_at_v1();
    p.migration("0002_two.up.sql", "CREATE TABLE t2 (x INT);\n");
    runner(BINARY_CASES)
        .run(&fleet_text(), |text| {
            std::fs::write(p.path().join("tenants.yaml"), &text).unwrap();
            let run = p.run(&["up", "--connect-timeout", "1s"]);
            if run.code == 2 {
                prop_assert!(run.stderr.contains("tenants.yaml"), "{text:?}: {run:?}");
            }
            check_run(&format!("{text:?}"), &p, &run)?;
            if run.code != 2 {
                // It went ahead: start the next case from version 1 again.
                std::fs::remove_dir_all(p.path().join("data")).unwrap();
                p.fleet("tenants:\n  - {id: a, url: \"sqlite://data/{id}.db\"}\n");
                p.remove_migration("0002_two.up.sql");
                assert_eq!(p.run(&["up"]).code, 0);
                p.migration("0002_two.up.sql", "CREATE TABLE t2 (x INT);\n");
            }
            Ok(())
        })
        .unwrap();
}

#[test]
fn the_binary_refuses_bad_migrations_flags_and_selectors_with_exit_2_and_touches_nothing() {
    let p = project_at_v1();
    let flag = prop_oneof![
        Just("--select"),
        Just("--lock-timeout"),
        Just("--connect-timeout"),
        Just("--bake"),
        Just("-j"),
        Just("--retries"),
        Just("--waves"),
        Just("--max-failures"),
        Just("--rate"),
        Just("--to"),
    ];
    let value = prop_oneof![
        "[a-z0-9=!*,%.: -]{1,12}",
        "[0-9]{1,25}(us|ms|s|h|days|%)?",
        any::<String>().prop_filter("no NUL in arguments", |s| !s.contains('\0') && !s.is_empty()),
    ];
    let case = (
        prop::option::of(
            (migration_name(), migration_bytes()).prop_filter("keeps 0001", |(n, _)| n != "0001_one.up.sql"),
        ),
        flag,
        value.prop_filter("not a flag", |v| !v.starts_with('-')),
    );
    runner(BINARY_CASES)
        .run(&case, |(file, flag, value)| {
            if let Some((name, bytes)) = &file {
                std::fs::write(p.path().join("migrations").join(name), bytes).unwrap();
            }
            let what = format!("{file:?} {flag} {value:?}");
            let run = p.run(&["up", "--connect-timeout", "1s", flag, &value]);
            check_run(&what, &p, &run)?;
            let leftover = run.code != 2;
            if let Some((name, _)) = &file {
                p.remove_migration(name);
            }
            if leftover {
                std::fs::remove_dir_all(p.path().join("data")).unwrap();
                assert_eq!(p.run(&["up", "--to", "1"]).code, 0);
            }
            Ok(())
        })
        .unwrap();
}

#[test]
fn credentials_in_urls_never_survive_scrubbing_or_redaction() {
    use fleetmig::model::secret::{DbUrl, redact, scrub};
    let case = (
        prop_oneof![
            Just("password"),
            Just("sslpassword"),
            Just("PWD"),
            Just("token"),
            Just("Password")
        ],
        "Pw[A-Za-z0-9]{6,12}",
        prop_oneof![Just("postgres"), Just("mysql"), Just("postgresql")],
        "[a-z=&]{0,8}",
        any::<bool>(),
        "[ `'\"(]{0,2}",
    );
    runner(CASES)
        .run(&case, |(key, secret, scheme, extra, userinfo, around)| {
            let url = if userinfo {
                format!("{scheme}://u:{secret}@h:5432/db?{extra}")
            } else {
                format!("{scheme}://u@h:5432/db?{extra}&{key}={secret}&sslmode=require")
            };
            let text = format!("error with{around}{url}{around}: refused");
            prop_assert!(!scrub(&text).contains(&secret), "{text} -> {}", scrub(&text));
            if let Ok(parsed) = url::Url::parse(&url) {
                prop_assert!(!redact(&parsed).contains(&secret), "{url} -> {}", redact(&parsed));
                let db = DbUrl::new(parsed);
                let debug = format!("{db:?}");
                prop_assert!(!db.to_string().contains(&secret), "{url}");
                prop_assert!(!debug.contains(&secret), "{url}");
            }
            Ok(())
        })
        .unwrap();
}

/// A registry row's value for a column: a URL with known, unknown and hostile parameters,
/// an id or flag, or anything.
fn registry_value() -> impl Strategy<Value = Option<String>> {
    let url = (
        prop_oneof![
            Just("sqlite://data/x.db"),
            Just("sqlite:///abs/x.db"),
            Just("postgres://u:pw@127.0.0.1:5432/db"),
            Just("mysql://u@127.0.0.1:3306/"),
            Just("oracle://h/x"),
        ],
        prop::collection::vec(
            (
                prop_oneof![
                    Just("journal_mode"),
                    Just("synchronous"),
                    Just("sslmode"),
                    Just("ssl-mode"),
                    Just("application_name"),
                    Just("options"),
                    Just("password"),
                    Just("mode"),
                    Just("foreign_keys"),
                    Just("init_command"),
                ],
                prop_oneof![
                    Just("wal".to_owned()),
                    Just("off".to_owned()),
                    Just("disable".to_owned()),
                    Just("required".to_owned()),
                    Just("x;ATTACH 'y' AS y".to_owned()),
                    Just("-c%20search_path%3Dx".to_owned()),
                    "[a-zA-Z0-9;'%=&_-]{0,8}",
                ],
            ),
            0..3,
        ),
    )
        .prop_map(|(base, params)| {
            let query: Vec<String> = params.into_iter().map(|(k, v)| format!("{k}={v}")).collect();
            if query.is_empty() {
                base.to_owned()
            } else {
                format!("{base}?{}", query.join("&"))
            }
        });
    prop::option::of(prop_oneof![
        url,
        Just("a".to_owned()),
        Just("true".to_owned()),
        Just("s_1".to_owned()),
        any::<String>(),
    ])
}

#[test]
fn registry_rows_become_tenants_with_allowed_url_parameters_or_are_refused_naming_the_row() {
    use fleetmig::internal::discover;
    let path = Path::new("/fleet/tenants.yaml");
    let text = "hosts:\n  main: {url: \"postgres://u@127.0.0.1:5432/db\"}\n\
                discover: {url: \"sqlite://registry.db\", query: \"SELECT 1\"}\n";
    let column = prop_oneof![
        Just("id"),
        Just("url"),
        Just("host"),
        Just("schema"),
        Just("database"),
        Just("canary"),
        Just("init_sql"),
        Just("tier"),
    ];
    let rows = prop::collection::vec(prop::collection::vec((column, registry_value()), 0..5), 0..4);
    runner(CASES)
        .run(&rows, |rows| {
            let rows: Vec<fleetmig::model::fleet::RegistryRow> = rows
                .into_iter()
                .map(|row| row.into_iter().map(|(c, v)| (c.to_owned(), v)).collect())
                .collect();
            let file = fleet::parse_file(path, text, &|_| None).unwrap();
            match discover::merge(file, rows.clone()) {
                Ok(fleet) => {
                    for tenant in &fleet.tenants {
                        let allowed = tenant.engine.registry_params();
                        for (key, value) in tenant.url.url().query_pairs() {
                            let known = allowed.iter().find(|(k, _)| *k == key);
                            prop_assert!(known.is_some(), "{rows:?}: `{key}` reached a tenant");
                            prop_assert!(
                                !value.contains([';', '\'', ' ']),
                                "{rows:?}: `{key}={value}` reached a tenant"
                            );
                        }
                        prop_assert!(tenant.init_sql.is_empty(), "{rows:?}: a row gave init_sql");
                    }
                }
                Err(e) => {
                    let message = fleetmig::error::render(&e);
                    assert_message(&format!("{rows:?}"), &message);
                    prop_assert!(message.contains("discover row"), "{rows:?}: {message}");
                    prop_assert!(!message.contains(":pw@"), "{rows:?}: {message}");
                }
            }
            Ok(())
        })
        .unwrap();
}
