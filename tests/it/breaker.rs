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
    let line = format!("host `{silent_host}` cut off at +");
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

/// `REFUSED` tenants `rNN` on a port that refuses, and 2 healthy SQLite tenants.
const REFUSED: usize = 60;

fn refusing_fleet(p: &Project) {
    std::fs::create_dir_all(p.path().join("data")).unwrap();
    let mut yaml = String::from("tenants:\n");
    for n in 0..REFUSED {
        yaml.push_str(&format!(
            "  - {{id: r{n:02}, url: \"postgres://u@127.0.0.1:1/r{n:02}\"}}\n"
        ));
    }
    for n in 0..2 {
        yaml.push_str(&format!("  - {{id: ok{n}, url: \"sqlite://data/ok{n}.db\"}}\n"));
    }
    p.fleet(&yaml);
    p.migration("0001_one.up.sql", "CREATE TABLE t1 (id INT);\n");
}

#[test]
fn a_cut_off_host_is_one_line_of_text_a_table_in_the_reports_and_resume_keeps_its_k() {
    let p = Project::new();
    refusing_fleet(&p);
    let host = "postgres://127.0.0.1:1";
    let run = p.run(&[
        "up",
        "--host-failures",
        "2",
        "--retry-for",
        "0s",
        "--max-skipped",
        "all",
        "--report",
        "run.md",
    ]);
    assert_eq!(run.code, 1, "{run:?}");
    // One tenant of the unproven host at a time: the first two were tried, the rest not.
    let untried = REFUSED - 2;
    let line = format!("host `{host}`: {untried} tenant(s) skipped untried, the host cut off");
    assert_eq!(run.stdout.matches(&line).count(), 1, "{}", run.stdout);
    assert!(
        !run.stdout.contains("cut off: not tried"),
        "no line per tenant skipped untried: {}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains(&format!("{untried} skipped untried (host cut off): r02, r03")),
        "the final table counts them: {}",
        run.stdout
    );
    assert!(
        run.stdout.contains(&format!("host `{host}` cut off at +")),
        "{}",
        run.stdout
    );

    let md = std::fs::read_to_string(p.path().join("run.md")).unwrap();
    assert!(md.contains("## Hosts cut off (`--host-failures`)"), "{md}");
    let row = md
        .lines()
        .find(|l| l.starts_with(&format!("| `{host}` | +")))
        .unwrap_or_else(|| panic!("{md}"));
    assert!(row.ends_with(&format!("| {untried} | no |")), "{row}");
    assert!(row.contains("| 2 | connecting: "), "{row}");
    assert!(
        md.contains("| r59 | 1 | skipped |"),
        "the Markdown lists every tenant: {md}"
    );

    let run_id = run
        .stdout
        .lines()
        .find_map(|l| l.split("(run ").nth(1))
        .map(|r| r.trim_end_matches(')').to_owned())
        .unwrap();
    let shown = p.run(&["report", &run_id, "--html", "run.html"]);
    let html = std::fs::read_to_string(p.path().join("run.html")).unwrap_or_else(|e| panic!("{e}: {shown:?}"));
    let section = html
        .split("<section id=\"hosts-cut-off\">")
        .nth(1)
        .and_then(|s| s.split("</section>").next())
        .unwrap_or_else(|| panic!("no hosts-cut-off section: {html}"));
    assert!(
        section.contains(&format!("<td><code>{host}</code></td><td>+")),
        "{section}"
    );
    assert!(section.contains(&format!("<td>{untried}</td><td>no</td>")), "{section}");

    // --resume keeps the run's --host-failures: another value is refused, and without
    // the flag the run goes on with 2 (the default is 3).
    let refused = p.run(&["up", "--resume", "--host-failures", "5"]);
    assert_eq!(refused.code, 2, "{refused:?}");
    assert!(
        refused.stderr.contains("--host-failures 5: run `") && refused.stderr.contains("with --host-failures 2"),
        "{refused:?}"
    );
    let resumed = p.run(&["up", "--resume", "--report", "again.json"]);
    assert_eq!(resumed.code, 1, "{resumed:?}");
    let report: Value = serde_json::from_str(&std::fs::read_to_string(p.path().join("again.json")).unwrap()).unwrap();
    let cut = &report["hosts_cut_off"][0];
    assert_eq!(
        (cut["failures"].as_u64(), cut["skipped"].as_u64()),
        (Some(2), Some(untried as u64)),
        "{report}"
    );
}
