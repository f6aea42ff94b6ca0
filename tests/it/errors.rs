//! What a tenant's error says: PostgreSQL's DETAIL and HINT, MySQL's error number, who
//! holds a lock, and how long lock waits and retries may take in all.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::{self, My, Pg, Project, Run, tenant_line};

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let until = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(Instant::now() < until, "{what} did not happen within 30 s");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn pg_project(pg: &Pg) -> Project {
    let p = Project::new();
    p.fleet(&format!(
        "hosts: {{ pg: {{ url: \"{}\" }} }}\ndefaults: {{ host: pg, schema: \"s_{{id}}\" }}\ntenants:\n  - {{ id: acme }}\n",
        pg.url()
    ));
    p
}

/// The JSON lines of a run's stdout.
fn json_lines(run: &Run) -> Vec<Value> {
    run.stdout
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn finished(events: &[Value]) -> &Value {
    events
        .iter()
        .find(|v| v["event"] == "tenant_finished")
        .unwrap_or_else(|| panic!("no tenant_finished in {events:?}"))
}

/// The error of a finished tenant, wherever the JSON puts it.
fn error_of(finished: &Value) -> &Value {
    let report = if finished["report"].is_object() {
        &finished["report"]
    } else {
        finished
    };
    if report["error"].is_object() {
        &report["error"]
    } else {
        &report["reason"]["error"]
    }
}

fn retries(events: &[Value]) -> Vec<&Value> {
    events
        .iter()
        .filter(|v| v["event"] == "retrying" || v["event"] == "step_retried")
        .collect()
}

fn run_id(events: &[Value]) -> String {
    events
        .iter()
        .find_map(|v| v["run_id"].as_str())
        .expect("a run id")
        .to_owned()
}

/// The `application_name` of this test's lock holder: its own, as other tests (of other
/// runs too) end sessions named `holder`.
fn holder_name(pg: &Pg) -> String {
    format!("{}_holder", pg.name)
}

/// A `psql` session running `sql` (it should end in a long sleep) once it holds its lock;
/// ended by [`end_holder`].
fn pg_holder(pg: &Pg, sql: &str) -> Child {
    let child = Command::new("psql")
        .args(["-X", "-q", &pg.url(), "-c", sql])
        .env("PGAPPNAME", holder_name(pg))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Its lock is taken: fleetmig's advisory lock, or one on the tenant's table.
    let holding = format!(
        "SELECT count(*)::text FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid \
         WHERE a.application_name = '{}' AND l.granted \
         AND (l.locktype = 'advisory' OR l.relation = to_regclass('s_acme.t'))",
        holder_name(pg)
    );
    wait_until("the holder's lock", || pg.column(&holding)[0] == "1");
    child
}

/// A session holding schema-tenant `acme`'s fleetmig lock on `pg` for a minute.
fn hold_acme(pg: &Pg) -> Child {
    pg_holder(
        pg,
        &format!(
            "SELECT pg_advisory_lock(hashtextextended('fleetmig/{}/s_acme', 0)); SELECT pg_sleep(60);",
            pg.name
        ),
    )
}

fn end_holder(pg: &Pg, mut holder: Child) {
    pg.exec(&format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = '{}'",
        holder_name(pg)
    ));
    let _ = holder.wait();
}

#[test]
fn postgres_detail_hint_and_line_reach_the_report_the_json_and_the_ledger() {
    let Some(pg) = Pg::create("detail") else { return };
    let p = pg_project(&pg);
    p.migration(
        "0001_users.up.sql",
        "CREATE TABLE users (email text); INSERT INTO users VALUES ('a@x'), ('a@x');",
    );
    p.migration(
        "0002_unique.up.sql",
        "CREATE UNIQUE INDEX users_email ON users (email);",
    );
    let text = p.run(&["up"]);
    assert_eq!(text.code, 1, "{}", text.all());
    let line = tenant_line(&text.stdout, "acme");
    insta::assert_snapshot!("postgres_detail_line", line);

    let json = p.run(&["up", "--format", "json"]);
    let events = json_lines(&json);
    let error = error_of(finished(&events));
    assert_eq!(error["code"], "23505", "{error}");
    assert_eq!(error["detail"], "Key (email)=(a@x) is duplicated.", "{error}");
    assert_eq!(error["table"], "users", "{error}");
    let report = p.run(&["report", &run_id(&events)]);
    assert!(
        report.stdout.contains("DETAIL: Key (email)=(a@x) is duplicated."),
        "the ledger keeps the DETAIL: {}",
        report.all()
    );
    // A PostgreSQL ledger keeps it too, and the report files say it.
    let ledger = pg.url();
    let md = p.run(&["up", "--ledger", &ledger, "--format", "json", "--report", "r.md"]);
    let md_text = std::fs::read_to_string(p.path().join("r.md")).unwrap();
    assert!(
        md_text.contains("DETAIL: Key (email)=(a@x) is duplicated."),
        "{md_text}"
    );
    let id = run_id(&json_lines(&md));
    let again = p.run(&["report", &id, "--ledger", &ledger]);
    assert!(
        again.stdout.contains("DETAIL: Key (email)=(a@x) is duplicated."),
        "a PostgreSQL ledger keeps the DETAIL: {}",
        again.all()
    );
    let doc = p.run(&["report", &id, "--ledger", &ledger, "--format", "json"]);
    let doc: Value = serde_json::from_str(&doc.stdout).unwrap_or_else(|e| panic!("{e}: {}", doc.all()));
    assert_eq!(doc["tenants"][0]["error_code"], "23505", "{doc}");
    assert!(doc["tenants"][0].get("error_number").is_none(), "{doc}");

    // A HINT, and the line of the script the server placed the error on.
    p.migration(
        "0002_unique.up.sql",
        "-- counts\nSELECT count(*)\n  FROM users WHERE lenght(email) > 3;",
    );
    let json = p.run(&["up", "--format", "json"]);
    let events = json_lines(&json);
    let error = error_of(finished(&events));
    assert_eq!(error["code"], "42883", "{error}");
    assert!(
        error["hint"].as_str().unwrap().contains("No function matches"),
        "{error}"
    );
    assert_eq!(error["line"], 3, "{error}");
    let report = p.run(&["report", &run_id(&events)]);
    let line = tenant_line(&report.stdout, "acme");
    assert!(
        line.contains("(code 42883) at line 3; HINT: No function matches"),
        "{}",
        report.all()
    );
}

/// A `mysql` session running `sql`, then sleeping in a statement this test can find.
fn my_holder(my: &My, sql: &str) -> Child {
    let child = Command::new("mysql")
        .args([
            "-h127.0.0.1",
            "-uroot",
            "-e",
            &format!("{sql} SELECT SLEEP(60) AS {};", my.prefix),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_until("the holder's lock", || !sleepers(my).is_empty());
    child
}

fn sleepers(my: &My) -> Vec<String> {
    my.column(&format!(
        "SELECT CAST(ID AS CHAR) FROM information_schema.PROCESSLIST WHERE INFO LIKE 'SELECT SLEEP(60) AS {}%' \
         AND ID <> CONNECTION_ID()",
        my.prefix
    ))
}

/// Ends the session [`my_holder`] started.
fn kill_sleeper(my: &My, mut holder: Child) {
    for id in sleepers(my) {
        my.exec(&format!("KILL {id}"));
    }
    let _ = holder.wait();
}

#[test]
fn mariadb_lock_wait_timeout_shows_its_number_and_is_retried() {
    let Some(my) = My::create("lockwait") else { return };
    let p = Project::new();
    let db = format!("{}_acme", my.prefix);
    p.fleet(&format!(
        "hosts:\n  my: {{ url: \"{}\" }}\n\
         defaults: {{ host: my, database: \"{}_{{id}}\", init_sql: \"SET SESSION innodb_lock_wait_timeout = 1\" }}\n\
         tenants:\n  - {{ id: acme }}\n",
        support::MYSQL_ADMIN,
        my.prefix
    ));
    p.migration(
        "0001_t.up.sql",
        "CREATE TABLE t (id INT PRIMARY KEY, v INT) ENGINE=InnoDB; INSERT INTO t VALUES (1, 0);",
    );
    p.migration("0002_v.up.sql", "-- set it\nUPDATE t SET v = 2 WHERE id = 1;");
    let first = p.run(&["up", "--to", "1"]);
    assert_eq!(first.code, 0, "{}", first.all());

    // Another connection holds the row.
    let holder = my_holder(&my, &format!("BEGIN; SELECT v FROM `{db}`.t WHERE id = 1 FOR UPDATE;"));

    let json = p.run(&["up", "--retry-for", "2s", "--format", "json"]);
    let events = json_lines(&json);
    let retried = retries(&events);
    assert!(!retried.is_empty(), "a lock wait timeout is transient: {}", json.all());
    assert_eq!(retried[0]["error"]["number"], 1205, "{}", retried[0]);
    let finished = finished(&events);
    let error = error_of(finished);
    assert_eq!(error["number"], 1205, "{finished}");
    assert_eq!(error["code"], "HY000", "{finished}");
    let report = p.run(&["report", &run_id(&events)]);
    let line = tenant_line(&report.stdout, "acme");
    assert!(
        line.contains("applying 0002_v: ERROR 1205 (HY000): Lock wait timeout exceeded"),
        "{}",
        report.all()
    );
    // The run's report documents keep the number beside the SQLSTATE, as the events do.
    let doc = p.run(&["report", &run_id(&events), "--format", "json"]);
    let doc: Value = serde_json::from_str(&doc.stdout).unwrap_or_else(|e| panic!("{e}: {}", doc.all()));
    assert_eq!(doc["tenants"][0]["error_code"], "HY000", "{doc}");
    assert_eq!(doc["tenants"][0]["error_number"], 1205, "{doc}");
    assert!(
        !line.contains("dirty"),
        "a statement the server rolled back leaves nothing dirty: {line}"
    );

    kill_sleeper(&my, holder);
    let again = p.run(&["up"]);
    assert_eq!(again.code, 0, "{}", again.all());
}

#[test]
fn a_held_tenant_lock_names_its_holder() {
    let Some(pg) = Pg::create("holder") else { return };
    let p = pg_project(&pg);
    p.migration("0001_slow.up.sql", "SELECT pg_sleep(4);");

    // Another application holds fleetmig's lock on the tenant.
    let holder = hold_acme(&pg);
    let run = p.run(&["up", "--lock-wait", "0s", "--retries", "0"]);
    end_holder(&pg, holder);
    let line = tenant_line(&run.stdout, "acme");
    let by = format!("by `{}` (postgres@127.0.0.1), pid ", holder_name(&pg));
    assert!(line.contains(&by), "{}", run.all());

    // Another fleetmig runner holds it.
    let mut first = support::Spawned::new(p.command(&["up", "--format", "json"]));
    first.wait_for(Duration::from_secs(30), |v| v["event"] == "step_started");
    let second = p.run(&["up", "--lock-wait", "0s", "--retries", "0"]);
    let line = tenant_line(&second.stdout, "acme");
    assert!(
        line.contains("by another fleetmig runner (pid ") && line.contains(" on host 127.0.0.1"),
        "{}",
        second.all()
    );
    let (code, _, stderr) = first.finish(Duration::from_secs(30));
    assert_eq!(code, Some(0), "{stderr}");
}

#[test]
fn mariadb_held_tenant_lock_names_its_connection() {
    let Some(my) = My::create("myholder") else { return };
    let p = Project::new();
    let db = format!("{}_acme", my.prefix);
    p.fleet(&format!(
        "hosts:\n  my: {{ url: \"{}\" }}\ndefaults: {{ host: my, database: \"{}_{{id}}\" }}\ntenants:\n  - {{ id: acme }}\n",
        support::MYSQL_ADMIN,
        my.prefix
    ));
    p.migration("0001_t.up.sql", "CREATE TABLE t (id INT);");
    let holder = my_holder(&my, &format!("SELECT GET_LOCK(CONCAT('fleetmig:', SHA1('{db}')), 0);"));
    let run = p.run(&["up", "--lock-wait", "0s", "--retries", "0"]);
    kill_sleeper(&my, holder);
    let line = tenant_line(&run.stdout, "acme");
    assert!(
        line.contains("by connection ") && line.contains("(root@"),
        "{}",
        run.all()
    );
}

#[test]
fn lock_wait_is_one_deadline_for_all_of_a_tenants_attempts() {
    let Some(pg) = Pg::create("lockdeadline") else { return };
    let p = pg_project(&pg);
    p.migration("0001_a.up.sql", "CREATE TABLE t1 (id int);");
    let holder = hold_acme(&pg);
    let began = Instant::now();
    let run = p.run(&["up", "--lock-wait", "1s", "--retry-for", "30s", "--format", "json"]);
    let took = began.elapsed();
    end_holder(&pg, holder);
    assert_eq!(run.code, 1, "{}", run.all());
    assert!(
        took > Duration::from_secs(1) && took < Duration::from_millis(2500),
        "--lock-wait 1s took {took:?}: {}",
        run.all()
    );
    let events = json_lines(&run);
    let error = error_of(finished(&events));
    assert_eq!(error["kind"], "locked", "{}", run.all());
    // The whole budget, not what was left of it when the last attempt began.
    let message = error["message"].as_str().unwrap();
    assert!(
        message.starts_with("still held after 1s (--lock-wait) by "),
        "{message}"
    );
}

#[test]
fn a_locked_table_costs_one_retry_for_in_all_and_names_who_holds_it() {
    let Some(pg) = Pg::create("tablelock") else { return };
    let p = pg_project(&pg);
    p.migration("0001_t.up.sql", "CREATE TABLE t (id int);");
    assert_eq!(p.run(&["up"]).code, 0);
    p.migration("0002_c.up.sql", "ALTER TABLE t ADD COLUMN c int;");
    let holder = pg_holder(
        &pg,
        "BEGIN; LOCK TABLE s_acme.t IN ACCESS SHARE MODE; SELECT pg_sleep(60);",
    );
    let began = Instant::now();
    let run = p.run(&["up", "--lock-timeout", "4s", "--retry-for", "1s"]);
    let took = began.elapsed();
    end_holder(&pg, holder);
    assert_eq!(run.code, 1, "{}", run.all());
    let line = run
        .stdout
        .lines()
        .find(|l| l.contains("acme") && l.contains("FAILED"))
        .unwrap_or_else(|| panic!("{}", run.all()));
    // The first lock_timeout, then retries within --retry-for: not one more lock_timeout.
    assert!(
        took > Duration::from_secs(4) && took < Duration::from_millis(6500),
        "took {took:?}: {}",
        run.all()
    );
    assert!(line.contains("(code 55P03)"), "{line}");
    let by = format!(
        "the table is locked by `{}` (postgres@127.0.0.1), pid ",
        holder_name(&pg)
    );
    assert!(line.contains(&by), "{line}");
    assert!(line.contains("AccessShareLock on t"), "{line}");
    assert!(line.contains("given up after "), "{line}");
    assert!(line.contains("(--retry-for 1s)"), "{line}");
}

#[test]
fn a_database_cannot_write_terminal_escapes_or_flood_the_report() {
    let Some(pg) = Pg::create("badbytes") else { return };
    let p = pg_project(&pg);
    // A message that clears the screen and recolours it, over several lines, 100 KB long,
    // with a DETAIL that retitles the terminal.
    p.migration(
        "0001_bad.up.sql",
        "DO $$ BEGIN RAISE EXCEPTION '%', E'boom\\x1b[2J\\x1b[31mred\\nsecond\\r\\tline ' || repeat('x', 100000) \
         USING DETAIL = E'det\\x1b]0;owned\\x07ail\\nmore', HINT = E'\\u202Egnp.exe'; END $$;",
    );
    let text = p.run(&["up"]);
    assert_eq!(text.code, 1, "{}", text.all());
    assert!(
        !text.stdout.contains('\x1b') && !text.stdout.contains('\x07'),
        "{}",
        text.stdout
    );
    assert!(!text.stdout.contains('\u{202E}'), "{}", text.stdout);
    let line = tenant_line(&text.stdout, "acme");
    assert!(
        line.contains("boom\\u{1b}[2J\\u{1b}[31mred second line xxx"),
        "escapes are shown, newlines are spaces: {line}"
    );
    assert!(line.contains("more characters)"), "{line}");
    assert!(line.len() < 3000, "the line is bounded: {} bytes", line.len());
    assert!(line.contains("DETAIL: det\\u{1b}]0;owned\\u{7}ail more"), "{line}");
    assert!(line.contains("HINT: \\u{202e}gnp.exe"), "{line}");
    for table_row in text.stdout.lines().filter(|l| l.starts_with("acme ")) {
        assert!(table_row.len() < 3000, "{table_row}");
    }

    // JSON keeps the whole message, escaped as JSON does.
    let json = p.run(&["up", "--format", "json"]);
    crate::json_schema::Events::load().check("bad bytes", &json.stdout);
    let events = json_lines(&json);
    let error = error_of(finished(&events));
    let message = error["message"].as_str().unwrap();
    assert!(
        message.starts_with("boom\x1b[2J\x1b[31mred\nsecond\r\tline "),
        "{message:.40}"
    );
    assert_eq!(message.len(), "boom\x1b[2J\x1b[31mred\nsecond\r\tline ".len() + 100_000);

    // The ledger keeps the bounded line, and report RUN prints it safely.
    let report = p.run(&["report", &run_id(&events)]);
    assert!(!report.stdout.contains('\x1b'), "{}", report.stdout);
    let line = tenant_line(&report.stdout, "acme");
    assert!(line.contains("more characters)") && line.len() < 3000, "{line}");
    let kept = support::sqlite_column(
        &p.path().join("tenants.ledger.db"),
        "SELECT CAST(length(error) AS TEXT) FROM fleetmig_run_tenants WHERE error IS NOT NULL",
    );
    assert!(
        !kept.is_empty() && kept.iter().all(|n| n.parse::<usize>().unwrap() < 3000),
        "{kept:?}"
    );
}

/// A fleet of one schema-tenant reached through `url`.
fn pg_project_at(url: &str) -> Project {
    let p = Project::new();
    p.fleet(&format!(
        "hosts: {{ pg: {{ url: \"{url}\" }} }}\ndefaults: {{ host: pg, schema: \"s_{{id}}\" }}\ntenants:\n  - {{ id: acme }}\n"
    ));
    p.migration("0001_a.up.sql", "CREATE TABLE t1 (id int);");
    p
}

/// Sessions of fleetmig on the test's database that are polling for the tenant lock.
fn polling_for_the_lock(pg: &Pg) -> bool {
    pg.column(
        "SELECT count(*)::text FROM pg_stat_activity WHERE datname = current_database() \
         AND application_name = 'fleetmig' AND query LIKE '%pg_try_advisory_lock%'",
    )[0] != "0"
}

#[test]
fn a_tenant_whose_lock_holder_is_killed_mid_wait_goes_on_at_once() {
    let Some(pg) = Pg::create("holderkilled") else { return };
    let p = pg_project_at(&pg.url());
    let holder = hold_acme(&pg);
    let mut run = support::Spawned::new(p.command(&["up", "--lock-wait", "60s", "--format", "json"]));
    run.wait_for(Duration::from_secs(30), |v| v["event"] == "tenant_started");
    wait_until("fleetmig waiting for the lock", || polling_for_the_lock(&pg));
    std::thread::sleep(Duration::from_millis(1200));
    let killed = Instant::now();
    end_holder(&pg, holder);
    let (code, _, stderr) = run.finish(Duration::from_secs(30));
    assert_eq!(code, Some(0), "{stderr}");
    // The lock is polled at least every 500 ms.
    assert!(
        killed.elapsed() < Duration::from_secs(3),
        "the run went on {:?} after the holder was killed",
        killed.elapsed()
    );
    assert_eq!(pg.column("SELECT version::text FROM s_acme.fleetmig_history"), ["1"]);
}

/// A run of `p` with `--lock-wait 3s` and no `--statement-timeout`, through a proxy that
/// loses the answer to the first try for the lock: it ends within the wait and the margin,
/// the tenant skipped as unreachable (taking the lock changed nothing).
fn ends_with_the_lock_wait(p: &Project) {
    let began = Instant::now();
    let run = support::Spawned::new(p.command(&["up", "--lock-wait", "3s", "--retries", "0", "--format", "json"]));
    ended_within_the_wait(run, began);
}

/// `run` (`--lock-wait 3s`, JSON) ended within the wait and the margin after `from`, its
/// one tenant skipped as unreachable, the message naming `--lock-wait`.
fn ended_within_the_wait(run: support::Spawned, from: Instant) {
    let (code, lines, stderr) = run.finish(Duration::from_secs(60));
    let took = from.elapsed();
    assert!(
        took < Duration::from_secs(8),
        "--lock-wait 3s, and the run took {took:?}: {stderr}"
    );
    assert_eq!(code, Some(1), "{stderr}");
    let finished: Vec<Value> = lines
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["event"] == "tenant_finished")
        .collect();
    assert_eq!(finished.len(), 1, "{lines:?}");
    assert_eq!(finished[0]["status"], "skipped", "{}", finished[0]);
    assert_eq!(finished[0]["reason"], "unreachable", "{}", finished[0]);
    let message = finished[0]["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("no answer within") && message.contains("--lock-wait"),
        "{}",
        finished[0]
    );
}

#[test]
fn a_connection_that_goes_silent_on_its_first_try_for_the_lock_ends_with_the_lock_wait_on_postgres() {
    let Some(pg) = Pg::create("lockprobehole") else { return };
    let proxy = support::Proxy::new("127.0.0.1:5432");
    // In clear text, for the proxy to see the statement.
    let p = pg_project_at(&format!("{}?sslmode=disable", proxy.pg_url(&pg.name)));
    let holder = hold_acme(&pg);
    proxy.blackhole_after("pg_try_advisory_lock");
    ends_with_the_lock_wait(&p);
    end_holder(&pg, holder);
}

#[test]
fn a_connection_that_goes_silent_in_get_lock_ends_with_the_lock_wait_on_mariadb() {
    let Some(my) = My::create("getlockhole") else { return };
    let proxy = support::Proxy::new("127.0.0.1:3306");
    let p = Project::new();
    p.fleet(&format!(
        "hosts: {{ my: {{ url: \"mysql://root@127.0.0.1:{}/?ssl-mode=disabled\" }} }}\ndefaults: {{ host: my, database: \"{}_{{id}}\" }}\ntenants:\n  - {{ id: acme }}\n",
        proxy.port, my.prefix
    ));
    p.migration("0001_t.up.sql", "CREATE TABLE t (id INT);");
    let db = format!("{}_acme", my.prefix);
    let holder = my_holder(&my, &format!("SELECT GET_LOCK(CONCAT('fleetmig:', SHA1('{db}')), 0);"));
    proxy.blackhole_after("GET_LOCK");
    ends_with_the_lock_wait(&p);
    kill_sleeper(&my, holder);
}

#[test]
fn a_connection_that_goes_silent_during_a_lock_wait_ends_with_the_lock_wait() {
    let Some(pg) = Pg::create("lockblackhole") else { return };
    let proxy = support::Proxy::new("127.0.0.1:5432");
    let p = pg_project_at(&proxy.pg_url(&pg.name));
    let holder = hold_acme(&pg);
    // No --statement-timeout: nothing but the lock wait bounds the polls.
    let mut run = support::Spawned::new(p.command(&["up", "--lock-wait", "3s", "--retries", "0", "--format", "json"]));
    run.wait_for(Duration::from_secs(30), |v| v["event"] == "tenant_started");
    wait_until("fleetmig waiting for the lock", || polling_for_the_lock(&pg));
    let cut = Instant::now();
    proxy.blackhole();
    ended_within_the_wait(run, cut);
    end_holder(&pg, holder);
}
