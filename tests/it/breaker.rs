//! The breaker for dead hosts (`--host-failures`), against real sockets: a port that
//! refuses, a listener that accepts and never answers, and healthy SQLite tenants.

use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

use crate::support::Project;

/// A listener that accepts every connection and never says a word, holding the sockets
/// until it is dropped: a server that hangs.
struct Silent {
    port: u16,
    stop: Arc<AtomicBool>,
}

impl Silent {
    fn new() -> Silent {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let halt = stop.clone();
        std::thread::spawn(move || {
            let held = Mutex::new(Vec::new());
            while !halt.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((socket, _)) => held.lock().unwrap().push(socket),
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Silent { port, stop }
    }
}

impl Drop for Silent {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

const DEAD: usize = 30;

/// `DEAD` tenants `rNN` and `DEAD` tenants `hNN` at `dead_url(id)`, and 6 healthy SQLite
/// tenants.
fn fleet(p: &Project, dead_url: impl Fn(&str) -> String) {
    let mut yaml = String::from("tenants:\n");
    for id in (0..DEAD)
        .map(|n| format!("r{n:02}"))
        .chain((0..DEAD).map(|n| format!("h{n:02}")))
    {
        yaml.push_str(&format!("  - {{id: {id}, url: \"{}\"}}\n", dead_url(&id)));
    }
    for n in 0..6 {
        yaml.push_str(&format!("  - {{id: ok{n}, url: \"sqlite://data/ok{n}.db\"}}\n"));
    }
    p.fleet(&yaml);
}

#[test]
fn dead_hosts_are_cut_off_in_bounded_time_and_resume_tries_them_again() {
    let silent = Silent::new();
    let p = Project::new();
    std::fs::create_dir_all(p.path().join("data")).unwrap();
    // 30 tenants on a port that refuses, 30 on a server that never answers.
    fleet(&p, |id| match id.starts_with('r') {
        true => format!("postgres://fleet:s3cret@127.0.0.1:1/{id}"),
        false => format!("postgres://fleet:s3cret@127.0.0.1:{}/{id}", silent.port),
    });
    p.migration("0001_one.up.sql", "CREATE TABLE t1 (id INT);\n");
    let args = [
        "up",
        "--connect-timeout",
        "1s",
        "--retry-for",
        "1s",
        "--max-skipped",
        "all",
        "--report",
        "run.json",
    ];
    let run = p.run(&args);
    assert_eq!(run.code, 1, "skipped tenants exit 1: {run:?}");
    let report: Value = serde_json::from_str(&std::fs::read_to_string(p.path().join("run.json")).unwrap()).unwrap();
    let tenants = report["tenants"].as_array().unwrap();
    let status = |id: &str| tenants.iter().find(|t| t["id"] == id).unwrap()["status"].clone();
    for n in 0..6 {
        assert_eq!(status(&format!("ok{n}")), "succeeded", "{run:?}");
    }
    for t in tenants.iter().filter(|t| !t["id"].as_str().unwrap().starts_with("ok")) {
        assert_eq!(t["status"], "skipped", "{t}");
    }
    // Without the breaker each dead tenant costs its attempts: 30 x 1s and more on the
    // silent host alone. Not a speed target: a bound far under that.
    let elapsed = report["summary"]["elapsed_ms"].as_u64().unwrap();
    assert!(elapsed < 15_000, "{elapsed} ms: {run:?}");
    let cut = report["hosts_cut_off"].as_array().unwrap();
    let hosts: Vec<&str> = cut.iter().map(|h| h["host"].as_str().unwrap()).collect();
    let silent_host = format!("postgres://127.0.0.1:{}", silent.port);
    assert!(hosts.contains(&"postgres://127.0.0.1:1"), "{cut:?}");
    assert!(hosts.contains(&silent_host.as_str()), "{cut:?}");
    for h in cut {
        let skipped = h["skipped"].as_u64().unwrap() as usize;
        assert!(skipped > DEAD / 2, "most of its tenants were skipped untried: {h}");
    }
    let untried = tenants
        .iter()
        .filter(|t| t["error"].as_str().is_some_and(|e| e.contains("cut off: not tried")))
        .count();
    let skipped: u64 = cut.iter().map(|h| h["skipped"].as_u64().unwrap()).sum();
    assert_eq!(untried as u64, skipped);
    // The final report and the progress lines name the host; no password shows anywhere.
    let line = format!("host `{silent_host}` cut off after");
    assert!(run.stdout.contains(&line), "{}", run.stdout);
    assert!(run.stdout.contains("tenant(s) skipped untried"), "{}", run.stdout);
    // The line said when it happened (stdout, as the run's lines go without a terminal).
    let said = format!("host `{silent_host}` cut off: ");
    assert!(run.stdout.contains(&said), "{}", run.stdout);
    let all = format!("{}{}{}", run.stdout, run.stderr, report);
    assert!(!all.contains("s3cret"), "a password showed: {all}");

    // The hosts are mended (here: their tenants now live in SQLite files): `--resume`
    // takes the run's skipped tenants up again, and all of them reach the target.
    fleet(&p, |id| format!("sqlite://data/{id}.db"));
    let resumed = p.run(&["up", "--resume", "--format", "json"]);
    assert_eq!(resumed.code, 0, "{resumed:?}");
    let last: Value = serde_json::from_str(resumed.stdout.lines().last().unwrap()).unwrap();
    assert_eq!(last["summary"]["succeeded"], 2 * DEAD + 6, "{}", resumed.stdout);
}
