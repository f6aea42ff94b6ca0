//! `--report run.html` and `report RUN --html`: the page is opened in headless Chromium
//! and the DOM it built (after its script ran) is read back, as is a screenshot's size.
//! Chromium is Debian's `chromium` (`FLEETMIG_CHROMIUM`, else on the PATH); without it these
//! tests say SKIPPED, unless `FLEETMIG_REQUIRE_TOOLS=1` makes that a failure.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::{Pg, Project, sqlite_fleet, stock_tool};

/// An element of the DOM Chromium dumped: its name, attributes, children and text.
#[derive(Debug, Default)]
struct Node {
    name: String,
    attrs: Vec<(String, String)>,
    children: Vec<Node>,
    /// Its own text, not its children's.
    text: String,
}

impl Node {
    fn attr(&self, key: &str) -> Option<&str> {
        self.attrs.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    fn has_class(&self, class: &str) -> bool {
        self.attr("class").is_some_and(|c| c.split(' ').any(|c| c == class))
    }

    /// Every element under this one (and itself) that `pred` accepts, in document order.
    fn all(&self, pred: &dyn Fn(&Node) -> bool) -> Vec<&Node> {
        let mut out = Vec::new();
        if pred(self) {
            out.push(self);
        }
        for c in &self.children {
            out.extend(c.all(pred));
        }
        out
    }

    fn by_id(&self, id: &str) -> &Node {
        self.all(&|n| n.attr("id") == Some(id))
            .into_iter()
            .next()
            .unwrap_or_else(|| panic!("no #{id}"))
    }

    /// All its text, its children's included.
    fn text(&self) -> String {
        let mut s = self.text.clone();
        for c in &self.children {
            s.push_str(&c.text());
        }
        s
    }
}

/// Elements HTML never closes.
const VOID: [&str; 6] = ["meta", "input", "br", "img", "link", "hr"];

/// The DOM as Chromium serialised it, as a tree. Script and style bodies are dropped (they
/// are not markup); void elements are closed; the rest is well-formed as Chromium writes it.
fn parse(dom: &str) -> Node {
    use quick_xml::events::{BytesStart, Event};
    let mut text = String::new();
    let mut rest = dom;
    // Whichever of the two comes first.
    let next = |s: &str| {
        [("<script", "</script>"), ("<style", "</style>")]
            .into_iter()
            .filter_map(|(open, close)| s.find(open).map(|at| (at, close)))
            .min()
    };
    while let Some((at, end)) = next(rest) {
        let open_end = at + rest[at..].find('>').unwrap() + 1;
        let close = rest[open_end..].find(end).unwrap() + open_end;
        text.push_str(&rest[..open_end]);
        rest = &rest[close..];
    }
    text.push_str(rest);
    let mut reader = quick_xml::Reader::from_str(&text);
    reader.config_mut().check_end_names = false;
    let mut stack = vec![Node::default()];
    let node = |e: &BytesStart| Node {
        name: String::from_utf8(e.name().as_ref().to_vec()).unwrap(),
        attrs: e
            .html_attributes()
            .map(|a| {
                let a = a.unwrap();
                let raw = String::from_utf8(a.value.to_vec()).unwrap();
                (
                    String::from_utf8(a.key.as_ref().to_vec()).unwrap(),
                    quick_xml::escape::unescape(&raw).unwrap().into_owned(),
                )
            })
            .collect(),
        ..Node::default()
    };
    loop {
        match reader.read_event().unwrap_or_else(|e| panic!("{e} in {text}")) {
            Event::Start(e) => {
                let n = node(&e);
                if VOID.contains(&n.name.as_str()) {
                    stack.last_mut().unwrap().children.push(n);
                } else {
                    stack.push(n);
                }
            }
            Event::Empty(e) => stack.last_mut().unwrap().children.push(node(&e)),
            Event::End(_) => {
                let done = stack.pop().unwrap();
                stack.last_mut().unwrap().children.push(done);
            }
            Event::Text(t) => stack.last_mut().unwrap().text.push_str(&t.decode().unwrap()),
            Event::GeneralRef(r) => {
                let c = match r.resolve_char_ref().unwrap() {
                    Some(c) => c,
                    None => match r.decode().unwrap().as_ref() {
                        "amp" => '&',
                        "lt" => '<',
                        "gt" => '>',
                        "quot" => '"',
                        "apos" => '\'',
                        "nbsp" => '\u{a0}',
                        other => panic!("entity &{other};"),
                    },
                };
                stack.last_mut().unwrap().text.push(c);
            }
            Event::Eof => break,
            _ => {}
        }
    }
    assert_eq!(stack.len(), 1, "unclosed elements in {text}");
    stack.pop().unwrap()
}

/// Headless Chromium, or `None` (said SKIPPED) when it is not installed and not required.
fn chromium() -> Option<PathBuf> {
    stock_tool("chromium")
}

/// Chromium without a window, with `profile` its own: parallel tests must not share one.
fn headless(chromium: &Path, profile: &tempfile::TempDir) -> Command {
    let mut cmd = Command::new(chromium);
    cmd.args(["--headless", "--disable-gpu", "--no-sandbox", "--no-first-run"])
        .arg(format!("--user-data-dir={}", profile.path().display()));
    cmd
}

/// The DOM of `page` after its script ran, `hash` added to its URL.
fn dom(chromium: &Path, page: &Path, hash: &str) -> Node {
    dom_with(chromium, page, hash, &[])
}

fn dom_with(chromium: &Path, page: &Path, hash: &str, flags: &[&str]) -> Node {
    let url = format!("file://{}{hash}", page.display());
    let profile = tempfile::tempdir().unwrap();
    let out = headless(chromium, &profile)
        .args(flags)
        .args(["--virtual-time-budget=2000", "--dump-dom", &url])
        .output()
        .unwrap();
    let html = String::from_utf8(out.stdout).unwrap();
    assert!(
        html.contains("</html>"),
        "chromium printed no DOM: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    parse(&html)
}

/// A screenshot of `page` 1280 wide; returns its width, height and size in bytes.
fn screenshot(chromium: &Path, page: &Path, png: &Path) -> (u32, u32, usize) {
    let url = format!("file://{}", page.display());
    let profile = tempfile::tempdir().unwrap();
    let out = headless(chromium, &profile)
        .arg(format!("--screenshot={}", png.display()))
        .args(["--window-size=1280,2000", "--hide-scrollbars", &url])
        .output()
        .unwrap();
    let bytes =
        std::fs::read(png).unwrap_or_else(|e| panic!("no screenshot ({e}): {}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "not a PNG");
    assert_eq!(&bytes[12..16], b"IHDR");
    let be = |at: usize| u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap());
    (be(16), be(20), bytes.len())
}

/// The timeline's tenant rows (aggregate rows too), and those the filter left visible.
fn rows(root: &Node) -> (Vec<&Node>, Vec<&Node>) {
    let all = root.all(&|n| n.name == "tr" && n.has_class("t"));
    let shown = all.iter().copied().filter(|r| r.attr("hidden").is_none()).collect();
    (all, shown)
}

/// Types `a4` into run.html's filter box, as a person would, and reports what it shows.
const TYPING: &str = r#"<!DOCTYPE html><html><body><iframe id="report" src="run.html"></iframe><p id="out">not loaded</p>
<script>
document.getElementById('report').addEventListener('load', function () {
  var d = this.contentDocument;
  var box = d.getElementById('filter');
  box.value = 'a4';
  box.dispatchEvent(new Event('input'));
  var shown = Array.prototype.filter.call(d.querySelectorAll('tr.t'), function (r) { return !r.hidden; });
  var ids = shown.map(function (r) { return r.dataset.id; }).join(',');
  document.getElementById('out').textContent = ids + '|' + d.getElementById('shown').textContent + '|' + d.location.hash;
});
</script></body></html>"#;

#[test]
fn a_sqlite_run_reads_as_a_page_in_chromium_and_the_ledger_renders_the_same() {
    let Some(chromium) = chromium() else { return };
    let ids = [
        ("c1", true),
        ("a1", false),
        ("a2", false),
        ("a3", false),
        ("a4", false),
        ("a5", false),
    ];
    let p = sqlite_fleet(&ids, &["a2"]);
    let run = p.run(&[
        "up",
        "-j",
        "1",
        "--max-failures",
        "3",
        "--bake",
        "300ms",
        "--check",
        "SELECT 1 = 1",
        "--report",
        "run.html",
        "--format",
        "json",
    ]);
    assert_eq!(run.code, 1, "{}", run.all());
    let run_id = run
        .stdout
        .lines()
        .find_map(|l| {
            l.split("\"run_id\":\"")
                .nth(1)
                .map(|r| r.split('"').next().unwrap().to_owned())
        })
        .unwrap_or_else(|| panic!("no run id in {}", run.stdout));
    let page = p.path().join("run.html");
    let root = dom(&chromium, &page, "");

    let stop = root.by_id("stop-reason").text();
    assert!(stop.starts_with("stop reason: "), "{stop}");
    let failures = root.by_id("failures");
    let cards = failures.all(&|n| n.name == "article");
    assert_eq!(cards.len(), 1, "{}", failures.text());
    assert_eq!(cards[0].attr("data-id"), Some("a2"));
    assert!(cards[0].has_class("s-rolled_back"), "{:?}", cards[0].attrs);
    let message = cards[0].all(&|n| n.has_class("message"))[0].text();
    assert!(message.contains("already exists"), "{message}");
    assert!(cards[0].text().contains("migration 3"), "{}", cards[0].text());

    // One row per tenant, grouped by wave, coloured by outcome, each with its bar.
    let (all, shown) = rows(&root);
    assert_eq!(all.len(), 6);
    assert_eq!(shown.len(), 6);
    let waves = root.all(&|n| n.name == "tbody" && n.has_class("wave"));
    assert_eq!(waves.len(), 2);
    let in_wave = |w: &Node| -> Vec<String> {
        w.all(&|n| n.name == "tr" && n.has_class("t"))
            .iter()
            .map(|r| r.attr("data-id").unwrap().to_owned())
            .collect()
    };
    assert_eq!(in_wave(waves[0]), ["c1"]);
    assert_eq!(in_wave(waves[1]), ["a1", "a2", "a3", "a4", "a5"]);
    for row in &all {
        let bars = row.all(&|n| n.has_class("b"));
        // The rolled-back tenant has a second bar: its rollback, after the wave.
        let rolled_back = row.attr("data-status") == Some("rolled_back");
        assert_eq!(bars.len(), 1 + usize::from(rolled_back), "{:?}", row.attrs);
        assert!(bars[0].attr("style").unwrap().contains("width:"));
    }
    let a2 = all.iter().find(|r| r.attr("data-id") == Some("a2")).unwrap();
    assert_eq!(a2.attr("data-status"), Some("rolled_back"));
    assert!(a2.all(&|n| n.has_class("b"))[1].has_class("rb"));
    // The gates after wave 1, marked in the timeline.
    let gates: Vec<String> = waves[0]
        .all(&|n| n.has_class("gate"))
        .iter()
        .map(|g| g.text())
        .collect();
    assert_eq!(gates.len(), 2, "{gates:?}");
    assert!(
        gates[0].starts_with("check ") && gates[0].contains("passed on 1/1"),
        "{gates:?}"
    );
    assert!(
        gates[1].starts_with("bake ") && gates[1].contains("passed"),
        "{gates:?}"
    );
    // Versions before (all at 0) and after (a2 rolled back to 0).
    let hist = root
        .by_id("versions")
        .all(&|n| n.name == "tr" && n.attr("data-version").is_some());
    let counts: Vec<(String, String, String)> = hist
        .iter()
        .map(|r| {
            let tds = r.all(&|n| n.name == "td");
            (tds[0].text(), tds[1].text(), tds[2].text())
        })
        .collect();
    assert_eq!(
        counts,
        [
            ("0".into(), "6".into(), "1".into()),
            ("4".into(), "0".into(), "5".into())
        ]
    );

    // The filter, from the URL: by tenant id, and by status.
    let by_id = dom(&chromium, &page, "#filter=a3");
    let (_, shown) = rows(&by_id);
    let ids: Vec<&str> = shown.iter().map(|r| r.attr("data-id").unwrap()).collect();
    assert_eq!(ids, ["a3"]);
    let filtered = dom(&chromium, &page, "#filter=rolled_back");
    assert_eq!(filtered.by_id("shown").text(), "1 of 6 rows match");
    assert_eq!(
        filtered.by_id("filter").attr("value"),
        None,
        "the input's value is a property"
    );

    // Typing in the box: a page beside the report types into it (in a frame) and copies out
    // the rows left visible, the count shown and the address.
    let typing = p.path().join("typing.html");
    std::fs::write(&typing, TYPING).unwrap();
    let typed = dom_with(&chromium, &typing, "", &["--allow-file-access-from-files"]);
    assert_eq!(typed.by_id("out").text(), "a4|1 of 6 rows match|#filter=a4");

    let (width, height, size) = screenshot(&chromium, &page, &p.path().join("run.png"));
    assert_eq!((width, height), (1280, 2000));
    assert!(size > 20_000, "{size} bytes: a blank page?");

    // The ledger keeps the timing: the page `report RUN --html` writes is the same page.
    let again = p.run(&["report", &run_id, "--html", "again.html"]);
    assert_eq!(again.code, 1, "{}", again.all());
    let from_ledger = std::fs::read_to_string(p.path().join("again.html")).unwrap();
    assert_eq!(from_ledger, std::fs::read_to_string(&page).unwrap());
}

#[test]
fn a_postgres_failure_shows_its_code_detail_and_hint_and_injects_nothing() {
    let Some(chromium) = chromium() else { return };
    let Some(pg) = Pg::create("html") else { return };
    let p = Project::new();
    p.fleet(&format!(
        "hosts: {{ pg: {{ url: \"{}\" }} }}\ndefaults: {{ host: pg, schema: \"s_{{id}}\" }}\ntenants:\n  - {{ id: acme }}\n  - {{ id: globex }}\n",
        pg.url()
    ));
    p.migration(
        "0001_accounts.up.sql",
        "CREATE TABLE accounts (id int PRIMARY KEY, balance int);\n",
    );
    p.migration("0001_accounts.down.sql", "DROP TABLE accounts;\n");
    p.migration(
        "0002_check_balances.up.sql",
        "DO $$ BEGIN\n  IF current_schema() = 's_globex' THEN\n    RAISE EXCEPTION 'balance of account % is negative <script>document.body.dataset.pwned = 1</script>', 7\n      USING DETAIL = 'Key (id)=(7) has balance -12 \"owed\" & <b>overdrawn</b>',\n            HINT = 'Run fix_balances() first, then rerun.',\n            ERRCODE = 'check_violation';\n  END IF;\nEND $$;\n",
    );
    p.migration("0002_check_balances.down.sql", "SELECT 1;\n");
    let run = p.run(&[
        "up",
        "-j",
        "1",
        "--max-failures",
        "all",
        "--rollback",
        "none",
        "--report",
        "run.htm",
    ]);
    assert_eq!(run.code, 1, "{}", run.all());
    let page = p.path().join("run.htm");
    let root = dom(&chromium, &page, "");
    let body = root.all(&|n| n.name == "body")[0];
    assert_eq!(body.attr("data-pwned"), None, "a script in an error message ran");
    assert_eq!(root.all(&|n| n.name == "script").len(), 1);
    let failures = root.by_id("failures");
    assert_eq!(
        failures.all(&|n| n.name == "b").len(),
        0,
        "markup in DETAIL became markup"
    );
    let cards = failures.all(&|n| n.name == "article");
    assert_eq!(cards.len(), 1);
    let card = cards[0];
    assert_eq!(card.attr("data-id"), Some("globex"));
    let field = |class: &str| {
        card.all(&|n| n.name == "dd" && n.has_class(class))
            .first()
            .map(|n| n.text())
            .unwrap_or_else(|| panic!("no {class} in {}", card.text()))
    };
    assert_eq!(field("code"), "23514");
    assert_eq!(
        field("detail"),
        "Key (id)=(7) has balance -12 \"owed\" & <b>overdrawn</b>"
    );
    assert_eq!(field("hint"), "Run fix_balances() first, then rerun.");
    let message = field("message");
    assert!(
        message.contains("balance of account 7 is negative <script>document.body.dataset.pwned = 1</script>"),
        "{message}"
    );
    assert!(!message.contains("DETAIL"), "{message}");
    let (all, _) = rows(&root);
    let statuses: Vec<(&str, &str)> = all
        .iter()
        .map(|r| (r.attr("data-id").unwrap(), r.attr("data-status").unwrap()))
        .collect();
    assert_eq!(statuses, [("acme", "succeeded"), ("globex", "failed")]);
}

#[test]
fn a_ten_thousand_tenant_report_is_bounded_and_its_filter_finds_an_aggregated_tenant() {
    use fleetmig::model::migration::Version;
    use fleetmig::model::policy::StopReason;
    use fleetmig::model::run::{FinalTenant, RunReport, Status, WaveReport, summarize};
    let tenants: Vec<FinalTenant> = (0..10_000u64)
        .map(|i| {
            let wave = match i {
                0..=9 => 1,
                10..=999 => 2,
                _ => 3,
            };
            let status = if i % 1_000 == 7 {
                Status::Failed
            } else {
                Status::Succeeded
            };
            FinalTenant {
                started_ms: Some(i * 3),
                finished_ms: Some(i * 3 + 50),
                migrations_run: 1,
                error: (status == Status::Failed).then(|| "applying 0002_b: boom (code 23514)".to_owned()),
                ..FinalTenant::new(
                    format!("tenant-{i:05}"),
                    wave,
                    status,
                    Some(Version::int(1)),
                    Some(Version::int(2)),
                )
            }
        })
        .collect();
    let summary = summarize(&tenants, std::time::Duration::from_secs(31));
    let waves = [(1, 10), (2, 990), (3, 9_000)]
        .map(|(w, n)| WaveReport::new(w, w == 1, n, Default::default()))
        .to_vec();
    let report = RunReport {
        run_id: "r-10k".into(),
        command: "up".into(),
        stop_reason: StopReason::Completed,
        waves,
        tenants,
        summary,
        hosts_cut_off: Vec::new(),
    };
    let page = fleetmig::internal::html_report(&report, None);
    assert!(page.len() < 1_000_000, "{} bytes for 10,000 tenants", page.len());
    let Some(chromium) = chromium() else { return };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("10k.html");
    std::fs::write(&path, &page).unwrap();
    let root = dom(&chromium, &path, "");
    let (all, shown) = rows(&root);
    assert_eq!(all.len(), shown.len());
    assert!(all.len() < 1_200, "{} rows", all.len());
    assert_eq!(root.by_id("failures").all(&|n| n.name == "article").len(), 10);
    // tenant-04321 succeeded in wave 3, past its row limit: an aggregate row stands for it.
    let filtered = dom(&chromium, &path, "#filter=tenant-04321");
    let (all, shown) = rows(&filtered);
    assert_eq!(shown.len(), 1, "{}", filtered.by_id("shown").text());
    assert!(shown[0].has_class("agg"));
    assert!(
        shown[0]
            .attr("data-id")
            .unwrap()
            .split(' ')
            .any(|id| id == "tenant-04321")
    );
    assert_eq!(filtered.by_id("shown").text(), format!("1 of {} rows match", all.len()));
    // A failure past the limit still has its own row.
    let failure = dom(&chromium, &path, "#filter=tenant-09007");
    let (_, shown) = rows(&failure);
    assert_eq!(shown.len(), 1);
    assert_eq!(shown[0].attr("data-status"), Some("failed"));
    assert!(!shown[0].has_class("agg"));
}
