//! The gates between waves at the operator's seat: a `--check` that cannot run stops the
//! run before anything changes, and `--confirm` shows what the next wave holds, on a real
//! terminal (a pseudo-terminal from `script`).

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::support::{Pg, Project, sqlite_column};

/// Two SQLite migrations; a canary `c1` and five tenants `a1`..`a5`.
fn sqlite_fleet() -> Project {
    let p = Project::new();
    p.migration("0001_users.up.sql", "CREATE TABLE users (id INTEGER);");
    p.migration("0002_orders.up.sql", "CREATE TABLE orders (id INTEGER);");
    let tenants: String = std::iter::once("  - { id: c1, canary: true }\n".to_owned())
        .chain((1..=5).map(|i| format!("  - {{ id: a{i} }}\n")))
        .collect();
    p.fleet(&format!(
        "defaults:\n  url: \"sqlite://data/{{id}}.db\"\ntenants:\n{tenants}"
    ));
    p
}

fn sqlite_version(p: &Project, id: &str) -> Option<String> {
    let path = p.db_path(id);
    if !path.exists() {
        return None;
    }
    sqlite_column(
        &path,
        "SELECT CAST(max(CAST(version AS INTEGER)) AS TEXT) FROM fleetmig_history",
    )
    .pop()
}

#[test]
fn a_check_that_cannot_run_stops_sqlite_before_wave_1() {
    let p = sqlite_fleet();
    let run = p.run(&["up", "--check", "SELEC count(*) > 0 FROM users"]);
    assert_eq!(run.code, 2, "{}", run.all());
    let first = run.stderr.lines().next().unwrap_or_default();
    assert_eq!(
        first,
        "error: nothing was run: --check `SELEC count(*) > 0 FROM users` cannot run: tried on tenant `c1` \
         before wave 1: running the check query: near \"SELEC\": syntax error (code 1)",
        "{}",
        run.all()
    );
    for id in ["c1", "a1", "a5"] {
        assert!(!p.db_path(id).exists(), "{id} was touched");
    }
    let runs = p.run(&["runs"]);
    assert!(
        !runs.stdout.contains(" up "),
        "the ledger heard of the run: {}",
        runs.all()
    );
    // A table the migrations create is no reason to stop: the check is false then, and the
    // gate after wave 1 finds it.
    let run = p.run(&["up", "--check", "SELECT count(*) >= 0 FROM orders"]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert!(run.stdout.contains("wave 1: check passed on 1/1"), "{}", run.stdout);
    assert!(run.stdout.contains("wave 2: check passed on 5/5"), "{}", run.stdout);
    assert_eq!(sqlite_version(&p, "a5").as_deref(), Some("2"));
}

/// The check tried on the first tenant before wave 1 may be false then (the migrations it
/// checks have not run): the run goes on, wave 1 runs and the gate after it passes.
#[test]
fn a_check_that_is_false_before_wave_1_does_not_stop_the_run() {
    let p = sqlite_fleet();
    let first = p.run(&["up", "--to", "1", "--select", "id=c1"]);
    assert_eq!(first.code, 0, "{}", first.all());
    let check = "SELECT count(*) = 1 FROM sqlite_master WHERE name = 'orders'";
    let before = sqlite_column(&p.db_path("c1"), &format!("SELECT ({check}) || ''"));
    assert_eq!(before, ["0"], "false on c1 before wave 1");
    let run = p.run(&["up", "--check", check]);
    assert_eq!(run.code, 0, "{}", run.all());
    let c1 = crate::support::tenant_line(&run.stdout, "c1");
    assert!(c1.contains(" 1 -> 2  1 applied in "), "wave 1 ran: {}", run.stdout);
    assert!(run.stdout.contains("wave 1: check passed on 1/1"), "{}", run.stdout);
    assert!(run.stdout.contains("wave 2: check passed on 5/5"), "{}", run.stdout);
    for id in ["c1", "a1", "a5"] {
        assert_eq!(sqlite_version(&p, id).as_deref(), Some("2"), "{id}");
    }
}

#[test]
fn a_check_that_cannot_run_stops_postgres_before_wave_1() {
    let Some(pg) = Pg::create("gate_rehearsal") else { return };
    let p = Project::new();
    p.migration("0001_users.up.sql", "CREATE TABLE users (id int);");
    p.fleet(&format!(
        "hosts: {{ pg: {{ url: \"{}\" }} }}\ndefaults: {{ host: pg, schema: \"s_{{id}}\" }}\ntenants:\n  - {{ id: c1, canary: true }}\n  - {{ id: a1 }}\n",
        pg.url()
    ));
    let untouched = || pg.column("SELECT nspname FROM pg_namespace WHERE nspname LIKE 's\\_%' ORDER BY 1");
    for (check, error) in [
        ("SELECT count(*) > 0 FROM", "syntax error at end of input (code 42601)"),
        ("SELECT 1 / 0 = 1", "division by zero (code 22012)"),
    ] {
        let run = p.run(&["up", "--check", check]);
        assert_eq!(run.code, 2, "{check}: {}", run.all());
        assert!(
            run.stderr.contains(&format!(
                "--check `{check}` cannot run: tried on tenant `c1` before wave 1: running the check query: {error}"
            )),
            "{check}: {}",
            run.stderr
        );
        assert_eq!(untouched(), Vec::<String>::new(), "{check}: a schema was created");
    }
    let run = p.run(&["up", "--check", "SELECT count(*) >= 0 FROM users"]);
    assert_eq!(run.code, 0, "a table the migrations create: {}", run.all());
    assert_eq!(untouched(), ["s_a1", "s_c1"]);
}

/// fleetmig on a pseudo-terminal (stdin, stdout and stderr), answering `answer` once the
/// question is on the screen; what the terminal showed, and the exit code.
pub(crate) fn on_a_terminal(p: &Project, args: &str, answer: &str) -> Option<(String, Option<i32>)> {
    on_a_terminal_then(p, args, |stdin| {
        stdin.write_all(answer.as_bytes()).unwrap();
        stdin.flush().unwrap();
    })
}

/// [`on_a_terminal`], doing `act` (with the terminal's input) once the question is on the
/// screen.
pub(crate) fn on_a_terminal_then(
    p: &Project,
    args: &str,
    act: impl FnOnce(&mut std::process::ChildStdin),
) -> Option<(String, Option<i32>)> {
    if Command::new("script").arg("--version").output().is_err() {
        // As with the servers: CI (FLEETMIG_REQUIRE_SERVERS=1) may not pass by skipping.
        assert!(
            !crate::support::servers_required(),
            "`script` (util-linux) is required (FLEETMIG_REQUIRE_SERVERS=1) but is not installed"
        );
        eprintln!(
            "SKIPPED: `script` (util-linux) is not installed; set FLEETMIG_REQUIRE_SERVERS=1 to make this a failure"
        );
        return None;
    }
    // `exec`: no shell stands between `script` and fleetmig. A shell that waits for its
    // child dies of the terminal's SIGINT itself (dash does), and `script` then reports
    // 130 whatever fleetmig did.
    let command = format!("exec {} {args}", env!("CARGO_BIN_EXE_fleetmig"));
    let mut child = Command::new("script")
        .args(["-q", "-e", "-f", "-c", &command, "/dev/null"])
        .current_dir(p.path())
        .env("TERM", "xterm")
        .env_remove("NO_COLOR")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let screen = Arc::new(Mutex::new(String::new()));
    let reader = {
        let screen = screen.clone();
        let mut out = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n @ 1..) = out.read(&mut buf) {
                screen.lock().unwrap().push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        })
    };
    let bound = Instant::now() + Duration::from_secs(30);
    while !screen.lock().unwrap().contains("[y/N]") {
        assert!(Instant::now() < bound, "no question: {}", screen.lock().unwrap());
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut stdin = child.stdin.take().unwrap();
    act(&mut stdin);
    let code = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status.code();
        }
        if Instant::now() > bound {
            let _ = child.kill();
            panic!("no end: {}", screen.lock().unwrap());
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    drop(stdin);
    reader.join().unwrap();
    let text = screen.lock().unwrap().clone();
    Some((text, code))
}

#[test]
fn confirm_shows_the_next_wave_and_waits_for_the_answer() {
    let p = sqlite_fleet();
    let Some((screen, code)) = on_a_terminal(&p, "up --confirm", "n\n") else {
        return;
    };
    assert!(
        screen.contains("next: wave 2, 5 tenant(s) (sqlite): a1, a2, a3, a4, a5\r\nStart wave 2? [y/N] "),
        "{screen}"
    );
    assert_eq!(code, Some(1), "{screen}");
    assert!(screen.contains("not confirmed"), "{screen}");
    assert_eq!(sqlite_version(&p, "c1").as_deref(), Some("2"));
    assert_eq!(sqlite_version(&p, "a1"), None, "a `n` starts nothing");

    let Some((screen, code)) = on_a_terminal(&p, "up --confirm", "y\n") else {
        return;
    };
    assert_eq!(code, Some(0), "{screen}");
    assert!(screen.contains("Start wave 2? [y/N] "), "{screen}");
    assert_eq!(sqlite_version(&p, "a5").as_deref(), Some("2"));
}

/// [`sqlite_fleet`] with a `rollout:` section in its fleet file.
fn sqlite_fleet_with_rollout(rollout: &str) -> Project {
    let p = sqlite_fleet();
    let yaml = std::fs::read_to_string(p.path().join("tenants.yaml")).unwrap();
    p.fleet(&format!("rollout:\n{rollout}{yaml}"));
    p
}

/// The fleet file's `rollout.bake` and `rollout.check` are defaults, as the README says:
/// a run without the flags holds them, a flag overrides them.
#[test]
fn the_fleet_files_bake_and_check_are_defaults_that_flags_override() {
    let p = sqlite_fleet_with_rollout("  bake: 1ms\n  check: \"SELECT count(*) > 0 FROM users\"\n");
    let run = p.run(&["up"]);
    assert_eq!(run.code, 1, "{}", run.all());
    assert!(
        run.stdout
            .contains("wave 1: check FAILED: check returned false on tenant `c1`"),
        "the file's check did not run: {}",
        run.stdout
    );
    assert_eq!(sqlite_version(&p, "c1").as_deref(), Some("2"));
    assert_eq!(sqlite_version(&p, "a1"), None, "the run went past the file's check");
    let bake = "\"gate\":\"bake\",\"duration_ms\":";
    let run = p.run(&[
        "up",
        "--to",
        "1",
        "--check",
        "SELECT count(*) >= 0 FROM users",
        "--format",
        "json",
    ]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert!(
        run.stdout.contains(&format!("{bake}1,")),
        "the file's bake: {}",
        run.stdout
    );
    assert!(!run.stdout.contains("\"passed\":false"), "{}", run.stdout);
    let run = p.run(&["up", "--check", "SELECT true", "--bake", "2ms", "--format", "json"]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert!(run.stdout.contains(&format!("{bake}2,")), "{}", run.stdout);
    assert!(!run.stdout.contains(&format!("{bake}1,")), "{}", run.stdout);
    assert_eq!(sqlite_version(&p, "a5").as_deref(), Some("2"));
}

/// `--resume` keeps the gates a run started with, from the file or the flags; a gate the
/// fleet file gained since is not the run's.
#[test]
fn resume_keeps_the_fleet_files_gates_as_they_were() {
    let p = sqlite_fleet_with_rollout("  check: \"SELECT count(*) > 0 FROM users\"\n");
    let first = p.run(&["up"]);
    assert_eq!(first.code, 1, "{}", first.all());
    p.fleet(
        &std::fs::read_to_string(p.path().join("tenants.yaml"))
            .unwrap()
            .replacen("  check: \"SELECT count(*) > 0 FROM users\"\n", "", 1),
    );
    let resumed = p.run(&["up", "--resume"]);
    assert_eq!(resumed.code, 1, "{}", resumed.all());
    assert!(resumed.stdout.contains("wave 1: check FAILED"), "{}", resumed.stdout);
    assert_eq!(sqlite_version(&p, "a1"), None, "the resumed run dropped its check");
    let refused = p.run(&["up", "--resume", "--check", "SELECT true"]);
    assert_eq!(refused.code, 2, "{}", refused.all());
    assert!(
        refused
            .stderr
            .contains("was started with --check \"SELECT count(*) > 0 FROM users\""),
        "{}",
        refused.stderr
    );

    let p = sqlite_fleet();
    let paused = p.run(&["up", "--pause-after", "1"]);
    assert_eq!(paused.code, 0, "{}", paused.all());
    let yaml = std::fs::read_to_string(p.path().join("tenants.yaml")).unwrap();
    p.fleet(&format!("rollout:\n  check: \"SELECT 1 = 0\"\n  bake: 1h\n{yaml}"));
    let resumed = p.run(&["up", "--resume"]);
    assert_eq!(resumed.code, 0, "{}", resumed.all());
    assert!(!resumed.stdout.contains("check"), "{}", resumed.stdout);
    assert!(!resumed.stdout.contains("baking"), "{}", resumed.stdout);
    assert_eq!(sqlite_version(&p, "a5").as_deref(), Some("2"));
}

/// A shared run refuses the fleet file's gates as it refuses the flags, before the ledger
/// is opened.
#[test]
fn a_shared_run_refuses_the_fleet_files_gates() {
    for (rollout, key) in [("  bake: 1s\n", "bake"), ("  check: \"SELECT true\"\n", "check")] {
        let p = sqlite_fleet_with_rollout(rollout);
        for args in [&["up", "--shared"][..], &["up", "--join", "some-run"]] {
            let run = p.run(args);
            assert_eq!(run.code, 2, "{args:?}: {}", run.all());
            assert!(
                run.stderr.contains(&format!(
                    "the fleet file `tenants.yaml` sets rollout.{key}, which is not supported with --shared or --join"
                )),
                "{args:?}: {}",
                run.stderr
            );
        }
        assert!(!p.db_path("c1").exists(), "nothing ran");
    }
}

/// A wave whose tenants were all refused has nothing to check, and says so rather than
/// "check passed on 0/0".
#[test]
fn a_check_after_a_wave_with_no_tenant_migrated_says_it_had_nothing_to_check() {
    let p = sqlite_fleet();
    assert_eq!(p.run(&["up", "--to", "1"]).code, 0);
    p.migration("0001_users.up.sql", "CREATE TABLE users (id INTEGER, name TEXT);");
    let run = p.run(&["up", "--max-skipped", "all", "--check", "SELECT true"]);
    assert_eq!(run.code, 1, "{}", run.all());
    assert!(
        run.stdout
            .contains("wave 1: check skipped: no tenant of the wave succeeded"),
        "{}",
        run.stdout
    );
    assert!(!run.stdout.contains("0/0"), "{}", run.stdout);
}

/// The fleetmig process working in `dir`.
fn fleetmig_in(dir: &std::path::Path) -> Option<u32> {
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        let comm = std::fs::read_to_string(e.path().join("comm")).ok()?;
        let cwd = std::fs::read_link(e.path().join("cwd")).ok()?;
        (comm.trim() == "fleetmig" && cwd == dir).then_some(pid)
    })
}

/// Ctrl-C (typed: the terminal sends SIGINT) or SIGTERM while `--confirm` asks: the run
/// stops there as interrupted, at once, and the next wave does not start.
#[test]
fn an_interrupt_while_the_question_is_up_stops_the_run_at_once() {
    for how in ["ctrl-c", "TERM"] {
        let p = sqlite_fleet();
        let dir = p.path().canonicalize().unwrap();
        let mut sent = None;
        let Some((screen, code)) = on_a_terminal_then(&p, "up --confirm", |stdin| {
            if how == "ctrl-c" {
                stdin.write_all(b"\x03").unwrap();
                stdin.flush().unwrap();
            } else {
                let pid = fleetmig_in(&dir).expect("fleetmig runs");
                let ok = Command::new("kill").args(["-TERM", &pid.to_string()]).status().unwrap();
                assert!(ok.success());
            }
            sent = Some(Instant::now());
        }) else {
            return;
        };
        let took = sent.unwrap().elapsed();
        assert!(
            took < Duration::from_secs(5),
            "{how}: the run took {took:?} to end: {screen}"
        );
        assert_eq!(code, Some(1), "{how}: {screen}");
        assert!(screen.contains("interrupted"), "{how}: {screen}");
        assert!(!screen.contains("not confirmed"), "{how}: {screen}");
        assert_eq!(sqlite_version(&p, "c1").as_deref(), Some("2"), "{how}");
        assert_eq!(sqlite_version(&p, "a1"), None, "{how}: the next wave started: {screen}");
    }
}
