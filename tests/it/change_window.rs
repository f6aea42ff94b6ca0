//! Change windows through the binary: a window open now lets the run go; one closed now
//! makes it wait, says so (`window_wait`), and SIGTERM then stops it at once with every
//! tenant `not_started`; the window is kept by `--resume`; a bad window is refused naming
//! the fleet file and key. The waiting itself, and the run going on once the window
//! opens, are tested on paused time in `exec::dispatch::tests` (the binary reads the
//! system clock).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use crate::support::{Spawned, sqlite_fleet};

const BOUND: Duration = Duration::from_secs(60);

/// The hour of the day now, UTC.
fn hour_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() / 3600 % 24
}

/// A window of every day from `from` hours after this hour, `len` hours long, in UTC.
fn window_from_now(from: u64, len: u64) -> String {
    let start = (hour_now() + from) % 24;
    let end = (start + len) % 24;
    format!("{start:02}:00-{end:02}:00 UTC")
}

fn report(p: &crate::support::Project) -> Value {
    serde_json::from_str(&std::fs::read_to_string(p.path().join("report.json")).unwrap()).unwrap()
}

#[test]
fn a_window_open_now_lets_the_run_go() {
    let p = sqlite_fleet(&[("c1", true), ("a1", false)], &[]);
    // From the start of this hour to two hours on: open now, whatever the minute.
    let window = window_from_now(0, 2);
    let up = p.run(&["up", "--window", &window, "--format", "json"]);
    assert_eq!(up.code, 0, "{}", up.all());
    assert!(!up.stdout.contains("window_wait"), "{}", up.stdout);
    let yaml = std::fs::read_to_string(p.path().join("tenants.yaml")).unwrap();
    p.fleet(&format!("rollout:\n  window: \"Mon-Sun {window}\"\n{yaml}"));
    let plan = p.run(&["plan"]);
    assert!(
        plan.stdout
            .contains(&format!("change window `Mon-Sun {window}`: open now, until ")),
        "{}",
        plan.stdout
    );
    assert_eq!(p.run(&["down", "--steps", "1"]).code, 0);
    let closed = window_from_now(2, 1);
    p.fleet(&format!("rollout:\n  window: \"{closed}\"\n{yaml}"));
    let plan = p.run(&["plan", "--format", "json"]);
    let doc: Value = serde_json::from_str(&plan.stdout).unwrap();
    assert_eq!(doc["window"]["open"], false, "{doc}");
    assert!(
        doc["window"]["opens_at"]
            .as_str()
            .unwrap()
            .ends_with(":00:00+00:00[UTC]"),
        "{doc}"
    );
}

#[test]
fn a_closed_window_waits_says_when_it_opens_and_a_sigterm_stops_it_at_once() {
    let p = sqlite_fleet(&[("c1", true), ("a1", false), ("a2", false)], &[]);
    // Opens in two hours at the earliest: closed now.
    let window = window_from_now(2, 1);
    let mut up = Spawned::new(p.command(&["up", "--window", &window, "--format", "json", "--report", "report.json"]));
    let wait = up.wait_for(BOUND, |v| v["event"] == "window_wait");
    assert_eq!(wait["window"], window.as_str());
    assert_eq!(wait["wave"], 1);
    let opens_ms = wait["opens_at_ms"].as_u64().unwrap();
    let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64;
    assert!(
        opens_ms > now_ms + 3600 * 1000 && opens_ms <= now_ms + 2 * 3600 * 1000,
        "{wait}"
    );
    assert!(
        wait["opens_at"].as_str().unwrap().ends_with(":00:00+00:00[UTC]"),
        "{wait}"
    );
    let sent = std::time::Instant::now();
    up.signal("TERM");
    let (code, rest, stderr) = up.finish(BOUND);
    assert!(
        sent.elapsed() < Duration::from_secs(5),
        "a wait for the window ends at once"
    );
    assert_eq!(code, Some(1), "{rest:?}\n{stderr}");
    let r = report(&p);
    assert_eq!(r["stop_reason"]["kind"], "interrupted", "{r}");
    for t in r["tenants"].as_array().unwrap() {
        assert_eq!(t["status"], "not_started", "{t}");
    }
    // The window is the run's: a resume keeps it, and refuses another.
    let other = p.run(&["up", "--resume", "--window", "00:00-24:00 UTC"]);
    assert_eq!(other.code, 2, "{}", other.all());
    assert!(
        other
            .stderr
            .contains(&format!("was started with --window \"{window}\"")),
        "{}",
        other.stderr
    );
}

#[test]
fn a_bad_window_is_refused_naming_the_fleet_file_and_key() {
    let p = sqlite_fleet(&[("a1", false)], &[]);
    let yaml = std::fs::read_to_string(p.path().join("tenants.yaml")).unwrap();
    p.fleet(&format!(
        "rollout:\n  window: \"Mon-Fri 02:00-05:00 Europe/Copenhague\"\n{yaml}"
    ));
    let up = p.run(&["up"]);
    assert_eq!(up.code, 2, "{}", up.all());
    assert!(
        up.stderr.contains("tenants.yaml")
            && up.stderr.contains("rollout window")
            && up.stderr.contains("`Europe/Copenhague` is not a time zone"),
        "{}",
        up.stderr
    );
    let flag = sqlite_fleet(&[("a1", false)], &[]).run(&["up", "--window", "Mo-Fr 02:00-05:00 UTC"]);
    assert_eq!(flag.code, 2, "{}", flag.all());
    assert!(flag.stderr.contains("`Mo` is not a day"), "{}", flag.stderr);
}
