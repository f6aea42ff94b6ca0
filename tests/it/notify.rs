//! `--notify` and the fleet file's `notify:`: webhooks posted the run's start, each wave's
//! end, a stop and the finish, checked against a real HTTP listener on 127.0.0.1; one that
//! fails or hangs changes nothing in the run.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;

use crate::support::Project;

/// How the listener answers.
#[derive(Clone, Copy, PartialEq)]
enum Answer {
    Ok,
    Status500,
    /// Reads the request and never answers.
    Hang,
}

/// A webhook endpoint: every request's path and body, in order of arrival.
struct Endpoint {
    port: u16,
    got: Arc<Mutex<Vec<(String, String)>>>,
}

impl Endpoint {
    fn start(answer: Answer) -> Endpoint {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let got = Arc::new(Mutex::new(Vec::new()));
        let seen = got.clone();
        thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let seen = seen.clone();
                thread::spawn(move || serve(stream, answer, &seen));
            }
        });
        Endpoint { port, got }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn requests(&self) -> Vec<(String, String)> {
        self.got.lock().unwrap().clone()
    }
}

/// Answers the requests of one connection (ureq may keep it alive for the next post).
fn serve(stream: TcpStream, answer: Answer, seen: &Mutex<Vec<(String, String)>>) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut stream = stream;
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
            return;
        }
        let path = request_line.split_whitespace().nth(1).unwrap_or("").to_owned();
        let mut length = 0;
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header).unwrap_or(0) == 0 {
                return;
            }
            if header == "\r\n" {
                break;
            }
            match header.split_once(':') {
                Some((name, value)) if name.eq_ignore_ascii_case("content-length") => {
                    length = value.trim().parse().unwrap()
                }
                _ => {}
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body).unwrap();
        seen.lock().unwrap().push((path, String::from_utf8(body).unwrap()));
        match answer {
            Answer::Hang => loop {
                thread::park();
            },
            Answer::Ok => stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                .unwrap(),
            Answer::Status500 => stream
                .write_all(b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 4\r\n\r\nboom")
                .unwrap(),
        }
    }
}

fn project(notify: &str) -> Project {
    let p = Project::new();
    let mut fleet = String::from("defaults: { url: \"sqlite://data/{id}.db\" }\ntenants:\n");
    for id in ["a1", "a2", "a3", "a4"] {
        fleet.push_str(&format!("  - {{ id: {id} }}\n"));
    }
    fleet.push_str(notify);
    p.fleet(&fleet);
    p.migration("0001_a.up.sql", "CREATE TABLE a (id INTEGER PRIMARY KEY);\n");
    p.migration("0001_a.down.sql", "DROP TABLE a;\n");
    p
}

/// Each request's `event` field, for JSON bodies.
fn events(requests: &[(String, String)]) -> Vec<String> {
    requests
        .iter()
        .map(|(_, body)| {
            let doc: serde_json::Value = serde_json::from_str(body).unwrap();
            doc["event"].as_str().unwrap().to_owned()
        })
        .collect()
}

#[test]
fn webhooks_hear_the_start_each_wave_a_stop_and_the_finish() {
    let json = Endpoint::start(Answer::Ok);
    let slack = Endpoint::start(Answer::Ok);
    let p = project(&format!(
        "notify:\n  - {{ url: \"{}\", format: slack }}\n",
        slack.url("/services/T0/B0/${SLACK_TOKEN}")
    ));
    let hook = json.url("/hook?token=SECRET");
    let run = p.run_env(
        &["up", "--waves", "1,100%", "--notify", &hook],
        &[("SLACK_TOKEN", "XSECRET")],
    );
    assert_eq!(run.code, 0, "{}", run.all());
    let got = json.requests();
    assert_eq!(
        events(&got),
        ["run_started", "wave_finished", "wave_finished", "run_finished"]
    );
    assert!(got.iter().all(|(path, _)| path == "/hook?token=SECRET"), "{got:?}");
    let start: serde_json::Value = serde_json::from_str(&got[0].1).unwrap();
    let end: serde_json::Value = serde_json::from_str(&got[3].1).unwrap();
    assert_eq!(start["run_id"], end["run_id"]);
    assert_eq!(
        (start["command"].as_str(), start["tenants"].as_u64()),
        (Some("up"), Some(4))
    );
    assert_eq!(end["summary"]["succeeded"], 4);
    assert_eq!(end["stop_reason"]["kind"], "completed");

    let got = slack.requests();
    assert_eq!(got.len(), 4, "{got:?}");
    assert_eq!(
        got[0].0, "/services/T0/B0/XSECRET",
        "the token came from the environment"
    );
    let text: serde_json::Value = serde_json::from_str(&got[3].1).unwrap();
    let text = text["text"].as_str().unwrap();
    assert!(text.contains("4 tenant(s)") || text.contains("4 succeeded"), "{text}");

    // A run that stops says so.
    p.migration("0002_b.up.sql", "CREATE TABLE b (id INTEGER PRIMARY KEY);\n");
    p.migration("0002_b.down.sql", "DROP TABLE b;\n");
    crate::support::sqlite_rows(&p.db_path("a1"), "CREATE TABLE b (x INTEGER)");
    let run = p.run_env(&["up", "-j", "1", "--notify", &hook], &[("SLACK_TOKEN", "XSECRET")]);
    assert_eq!(run.code, 1, "{}", run.all());
    let got = json.requests();
    assert_eq!(
        events(&got[4..]),
        ["run_started", "stopping", "wave_finished", "run_finished"]
    );
    let stop: serde_json::Value = serde_json::from_str(&got[5].1).unwrap();
    assert_eq!(stop["reason"]["kind"], "max_failures");
    assert!(!run.all().contains("SECRET"), "{}", run.all());
}

/// A webhook that fails or never answers: the run's outcome and report are those of a
/// run without it, the rollout does not wait on it (its posts time out after 5s), and the
/// warning names the webhook without its token.
#[test]
fn a_failing_or_hanging_webhook_changes_nothing_in_the_run() {
    for answer in [Answer::Status500, Answer::Hang] {
        let endpoint = Endpoint::start(answer);
        let p = project("");
        let hook = endpoint.url("/services/T0/B0/SECRET");
        let run = p.run(&[
            "--format", "json", "up", "--waves", "1,100%", "--notify", &hook, "--report", "run.json",
        ]);
        assert_eq!(run.code, 0, "{}", run.all());
        let report: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(p.path().join("run.json")).unwrap()).unwrap();
        assert_eq!(report["summary"]["succeeded"], 4);
        let elapsed = report["summary"]["elapsed_ms"].as_u64().unwrap();
        assert!(elapsed < 4_000, "the rollout waited on the webhook: {elapsed} ms");
        let requests = endpoint.requests();
        assert!(!requests.is_empty(), "it was tried");
        if answer == Answer::Status500 {
            assert!(requests.len() >= 3, "retried: {requests:?}");
            assert!(run.stderr.contains("HTTP 500"), "{}", run.stderr);
        } else {
            assert!(
                run.stderr.contains("still posting after the run's end"),
                "{}",
                run.stderr
            );
        }
        assert!(
            run.stderr.contains("warning: notify http://127.0.0.1:"),
            "{}",
            run.stderr
        );
        assert!(run.stderr.contains("/services/***"), "{}", run.stderr);
        assert!(!run.all().contains("SECRET"), "{}", run.all());
        for id in ["a1", "a2", "a3", "a4"] {
            let tables = crate::support::sqlite_rows(&p.db_path(id), "SELECT name FROM sqlite_master WHERE name = 'a'");
            assert_eq!(tables.len(), 1, "{id}");
        }
    }
}

#[test]
fn bad_webhooks_are_refused_before_anything_runs() {
    let p = project("notify:\n  - \"ftp://example.com/x/SECRET\"\n");
    let run = p.run(&["up"]);
    assert_eq!(run.code, 2, "{}", run.all());
    assert!(run.stderr.contains("notify[0]"), "{}", run.stderr);
    assert!(run.stderr.contains("`ftp:` is not http or https"), "{}", run.stderr);
    assert!(!run.all().contains("SECRET"), "{}", run.all());
    let p = project("");
    let run = p.run(&["up", "--notify", "localhost:9/hook"]);
    assert_eq!(run.code, 2, "{}", run.all());
    assert!(run.stderr.contains("--notify"), "{}", run.stderr);
    assert!(!p.db_path("a1").exists(), "nothing ran");
}

/// SIGTERM while a webhook hangs: the run stops as it would without one, and the process
/// ends once the bounded wait for the webhook is over.
#[test]
fn sigterm_with_a_hanging_webhook_stops_the_run_within_its_bounds() {
    use std::time::{Duration, Instant};
    let endpoint = Endpoint::start(Answer::Hang);
    let p = project("");
    let hook = endpoint.url("/hook/SECRET");
    let mut run = crate::support::Spawned::new(p.command(&[
        "--format", "json", "up", "--waves", "1,100%", "--bake", "1h", "--notify", &hook, "--report", "run.json",
    ]));
    run.wait_for(Duration::from_secs(60), |v| v["event"] == "gate_started");
    let signalled = Instant::now();
    run.signal("TERM");
    let (code, _, stderr) = run.finish(Duration::from_secs(60));
    let took = signalled.elapsed();
    assert_eq!(code, Some(1), "{stderr}");
    assert!(took < Duration::from_secs(15), "took {took:?} after SIGTERM");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(p.path().join("run.json")).unwrap()).unwrap();
    assert_eq!(report["stop_reason"]["kind"], "interrupted", "{report}");
    assert_eq!(report["summary"]["succeeded"], 1, "{report}");
    assert_eq!(report["summary"]["not_started"], 3, "{report}");
    assert!(stderr.contains("still posting after the run's end"), "{stderr}");
    assert!(!stderr.contains("SECRET"), "{stderr}");
}
