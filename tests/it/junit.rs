//! `--report run.xml`: the run as JUnit XML, one test suite per wave and one test case per
//! tenant, read back with an XML parser.

use crate::support::Project;

type Element = (String, Vec<(String, String)>);

/// Each element of `xml` as (path of element names, attributes), in document order.
fn elements(xml: &str) -> Vec<Element> {
    use quick_xml::events::{BytesStart, Event};
    let mut reader = quick_xml::Reader::from_str(xml);
    let mut path: Vec<String> = Vec::new();
    let mut out = Vec::new();
    let mut open = |e: &BytesStart, path: &mut Vec<String>| {
        path.push(String::from_utf8(e.name().as_ref().to_vec()).unwrap());
        let attrs = e
            .attributes()
            .map(|a| {
                let a = a.unwrap();
                let key = String::from_utf8(a.key.as_ref().to_vec()).unwrap();
                (
                    key,
                    a.normalized_value(quick_xml::XmlVersion::Implicit1_0)
                        .unwrap()
                        .into_owned(),
                )
            })
            .collect();
        out.push((path.join("/"), attrs));
    };
    loop {
        match reader.read_event().expect("well-formed XML") {
            Event::Start(e) => open(&e, &mut path),
            Event::Empty(e) => {
                open(&e, &mut path);
                path.pop();
            }
            Event::End(_) => {
                path.pop();
            }
            Event::Eof => break,
            _ => {}
        }
    }
    out
}

fn attr<'a>(e: &'a Element, key: &str) -> &'a str {
    e.1.iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("no {key} in {e:?}"))
}

#[test]
fn the_report_as_junit_xml_has_a_suite_per_wave_and_a_case_per_tenant() {
    let p = Project::new();
    p.fleet(
        "defaults: { url: \"sqlite://data/{id}.db\" }\ntenants:\n  - { id: c1, canary: true }\n  - { id: a1 }\n  - { id: a2 }\n  - { id: a3 }\n",
    );
    p.migration("0001_a.up.sql", "CREATE TABLE a (id INTEGER PRIMARY KEY);\n");
    p.migration("0001_a.down.sql", "DROP TABLE a;\n");
    p.migration("0002_b.up.sql", "CREATE TABLE b (id INTEGER PRIMARY KEY);\n");
    p.migration("0002_b.down.sql", "DROP TABLE b;\n");
    // a2 already holds a table `b`: its migration 2 fails with SQLite's error.
    std::fs::create_dir_all(p.path().join("data")).unwrap();
    std::fs::File::create(p.db_path("a2")).unwrap();
    crate::support::sqlite_rows(&p.db_path("a2"), "CREATE TABLE b (x INTEGER)");
    let run = p.run(&["up", "-j", "1", "--rollback", "failed", "--report", "run.xml"]);
    assert_eq!(run.code, 1, "{}", run.all());
    let xml = std::fs::read_to_string(p.path().join("run.xml")).unwrap();
    let all = elements(&xml);
    let suites: Vec<&str> = all
        .iter()
        .filter(|e| e.0 == "testsuites/testsuite")
        .map(|e| attr(e, "name"))
        .collect();
    assert_eq!(suites, ["wave 1", "wave 2"], "{xml}");
    let cases: Vec<(&str, &str)> = all
        .iter()
        .filter(|e| e.0 == "testsuites/testsuite/testcase")
        .map(|e| (attr(e, "name"), attr(e, "classname")))
        .collect();
    assert_eq!(cases.len(), 4, "{xml}");
    assert!(cases.contains(&("c1", "fleetmig.up.wave1")), "{cases:?}");
    let failure = all
        .iter()
        .find(|e| e.0 == "testsuites/testsuite/testcase/failure")
        .unwrap_or_else(|| panic!("no failure in {xml}"));
    assert_eq!(attr(failure, "type"), "rolled_back");
    let message = attr(failure, "message");
    assert!(
        message.starts_with("migration 2: ") && message.contains("already exists"),
        "{message}"
    );
    let root = &all[0];
    assert_eq!(attr(root, "tests"), "4");
    assert_eq!(attr(root, "failures"), "1");
    // The tenant after the stop was not started: skipped, not passed.
    let skipped = all
        .iter()
        .filter(|e| e.0 == "testsuites/testsuite/testcase/skipped")
        .count();
    assert_eq!(skipped, 1, "{xml}");
}
