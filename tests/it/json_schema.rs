//! The JSON Lines events against their documented schema, `docs/events.schema.json`: every
//! line of real runs (waves with gates, a drifted tenant, a failure rolled back, a stop, a
//! retry, a `down`, an unanswered `--confirm`, an interrupt between a tenant's steps, a
//! wait for a change window) must
//! fit its event's definition, which allows no undocumented field, and every event kind the
//! schema documents must come up in one of these runs, with every `status` of
//! `tenant_finished` and every `gate` of `gate_started` and `gate_finished`, so a new event
//! kind or variant cannot go untested.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde_json::Value;

use crate::support::{Pg, Project, Proxy, ProxyMode, Spawned, end_session, psql_session, wait_until};

fn schema() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/events.schema.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The fields whose every value (their enum in the schema) some real run must emit: seen
/// as `kind:value`, beside the kind itself.
const VARIANTS: [(&str, &str); 3] = [
    ("tenant_finished", "status"),
    ("gate_started", "gate"),
    ("gate_finished", "gate"),
];

/// One validator per event kind (the definitions whose `event` is a constant), so a line
/// that does not fit is reported against its own kind's definition.
pub(crate) struct Events {
    kinds: BTreeMap<String, jsonschema::Validator>,
    whole: jsonschema::Validator,
}

impl Events {
    pub(crate) fn load() -> Events {
        let schema = schema();
        jsonschema::meta::validate(&schema).unwrap_or_else(|e| panic!("the schema is not valid JSON Schema: {e}"));
        let mut kinds = BTreeMap::new();
        for (name, def) in schema["$defs"].as_object().unwrap() {
            let Some(kind) = def["properties"]["event"]["const"].as_str() else {
                continue;
            };
            assert_eq!(kind, name, "definition `{name}` describes event `{kind}`");
            assert_eq!(
                def["additionalProperties"], false,
                "`{name}` must refuse undocumented fields"
            );
            let one = serde_json::json!({
                "$schema": schema["$schema"],
                "$defs": schema["$defs"],
                "$ref": format!("#/$defs/{name}"),
            });
            kinds.insert(name.clone(), jsonschema::draft202012::new(&one).unwrap());
        }
        let whole = jsonschema::draft202012::new(&schema).unwrap();
        Events { kinds, whole }
    }

    /// Every event kind, and every `kind:value` of [`VARIANTS`], the schema documents.
    fn documented(&self) -> BTreeSet<String> {
        let schema = schema();
        let mut all: BTreeSet<String> = self.kinds.keys().cloned().collect();
        for (kind, field) in VARIANTS {
            let values = schema["$defs"][kind]["properties"][field]["enum"]
                .as_array()
                .unwrap_or_else(|| panic!("`{kind}.{field}` is not an enum in the schema"));
            all.extend(values.iter().map(|v| format!("{kind}:{}", v.as_str().unwrap())));
        }
        all
    }

    /// Checks every line of `stdout`; returns the event kinds seen, and their
    /// [`VARIANTS`] as `kind:value`.
    pub(crate) fn check(&self, what: &str, stdout: &str) -> BTreeSet<String> {
        let mut seen = BTreeSet::new();
        for line in stdout.lines() {
            let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{what}: not JSON ({e}): {line}"));
            let kind = v["event"]
                .as_str()
                .unwrap_or_else(|| panic!("{what}: no `event`: {line}"));
            let validator = self
                .kinds
                .get(kind)
                .unwrap_or_else(|| panic!("{what}: event `{kind}` is not in docs/events.schema.json: {line}"));
            let errors: Vec<String> = validator
                .iter_errors(&v)
                .map(|e| format!("at {}: {e}", e.instance_path()))
                .collect();
            assert!(
                errors.is_empty(),
                "{what}: a `{kind}` line does not fit docs/events.schema.json:\n{line}\n{}",
                errors.join("\n")
            );
            assert!(
                self.whole.is_valid(&v),
                "{what}: fits `{kind}` but not the whole schema: {line}"
            );
            for (_, field) in VARIANTS.iter().filter(|(k, _)| *k == kind) {
                if let Some(value) = v[field].as_str() {
                    seen.insert(format!("{kind}:{value}"));
                }
            }
            seen.insert(kind.to_owned());
        }
        seen
    }
}

/// Waves behind a canary with a check and a bake between them; a drifted tenant skipped;
/// a failure that stops the run and is rolled back; tenants the stop leaves not started;
/// then `down` on what succeeded.
fn sqlite_runs(events: &Events) -> BTreeSet<String> {
    let p = crate::support::sqlite_fleet(
        &[
            ("c1", true),
            ("d1", false),
            ("a1", false),
            ("b1", false),
            ("a2", false),
            ("a3", false),
        ],
        &["b1"],
    );
    let mut seen = BTreeSet::new();
    // d1 applies migration 1, whose file is then edited: d1 is drifted, the rest are new.
    let first = p.run(&["up", "--to", "1", "--select", "id=d1", "--format", "json"]);
    assert_eq!(first.code, 0, "{first:?}");
    seen.extend(events.check("up --to 1 on d1", &first.stdout));
    p.migration("0001_t1.up.sql", "CREATE TABLE t1 (id INTEGER); -- edited");

    let run = p.run(&[
        "up", "--waves", "3,100%", "-j", "1", "--bake", "1ms", "--check", "SELECT 1", "--format", "json",
    ]);
    assert_ne!(run.code, 0, "b1 fails: {run:?}");
    let kinds = events.check("up with waves, gates, a drift and a failure", &run.stdout);
    for kind in ["stopping", "rollback_started", "tenant_rolled_back", "wave_finished"] {
        assert!(kinds.contains(kind), "no `{kind}` in:\n{}", run.stdout);
    }
    let lines: Vec<Value> = run.stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let statuses: BTreeSet<&str> = lines
        .iter()
        .filter(|v| v["event"] == "tenant_finished")
        .map(|v| v["status"].as_str().unwrap())
        .collect();
    assert_eq!(
        statuses,
        BTreeSet::from(["failed", "not_started", "skipped", "succeeded"]),
        "{}",
        run.stdout
    );
    // The events alone account for every tenant: the ones the stop left alone get their
    // `tenant_finished` (`not_started`) before `run_finished`, each once.
    let finished: Vec<&str> = lines
        .iter()
        .filter(|v| v["event"] == "tenant_finished")
        .map(|v| v["tenant"].as_str().unwrap())
        .collect();
    let distinct: BTreeSet<&str> = finished.iter().copied().collect();
    assert_eq!(distinct.len(), finished.len(), "{}", run.stdout);
    assert_eq!(
        distinct,
        BTreeSet::from(["a1", "a2", "a3", "b1", "c1", "d1"]),
        "{}",
        run.stdout
    );
    let not_started = lines
        .iter()
        .position(|v| v["event"] == "tenant_finished" && v["status"] == "not_started")
        .unwrap();
    assert_eq!(
        lines[not_started]["final_version"], 0,
        "its version was read: {}",
        run.stdout
    );
    assert!(
        lines[not_started..]
            .iter()
            .all(|v| v["event"] == "tenant_finished" || v["event"] == "run_finished"),
        "they come last, before run_finished: {}",
        run.stdout
    );
    // Wave 2 ran one tenant at a time: it took at least as long as its steps did.
    let steps_ms: u64 = lines
        .iter()
        .filter(|v| v["event"] == "step_finished" && v["wave"] == 2)
        .map(|v| v["duration_ms"].as_u64().unwrap())
        .sum();
    let wave = lines
        .iter()
        .find(|v| v["event"] == "wave_finished" && v["wave"] == 2)
        .unwrap();
    let wave_ms = wave["summary"]["elapsed_ms"].as_u64().unwrap();
    assert!(
        wave_ms > 0 && wave_ms >= steps_ms,
        "wave 2 took {wave_ms} ms, its steps {steps_ms} ms"
    );
    agrees_with_the_report(&p, &lines);
    let end = &lines.last().unwrap()["summary"];
    assert_eq!(
        (&end["rolled_back"], &end["not_started"]),
        (&1.into(), &2.into()),
        "{}",
        run.stdout
    );
    seen.extend(kinds);

    let down = p.run(&["down", "--steps", "1", "--select", "id=c1", "--format", "json"]);
    assert_eq!(down.code, 0, "{down:?}");
    seen.extend(events.check("down --steps 1", &down.stdout));
    seen
}

/// `--confirm` on a terminal (a pseudo-terminal, which `--confirm` needs), answered `n`:
/// the gate after the canary wave is started with what the next wave holds, is not
/// passed, and stops the run. Empty when `script` is missing and not required.
fn unconfirmed_run(events: &Events) -> BTreeSet<String> {
    let p = crate::support::sqlite_fleet(&[("c", true), ("x", false), ("y", false)], &[]);
    let Some((screen, code)) = crate::gates::on_a_terminal(&p, "up --confirm --format json", "n\n") else {
        return BTreeSet::new();
    };
    assert_eq!(code, Some(1), "{screen}");
    assert!(screen.contains("Start wave 2? [y/N] "), "{screen}");
    // The terminal shows stdout's events among the question (on stderr, which may come
    // before events of the wave are printed, and ends with no newline) and the echoed answer.
    let stdout: Vec<&str> = screen
        .split('\n')
        .filter_map(|l| l.find("{\"v\":").map(|at| l[at..].trim_end_matches('\r')))
        .collect();
    let seen = events.check("up --confirm answered n", &stdout.join("\n"));
    let lines: Vec<Value> = stdout.iter().map(|l| serde_json::from_str(l).unwrap()).collect();
    let started = lines
        .iter()
        .find(|v| v["event"] == "gate_started" && v["gate"] == "confirm")
        .unwrap_or_else(|| panic!("no confirm gate: {screen}"));
    assert_eq!(
        (&started["wave"], &started["next_wave"], &started["tenants"]),
        (&1.into(), &2.into(), &2.into()),
        "{started}"
    );
    assert_eq!(started["first_tenants"], serde_json::json!(["x", "y"]), "{started}");
    let finished = lines
        .iter()
        .find(|v| v["event"] == "gate_finished" && v["gate"] == "confirm")
        .unwrap_or_else(|| panic!("{screen}"));
    assert_eq!(
        (&finished["passed"], &finished["detail"]),
        (&false.into(), &"not confirmed".into()),
        "{finished}"
    );
    let statuses: Vec<(&str, &str)> = lines
        .iter()
        .filter(|v| v["event"] == "tenant_finished")
        .map(|v| (v["tenant"].as_str().unwrap(), v["status"].as_str().unwrap()))
        .collect();
    assert_eq!(
        statuses,
        [("c", "succeeded"), ("x", "not_started"), ("y", "not_started")],
        "{screen}"
    );
    seen
}

/// An interrupt while a tenant is in its second of three migrations: that migration (kept
/// waiting for a lock the test holds until the run is stopping) ends whole, and the tenant
/// is `stopped` between its steps, at 2.
fn interrupted_run(events: &Events, pg: &Pg) -> BTreeSet<String> {
    let p = Project::new();
    p.fleet(&format!(
        "defaults: {{url: \"{}\", schema: \"p_{{id}}\"}}\ntenants:\n  - {{id: s}}\n",
        pg.url()
    ));
    p.migration("0001_one.up.sql", "CREATE TABLE t1 (id INT);\n");
    p.migration("0002_gated.up.sql", "SELECT pg_advisory_xact_lock(4242, 2);\n");
    p.migration("0003_three.up.sql", "CREATE TABLE t3 (id INT);\n");
    let waiting = |app: &str, granted: bool| {
        pg.column(&format!(
            "SELECT count(*)::text FROM pg_locks l JOIN pg_stat_activity a USING (pid) \
             WHERE a.datname = current_database() AND a.application_name = '{app}' \
             AND l.locktype = 'advisory' AND l.classid = 4242 AND l.granted = {granted}"
        ))[0]
            == "1"
    };
    let gate = psql_session(
        pg,
        "json_gate",
        "SELECT pg_advisory_lock(4242, 2); SELECT pg_sleep(60);",
    );
    wait_until("the gate's lock is held", || waiting("json_gate", true));
    let mut up = Spawned::new(p.command(&["up", "--format", "json", "--rollback", "none"]));
    wait_until("migration 2 waits for the gate", || waiting("fleetmig", false));
    up.signal("INT");
    up.wait_for(Duration::from_secs(30), |v| v["event"] == "stopping");
    end_session(pg, "json_gate", gate);
    let mut lines = up.seen.clone();
    let (code, rest, stderr) = up.finish(Duration::from_secs(60));
    lines.extend(rest);
    let stdout = lines.join("\n");
    assert_eq!(code, Some(1), "{stdout}\n{stderr}");
    let finished: Value = lines
        .iter()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|v| v["event"] == "tenant_finished")
        .unwrap_or_else(|| panic!("{stdout}"));
    assert_eq!(
        (
            &finished["status"],
            &finished["start_version"],
            &finished["final_version"]
        ),
        (&"stopped".into(), &0.into(), &2.into()),
        "{stdout}"
    );
    events.check("up interrupted between a tenant's steps", &stdout)
}

/// `report RUN --format json` (and `--report FILE.json`, the same document) lists each
/// tenant as `id` in its `tenants` and shares `tenant_finished`'s other names: `wave`,
/// `start_version`, `failed_migration`, `dirty`, and `status`, which there is the final
/// one (a rolled-back tenant is `rolled_back`).
fn agrees_with_the_report(p: &Project, lines: &[Value]) {
    let run_id = lines[0]["run_id"].as_str().unwrap();
    let report = p.run(&["report", run_id, "--format", "json"]);
    let report: Value = serde_json::from_str(&report.stdout).unwrap_or_else(|e| panic!("{e}: {report:?}"));
    let rolled_back: BTreeSet<&str> = lines
        .iter()
        .filter(|v| v["event"] == "tenant_rolled_back" && v["error"].is_null())
        .map(|v| v["tenant"].as_str().unwrap())
        .collect();
    for event in lines.iter().filter(|v| v["event"] == "tenant_finished") {
        let id = event["tenant"].as_str().unwrap();
        let row = report["tenants"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["id"] == id)
            .unwrap_or_else(|| panic!("no row for {id} in {report:#}"));
        for key in ["wave", "start_version"] {
            assert_eq!(row[key], event[key], "{key} of {id}: {row} vs {event}");
        }
        let status = if rolled_back.contains(id) {
            "rolled_back"
        } else {
            event["status"].as_str().unwrap()
        };
        assert_eq!(row["status"], status, "{id}: {row} vs {event}");
        if event["status"] == "failed" {
            assert_eq!(
                row["failed_migration"], event["failed_migration"],
                "{id}: {row} vs {event}"
            );
        } else {
            assert_eq!(row["final_version"], event["final_version"], "{id}: {row} vs {event}");
        }
    }
}

/// A PostgreSQL tenant whose server refuses connections at first: its attempt is retried
/// (`step_retried`), and once the server is back it succeeds.
fn retried_run(events: &Events) -> BTreeSet<String> {
    let Some(pg) = Pg::create("jsonretry") else {
        return BTreeSet::new();
    };
    let proxy = Proxy::new("127.0.0.1:5432");
    proxy.set(ProxyMode::Refuse);
    let p = Project::new();
    p.fleet(&format!(
        "hosts:\n  main: {{url: \"{}\"}}\ndefaults: {{host: main, schema: \"t_{{id}}\"}}\ntenants:\n  - {{id: r}}\n",
        proxy.pg_url(&pg.name)
    ));
    p.migration("0001_one.up.sql", "CREATE TABLE t1 (id INT);\n");
    let mut up = Spawned::new(p.command(&["up", "--format", "json", "--retry-for", "60s"]));
    up.wait_for(Duration::from_secs(60), |v| v["event"] == "step_retried");
    proxy.set(ProxyMode::Forward);
    let mut lines = up.seen.clone();
    let (code, rest, stderr) = up.finish(Duration::from_secs(120));
    lines.extend(rest);
    let stdout = lines.join("\n");
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    let last: Value = serde_json::from_str(lines.last().unwrap()).unwrap();
    assert_eq!(last["summary"]["succeeded"], 1, "retried until it succeeded: {stdout}");
    let mut seen = events.check("up through a server that refused at first", &stdout);
    seen.extend(shared_run(events, &pg));
    seen.extend(interrupted_run(events, &pg));
    seen.extend(breaker_run(events, &pg));
    seen
}

/// A host that refuses connections is cut off after one tenant (`host_cut_off`); it is
/// back when the next wave's first tenant probes it (`host_restored`).
fn breaker_run(events: &Events, pg: &Pg) -> BTreeSet<String> {
    let proxy = Proxy::new("127.0.0.1:5432");
    proxy.set(ProxyMode::Refuse);
    let p = Project::new();
    p.fleet(&format!(
        "defaults: {{url: \"{}\", schema: \"b_{{id}}\"}}\ntenants:\n  - {{id: a}}\n  - {{id: b}}\n  - {{id: c}}\n",
        proxy.pg_url(&pg.name)
    ));
    p.migration("0001_one.up.sql", "CREATE TABLE t1 (id INT);\n");
    let args = [
        "up",
        "--format",
        "json",
        "--retry-for",
        "0s",
        "--host-failures",
        "1",
        "--waves",
        "1,2,100%",
        "--bake",
        "3s",
    ];
    let mut up = Spawned::new(p.command(&args));
    up.wait_for(Duration::from_secs(60), |v| v["event"] == "host_cut_off");
    proxy.set(ProxyMode::Forward);
    let mut lines = up.seen.clone();
    let (code, rest, stderr) = up.finish(Duration::from_secs(120));
    lines.extend(rest);
    let stdout = lines.join("\n");
    assert_eq!(code, Some(1), "a skipped tenant: {stdout}\n{stderr}");
    let last: Value = serde_json::from_str(lines.last().unwrap()).unwrap();
    assert_eq!(last["summary"]["succeeded"], 2, "{stdout}");
    events.check("up with a host cut off and restored", &stdout)
}

/// A shared run (`--shared`, the claim loop of `join`) emits the same events.
fn shared_run(events: &Events, pg: &Pg) -> BTreeSet<String> {
    let p = Project::new();
    p.fleet(&format!(
        "defaults: {{url: \"{}\", schema: \"s_{{id}}\"}}\ntenants:\n  - {{id: c, canary: true}}\n  - {{id: x}}\n  - {{id: y}}\n",
        pg.url()
    ));
    p.migration("0001_one.up.sql", "CREATE TABLE t1 (id INT);\n");
    p.migration("0002_two.up.sql", "CREATE TABLE t2 (id INT);\n");
    let run = p.run(&["up", "--shared", "--ledger", &pg.url(), "--format", "json"]);
    assert_eq!(run.code, 0, "{run:?}");
    let seen = events.check("a shared run", &run.stdout);
    let waves: BTreeSet<u64> = run
        .stdout
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|v| v["event"] == "tenant_finished")
        .map(|v| v["wave"].as_u64().unwrap())
        .collect();
    assert_eq!(waves, BTreeSet::from([1, 2]), "{}", run.stdout);
    let timed = run
        .stdout
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|v| v["event"] == "wave_finished")
        .all(|v| v["summary"]["elapsed_ms"].as_u64() > Some(0));
    assert!(timed, "each wave says how long it took: {}", run.stdout);
    seen
}

/// Runs of sets whose versions are not whole numbers (Flyway's dotted, diesel's text):
/// their versions are strings in every line.
fn text_version_runs(events: &Events) {
    for layout in ["flyway", "diesel"] {
        let p = Project::new();
        p.fleet(&format!(
            "migrations: {{ path: \"{}/tests/fixtures/layouts/{layout}\" }}\n\
             defaults: {{ url: \"sqlite://data/{{id}}.db\" }}\ntenants:\n  - {{ id: a }}\n  - {{ id: b }}\n",
            env!("CARGO_MANIFEST_DIR")
        ));
        std::fs::create_dir_all(p.path().join("data")).unwrap();
        let up = p.run(&["up", "--format", "json"]);
        assert_eq!(up.code, 0, "{layout}: {up:?}");
        events.check(&format!("{layout} up"), &up.stdout);
        assert!(
            up.stdout.contains("\"version\":\""),
            "{layout}: no string version: {}",
            up.stdout
        );
        let down = p.run(&["down", "--steps", "1", "--format", "json"]);
        assert_eq!(down.code, 0, "{layout}: {down:?}");
        events.check(&format!("{layout} down"), &down.stdout);
    }
    // A folder per engine: the run's target is each engine's own head, `"head"`.
    let p = Project::new();
    p.fleet(&format!(
        "migrations: {{ sqlite: \"{}/tests/fixtures/layouts/flyway\" }}\n\
         defaults: {{ url: \"sqlite://data/{{id}}.db\" }}\ntenants:\n  - {{ id: a }}\n",
        env!("CARGO_MANIFEST_DIR")
    ));
    std::fs::create_dir_all(p.path().join("data")).unwrap();
    let up = p.run(&["up", "--format", "json"]);
    assert_eq!(up.code, 0, "{up:?}");
    events.check("per-engine up", &up.stdout);
    assert!(up.stdout.contains("\"target\":\"head\""), "{}", up.stdout);
    // A repeatable migration's step says so.
    let p = Project::new();
    p.fleet("defaults: { url: \"sqlite://data/{id}.db\" }\ntenants:\n  - { id: a }\n");
    std::fs::create_dir_all(p.path().join("data")).unwrap();
    p.migration("V1__t.sql", "CREATE TABLE t (id INTEGER);");
    p.migration("R__v.sql", "DROP VIEW IF EXISTS v; CREATE VIEW v AS SELECT id FROM t;");
    let up = p.run(&["up", "--format", "json"]);
    assert_eq!(up.code, 0, "{up:?}");
    events.check("repeatable up", &up.stdout);
    assert!(up.stdout.contains("\"repeatable\":true"), "{}", up.stdout);
}

/// A run whose change window is closed (it opens an hour on at the earliest): it says
/// so (`window_wait`), and a SIGTERM while it waits stops it.
fn window_run(events: &Events) -> BTreeSet<String> {
    let p = Project::new();
    p.fleet("defaults: {url: \"sqlite://{id}.db\"}\ntenants:\n  - {id: w}\n");
    p.migration("0001_one.up.sql", "CREATE TABLE t1 (id INT);\n");
    let hour = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        / 3600;
    let window = format!("{:02}:00-{:02}:00 UTC", (hour + 2) % 24, (hour + 3) % 24);
    let mut up = Spawned::new(p.command(&["up", "--format", "json", "--window", &window]));
    up.wait_for(Duration::from_secs(60), |v| v["event"] == "window_wait");
    up.signal("TERM");
    let mut lines = up.seen.clone();
    let (code, rest, stderr) = up.finish(Duration::from_secs(60));
    lines.extend(rest);
    let stdout = lines.join("\n");
    assert_eq!(code, Some(1), "{stdout}\n{stderr}");
    events.check("up waiting for its change window, stopped", &stdout)
}

#[test]
fn every_line_of_real_runs_fits_the_schema_and_every_event_kind_comes_up() {
    let events = Events::load();
    let mut seen = sqlite_runs(&events);
    seen.extend(window_run(&events));
    text_version_runs(&events);
    let retried = retried_run(&events);
    let confirmed = unconfirmed_run(&events);
    let mut documented = events.documented();
    if confirmed.is_empty() {
        // `script` is missing and not required (CI requires it): no terminal to confirm on.
        documented.remove("gate_started:confirm");
        documented.remove("gate_finished:confirm");
    }
    seen.extend(confirmed);
    if retried.is_empty() {
        // PostgreSQL is missing and not required (CI requires it): the retry and the
        // interrupted step are not run.
        documented.remove("step_retried");
        documented.remove("host_cut_off");
        documented.remove("host_restored");
        documented.remove("tenant_finished:stopped");
    }
    seen.extend(retried);
    let missing: Vec<&String> = documented.difference(&seen).collect();
    assert!(
        missing.is_empty(),
        "event kinds (and `kind:value` variants) documented in docs/events.schema.json that no run \
         here emitted: {missing:?}; add a run that emits them"
    );
}

/// The check can fail: a field the schema does not document, the old nested
/// `tenant_finished` (format 1), or a tenant event without its wave are refused.
#[test]
fn undocumented_fields_and_the_old_shape_are_refused() {
    let events = Events::load();
    let good = r#"{"v":2,"ts_ms":1,"event":"tenant_finished","tenant":"a","wave":1,"status":"succeeded","start_version":0,"final_version":1,"steps":[{"version":1,"name":"one","direction":"up","duration_ms":3}]}"#;
    assert!(events.check("a good line", good).contains("tenant_finished"));
    let bad = [
        r#"{"v":2,"ts_ms":1,"event":"tenant_finished","tenant":"a","wave":1,"status":"succeeded","start_version":0,"final_version":1,"steps":[],"extra":1}"#,
        r#"{"v":1,"ts_ms":1,"event":"tenant_finished","report":{"id":"a","status":"succeeded","start_version":0,"final_version":1,"steps":[]}}"#,
        r#"{"v":2,"ts_ms":1,"event":"tenant_started","tenant":"a"}"#,
        r#"{"v":2,"ts_ms":1,"event":"tenant_finished","tenant":"a","wave":1,"status":"failed","start_version":0,"final_version":0,"steps":[]}"#,
        r#"{"v":2,"ts_ms":1,"event":"wave_finished","wave":1,"summary":{"tenants":1}}"#,
    ];
    for line in bad {
        let v: Value = serde_json::from_str(line).unwrap();
        let kind = v["event"].as_str().unwrap();
        assert!(!events.kinds[kind].is_valid(&v), "accepted: {line}");
        assert!(!events.whole.is_valid(&v), "accepted by the whole schema: {line}");
    }
}

/// The README's example events fit the schema too, so the example cannot drift from it.
#[test]
fn the_readmes_example_lines_fit_the_schema() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let lines: Vec<&str> = readme.lines().filter(|l| l.starts_with("{\"v\":2,")).collect();
    assert!(lines.len() >= 10, "the README shows a run's events");
    let seen = Events::load().check("README.md", &lines.join("\n"));
    assert!(
        seen.contains("tenant_finished") && seen.contains("run_finished"),
        "{seen:?}"
    );
}
