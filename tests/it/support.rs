//! Test fixtures: a project folder with a fleet file and migrations, the fleetmig binary,
//! and throw-away PostgreSQL and MariaDB databases, one set per test.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

use sqlx::{Connection, Executor, Row};

pub const PG_ADMIN: &str = "postgres://postgres@127.0.0.1:5432/postgres";
pub const MYSQL_ADMIN: &str = "mysql://root@127.0.0.1:3306/";

/// True when server tests must run (CI), false when they may be skipped.
pub fn servers_required() -> bool {
    std::env::var("FLEETMIG_REQUIRE_SERVERS").is_ok_and(|v| v == "1" || v == "true")
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

/// A name no other test (or test run) uses: `fm_<tag>_<pid>_<n>`.
pub fn unique(tag: &str) -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    format!(
        "fm_{tag}_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

fn unreachable_server(what: &str, err: &dyn std::fmt::Display) {
    if servers_required() {
        panic!("{what} is required (FLEETMIG_REQUIRE_SERVERS=1) but unreachable: {err}");
    }
    eprintln!("SKIPPED: {what} unreachable ({err}); set FLEETMIG_REQUIRE_SERVERS=1 to make this a failure");
}

/// A PostgreSQL database of its own, dropped at the end of the test.
pub struct Pg {
    pub name: String,
}

impl Pg {
    /// `None` (after saying so) when PostgreSQL is unreachable and not required.
    pub fn create(tag: &str) -> Option<Pg> {
        let name = unique(tag);
        let result = block_on(async {
            let mut c = sqlx::PgConnection::connect(PG_ADMIN).await?;
            c.execute(sqlx::raw_sql(&format!("CREATE DATABASE \"{name}\""))).await?;
            c.close().await
        });
        match result {
            Ok(()) => Some(Pg { name }),
            Err(e) => {
                unreachable_server("PostgreSQL at 127.0.0.1:5432", &e);
                None
            }
        }
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:5432/{}", self.name)
    }

    pub fn exec(&self, sql: &str) {
        let url = self.url();
        block_on(async {
            let mut c = sqlx::PgConnection::connect(&url).await.unwrap();
            c.execute(sqlx::raw_sql(sql))
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"));
        });
    }

    /// Rows of a query whose columns are all text (cast them with `::text`).
    pub fn rows(&self, sql: &str) -> Vec<Vec<Option<String>>> {
        let url = self.url();
        block_on(async {
            let mut c = sqlx::PgConnection::connect(&url).await.unwrap();
            let rows = sqlx::query(sql)
                .fetch_all(&mut c)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"));
            rows.iter()
                .map(|r| {
                    (0..r.len())
                        .map(|i| r.try_get::<Option<String>, _>(i).unwrap())
                        .collect()
                })
                .collect()
        })
    }

    /// The first column of every row, `NULL` as "NULL".
    pub fn column(&self, sql: &str) -> Vec<String> {
        self.rows(sql)
            .into_iter()
            .map(|r| r[0].clone().unwrap_or_else(|| "NULL".into()))
            .collect()
    }
}

impl Drop for Pg {
    fn drop(&mut self) {
        let name = self.name.clone();
        let _ = block_on(async move {
            let mut c = sqlx::PgConnection::connect(PG_ADMIN).await?;
            c.execute(sqlx::raw_sql(&format!(
                "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
            )))
            .await?;
            c.close().await
        });
    }
}

/// MariaDB databases named `<prefix>_*`, all dropped at the end of the test.
pub struct My {
    pub prefix: String,
}

impl My {
    pub fn create(tag: &str) -> Option<My> {
        let prefix = unique(tag);
        let result = block_on(async { sqlx::MySqlConnection::connect(MYSQL_ADMIN).await?.close().await });
        match result {
            Ok(()) => Some(My { prefix }),
            Err(e) => {
                unreachable_server("MariaDB at 127.0.0.1:3306", &e);
                None
            }
        }
    }

    pub fn exec(&self, sql: &str) {
        block_on(async {
            let mut c = sqlx::MySqlConnection::connect(MYSQL_ADMIN).await.unwrap();
            c.execute(sqlx::raw_sql(sql))
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"));
        });
    }

    /// Rows of a query whose columns are all text (use `CAST(x AS CHAR)`).
    pub fn rows(&self, sql: &str) -> Vec<Vec<Option<String>>> {
        block_on(async {
            let mut c = sqlx::MySqlConnection::connect(MYSQL_ADMIN).await.unwrap();
            let rows = sqlx::query(sql)
                .fetch_all(&mut c)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"));
            rows.iter()
                .map(|r| {
                    (0..r.len())
                        .map(|i| r.try_get::<Option<String>, _>(i).unwrap())
                        .collect()
                })
                .collect()
        })
    }

    pub fn column(&self, sql: &str) -> Vec<String> {
        self.rows(sql)
            .into_iter()
            .map(|r| r[0].clone().unwrap_or_else(|| "NULL".into()))
            .collect()
    }
}

impl Drop for My {
    fn drop(&mut self) {
        let prefix = self.prefix.clone();
        let _ = block_on(async move {
            let mut c = sqlx::MySqlConnection::connect(MYSQL_ADMIN).await?;
            let names: Vec<String> = sqlx::query_scalar(
                "SELECT CAST(SCHEMA_NAME AS CHAR) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME LIKE CONCAT(?, '%')",
            )
            .bind(&prefix)
            .fetch_all(&mut c)
            .await?;
            for name in names {
                c.execute(sqlx::raw_sql(&format!("DROP DATABASE IF EXISTS `{name}`")))
                    .await?;
            }
            c.close().await
        });
    }
}

/// A folder with `tenants.yaml` and `migrations/`, where fleetmig runs.
pub struct Project {
    pub dir: tempfile::TempDir,
}

/// What one fleetmig process did.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// stdout and stderr together, for "appears nowhere" checks.
    pub fn all(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }
}

impl From<Output> for Run {
    fn from(o: Output) -> Run {
        Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

impl Project {
    pub fn new() -> Project {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("migrations")).unwrap();
        Project { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn fleet(&self, yaml: &str) -> &Self {
        std::fs::write(self.path().join("tenants.yaml"), yaml).unwrap();
        self
    }

    /// Writes `migrations/<file>`.
    pub fn migration(&self, file: &str, sql: &str) -> &Self {
        std::fs::write(self.path().join("migrations").join(file), sql).unwrap();
        self
    }

    pub fn remove_migration(&self, file: &str) {
        std::fs::remove_file(self.path().join("migrations").join(file)).unwrap();
    }

    /// A SQLite tenant file of this project.
    pub fn db_path(&self, id: &str) -> PathBuf {
        self.path().join("data").join(format!("{id}.db"))
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_fleetmig"));
        cmd.current_dir(self.path())
            .args(args)
            .env_remove("FLEETMIG_FLEET")
            .env_remove("FLEETMIG_MIGRATIONS")
            .env_remove("FLEETMIG_LAYOUT");
        cmd
    }

    pub fn run(&self, args: &[&str]) -> Run {
        finish(self.command(args), args)
    }

    pub fn run_env(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        let mut cmd = self.command(args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        finish(cmd, args)
    }
}

/// The line for tenant `id`: in run output its outcome (not its `started` line), without
/// the timestamp output to a pipe carries; in a table, the row whose first or second
/// column (after `plan`'s WAVE) is the id.
pub fn tenant_line<'a>(out: &'a str, id: &str) -> &'a str {
    let is_time = |w: &str| w.len() == 12 && w.as_bytes()[2] == b':' && w.as_bytes()[8] == b'.';
    out.lines()
        .map(|l| match l.split_once(' ') {
            Some((first, rest)) if is_time(first) => rest,
            _ => l,
        })
        .find(|l| {
            let words: Vec<&str> = l.split_whitespace().collect();
            let at = words.iter().take(2).position(|w| *w == id);
            at.is_some_and(|i| words.len() > i + 1 && words[i + 1..] != ["started"])
        })
        .unwrap_or_else(|| panic!("no line for tenant `{id}` in:\n{out}"))
}

/// How long one fleetmig command may take before the test calls it hung. A watchdog, not
/// a timing assertion: every command here takes well under a second.
const HANG: std::time::Duration = std::time::Duration::from_secs(120);

/// Runs a command to its end, failing the test (and killing the process) if it hangs.
fn finish(mut cmd: Command, args: &[&str]) -> Run {
    let child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(HANG) {
        Ok(output) => output.unwrap().into(),
        Err(_) => {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            panic!("fleetmig {args:?} hung for {HANG:?} and was killed");
        }
    }
}

/// Rows of a query on a SQLite file, every column read as text.
pub fn sqlite_rows(path: &Path, sql: &str) -> Vec<Vec<Option<String>>> {
    let url = format!("sqlite://{}", path.display());
    block_on(async {
        let mut c = sqlx::SqliteConnection::connect(&url).await.unwrap();
        let rows = sqlx::query(sql)
            .fetch_all(&mut c)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        rows.iter()
            .map(|r| {
                (0..r.len())
                    .map(|i| r.try_get::<Option<String>, _>(i).unwrap())
                    .collect()
            })
            .collect()
    })
}

pub fn sqlite_column(path: &Path, sql: &str) -> Vec<String> {
    sqlite_rows(path, sql)
        .into_iter()
        .map(|r| r[0].clone().unwrap_or_else(|| "NULL".into()))
        .collect()
}

/// Runs SQL on a SQLite file.
pub fn sqlite_exec(path: &Path, sql: &str) {
    let url = format!("sqlite://{}?mode=rwc", path.display());
    block_on(async {
        let mut c = sqlx::SqliteConnection::connect(&url).await.unwrap();
        c.execute(sqlx::raw_sql(sql))
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    });
}

/// A fleetmig process running in the background: its stdout lines (JSON Lines with
/// `--format json`) and stderr read as they come, every wait bounded.
pub struct Spawned {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
    stderr: std::sync::mpsc::Receiver<String>,
    /// Every stdout line read so far.
    pub seen: Vec<String>,
}

impl Spawned {
    pub fn new(mut cmd: Command) -> Spawned {
        let mut child = cmd
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let (tx, stderr) = std::sync::mpsc::channel();
        let mut err = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = std::io::Read::read_to_string(&mut err, &mut text);
            let _ = tx.send(text);
        });
        Spawned {
            child,
            lines,
            stderr,
            seen: Vec::new(),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits at most `within` for a JSON line that `pred` accepts, and returns it; fails
    /// the test (killing the process) when none comes.
    pub fn wait_for(
        &mut self,
        within: std::time::Duration,
        pred: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let until = std::time::Instant::now() + within;
        loop {
            let left = until.saturating_duration_since(std::time::Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) {
                        if pred(&v) {
                            return v;
                        }
                    }
                }
                Err(e) => {
                    self.kill();
                    panic!(
                        "no awaited line within {within:?} ({e}); lines so far:\n{}",
                        self.seen.join("\n")
                    );
                }
            }
        }
    }

    /// The next JSON line within `within`; `None` once the process closed its stdout.
    /// Fails the test (killing the process) when nothing comes in time.
    pub fn next_event(&mut self, within: std::time::Duration) -> Option<serde_json::Value> {
        loop {
            match self.lines.recv_timeout(within) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if let Ok(v) = serde_json::from_str(&line) {
                        return Some(v);
                    }
                }
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return None,
                Err(e) => {
                    self.kill();
                    panic!(
                        "no line within {within:?} ({e}); lines so far:\n{}",
                        self.seen.join("\n")
                    );
                }
            }
        }
    }

    /// Sends a signal by name, if the process is still there to take it.
    pub fn try_signal(&mut self, name: &str) {
        if let Ok(None) = self.child.try_wait() {
            let _ = Command::new("kill")
                .args([&format!("-{name}"), &self.child.id().to_string()])
                .status();
        }
    }

    /// Sends a signal by name (`TERM`, `INT`, `KILL`) with the `kill` command.
    pub fn signal(&self, name: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{name} failed");
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits at most `within` for the process to end: its exit code (`None` when a signal
    /// ended it), the rest of its stdout, its stderr. Fails the test (killing the process)
    /// when it does not end in time.
    pub fn finish(mut self, within: std::time::Duration) -> (Option<i32>, Vec<String>, String) {
        let until = std::time::Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                let rest: Vec<String> = self.lines.iter().collect();
                self.seen.extend(rest.iter().cloned());
                let err = self
                    .stderr
                    .recv_timeout(std::time::Duration::from_secs(5))
                    .unwrap_or_default();
                return (status.code(), rest, err);
            }
            if std::time::Instant::now() >= until {
                self.kill();
                let err = self
                    .stderr
                    .recv_timeout(std::time::Duration::from_secs(5))
                    .unwrap_or_default();
                panic!(
                    "fleetmig still running after {within:?}; killed. stdout:\n{}\nstderr:\n{err}",
                    self.seen.join("\n")
                );
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.kill();
        }
    }
}

/// What a [`Proxy`] does with a connection it accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyMode {
    /// Forward it to the server.
    Forward,
    /// Close it at once: a server that is down (restarting).
    Refuse,
    /// Keep it waiting, unanswered, until the mode changes.
    Hold,
}

/// A TCP proxy on 127.0.0.1 in front of a server (`127.0.0.1:5432`, `127.0.0.1:3306`), so
/// a test can take "the server" away without touching the shared one: `set` refuses or
/// holds new connections, `cut` breaks every open one (a restart), `blackhole` keeps them
/// open but lets no byte through in either direction (a partition). Stops with the test.
pub struct Proxy {
    pub port: u16,
    state: std::sync::Arc<(std::sync::Mutex<ProxyMode>, std::sync::Condvar)>,
    /// Both ends of every forwarded connection, for cutting them all at once.
    live: std::sync::Arc<std::sync::Mutex<Vec<std::net::TcpStream>>>,
    /// Connections waiting in `Hold` right now.
    pub held: std::sync::Arc<AtomicUsize>,
    blackhole: std::sync::Arc<Hole>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

/// A [`Proxy`]'s partition: on now, or from the first client packet holding some bytes.
#[derive(Default)]
struct Hole {
    on: std::sync::atomic::AtomicBool,
    after: std::sync::Mutex<Option<Vec<u8>>>,
}

impl Proxy {
    pub fn new(target: &str) -> Proxy {
        use std::sync::Arc;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let proxy = Proxy {
            port: listener.local_addr().unwrap().port(),
            state: Arc::new((std::sync::Mutex::new(ProxyMode::Forward), std::sync::Condvar::new())),
            live: Arc::default(),
            held: Arc::default(),
            blackhole: Arc::default(),
            stop: Arc::default(),
        };
        let target = target.to_owned();
        let (state, live, held) = (proxy.state.clone(), proxy.live.clone(), proxy.held.clone());
        let (hole, halt) = (proxy.blackhole.clone(), proxy.stop.clone());
        std::thread::spawn(move || {
            while !halt.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((client, _)) => {
                        client.set_nonblocking(false).unwrap();
                        let (state, live, held) = (state.clone(), live.clone(), held.clone());
                        let (hole, halt, target) = (hole.clone(), halt.clone(), target.clone());
                        std::thread::spawn(move || serve(client, &target, &state, &live, &held, hole, halt));
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(std::time::Duration::from_millis(5));
                    }
                    Err(_) => break,
                }
            }
        });
        proxy
    }

    /// What happens to connections accepted from now on.
    pub fn set(&self, mode: ProxyMode) {
        let (lock, cvar) = &*self.state;
        *lock.lock().unwrap() = mode;
        cvar.notify_all();
    }

    /// Breaks every forwarded connection, as a server restart does.
    pub fn cut(&self) {
        for s in self.live.lock().unwrap().drain(..) {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
    }

    /// From now on nothing passes, and nothing is closed.
    pub fn blackhole(&self) {
        self.blackhole.on.store(true, Ordering::SeqCst);
    }

    /// A partition that begins right after the server got the first client packet holding
    /// `text`: that statement runs, and its answer is lost.
    pub fn blackhole_after(&self, text: &str) {
        *self.blackhole.after.lock().unwrap() = Some(text.as_bytes().to_vec());
    }

    /// A PostgreSQL URL for database `db` through the proxy.
    pub fn pg_url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.set(ProxyMode::Refuse);
    }
}

/// One accepted connection: held, refused or forwarded as the mode says when it arrives.
fn serve(
    client: std::net::TcpStream,
    target: &str,
    (lock, cvar): &(std::sync::Mutex<ProxyMode>, std::sync::Condvar),
    live: &std::sync::Mutex<Vec<std::net::TcpStream>>,
    held: &AtomicUsize,
    hole: std::sync::Arc<Hole>,
    halt: std::sync::Arc<std::sync::atomic::AtomicBool>,
) {
    let mut mode = lock.lock().unwrap();
    if *mode == ProxyMode::Hold {
        held.fetch_add(1, Ordering::SeqCst);
        while *mode == ProxyMode::Hold {
            mode = cvar.wait(mode).unwrap();
        }
        held.fetch_sub(1, Ordering::SeqCst);
    }
    if *mode == ProxyMode::Refuse {
        let _ = client.shutdown(std::net::Shutdown::Both);
        return;
    }
    drop(mode);
    let Ok(server) = std::net::TcpStream::connect(target) else {
        return;
    };
    live.lock()
        .unwrap()
        .extend([client.try_clone().unwrap(), server.try_clone().unwrap()]);
    for (from, to, upstream) in [
        (client.try_clone().unwrap(), server.try_clone().unwrap(), true),
        (server, client, false),
    ] {
        let (hole, halt) = (hole.clone(), halt.clone());
        std::thread::spawn(move || pump(from, to, upstream, &hole, &halt));
    }
}

/// Copies bytes one way until either side closes or the proxy stops; in a blackhole,
/// reads them and drops them. `upstream`: from the client, where a packet may open the hole.
fn pump(
    mut from: std::net::TcpStream,
    mut to: std::net::TcpStream,
    upstream: bool,
    hole: &Hole,
    halt: &std::sync::atomic::AtomicBool,
) {
    use std::io::{Read, Write};
    from.set_read_timeout(Some(std::time::Duration::from_millis(50)))
        .unwrap();
    let mut buf = [0u8; 16 * 1024];
    while !halt.load(Ordering::SeqCst) {
        match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                // The hole opens before the packet that opens it goes on: its answer is lost.
                let opens = |t: &Vec<u8>| buf[..n].windows(t.len()).any(|w| w == t.as_slice());
                let last = upstream
                    && !hole.on.load(Ordering::SeqCst)
                    && hole.after.lock().unwrap().as_ref().is_some_and(opens);
                if last {
                    hole.on.store(true, Ordering::SeqCst);
                }
                if (last || !hole.on.load(Ordering::SeqCst)) && to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(_) => break,
        }
    }
    if !hole.on.load(Ordering::SeqCst) {
        let _ = to.shutdown(std::net::Shutdown::Write);
    }
}

/// A SQLite fleet of `ids` (id, canary) with four reversible migrations; `bad` tenants already hold a table `t3`, so their migration 3 fails.
pub fn sqlite_fleet(ids: &[(&str, bool)], bad: &[&str]) -> Project {
    let p = Project::new();
    for i in 1..=4 {
        p.migration(
            &format!("000{i}_t{i}.up.sql"),
            &format!("CREATE TABLE t{i} (id INTEGER);"),
        );
        p.migration(&format!("000{i}_t{i}.down.sql"), &format!("DROP TABLE t{i};"));
    }
    let tenants: String = ids
        .iter()
        .map(|(id, canary)| format!("  - {{ id: {id}, canary: {canary} }}\n"))
        .collect();
    p.fleet(&format!(
        "defaults: {{ url: \"sqlite://data/{{id}}.db\" }}\ntenants:\n{tenants}"
    ));
    std::fs::create_dir_all(p.path().join("data")).unwrap();
    for id in bad {
        sqlite_exec(&p.db_path(id), "CREATE TABLE t3 (x INTEGER);");
    }
    p
}

/// A `psql` session named `name` on `pg`'s database running `sql` (ending in a long sleep);
/// its backend is ended by [`end_session`], or by the database's drop if the test fails.
pub fn psql_session(pg: &Pg, name: &str, sql: &str) -> std::process::Child {
    std::process::Command::new("psql")
        .args(["-X", "-q", &pg.url(), "-c", sql])
        .env("PGAPPNAME", name)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap()
}

pub fn end_session(pg: &Pg, name: &str, mut child: std::process::Child) {
    pg.exec(&format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = current_database() AND application_name = '{name}'"
    ));
    let _ = child.wait();
}

/// Polls `done` every 20 ms; fails the test when it is still false after 30 s.
pub fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let until = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !done() {
        assert!(std::time::Instant::now() < until, "{what} did not happen within 30 s");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Another migration tool's command, to check fleetmig against the real thing: the path
/// in `FLEETMIG_<NAME>` (CI installs them), else `name` on the `PATH`. `None` (after saying
/// so) when it is not installed, unless `FLEETMIG_REQUIRE_TOOLS=1` makes that a failure.
pub fn stock_tool(name: &str) -> Option<PathBuf> {
    let var = format!("FLEETMIG_{}", name.to_uppercase().replace('-', "_"));
    let found = match std::env::var_os(&var) {
        Some(path) => Some(PathBuf::from(path)).filter(|p| p.is_file()),
        None => std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join(name))
                .find(|p| p.is_file())
        }),
    };
    if found.is_none() {
        if std::env::var("FLEETMIG_REQUIRE_TOOLS").is_ok_and(|v| v == "1" || v == "true") {
            panic!("{name} is required (FLEETMIG_REQUIRE_TOOLS=1) but not found: set {var} or put it on the PATH");
        }
        eprintln!("SKIPPED: {name} not installed (set {var}, or FLEETMIG_REQUIRE_TOOLS=1 to make this a failure)");
    }
    found
}

/// Runs a stock tool; panics with its output when it fails.
pub fn run_tool(tool: &Path, args: &[&str]) -> String {
    let out = Command::new(tool).args(args).output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{} {args:?}: {text}", tool.display());
    text
}

/// `text` parsed by the strict OpenMetrics parser of Prometheus' Python client
/// (tests/tools/openmetrics_check.py): its families as JSON, or a failed test naming the
/// parser's complaint. `None` (saying SKIPPED) when python3 cannot import
/// `prometheus_client`, from `FLEETMIG_PROMETHEUS_CLIENT` (a `pip install --target`
/// folder) or its own path, unless `FLEETMIG_REQUIRE_TOOLS=1` makes that a failure.
pub fn openmetrics(text: &str) -> Option<serde_json::Value> {
    use std::io::Write;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/tools/openmetrics_check.py");
    let mut cmd = Command::new("python3");
    if let Some(dir) = std::env::var_os("FLEETMIG_PROMETHEUS_CLIENT") {
        cmd.env("PYTHONPATH", dir);
    }
    let importable = Command::new("python3")
        .envs(
            cmd.get_envs()
                .filter_map(|(k, v)| v.map(|v| (k.to_owned(), v.to_owned()))),
        )
        .args(["-c", "import prometheus_client.openmetrics.parser"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !importable {
        if std::env::var("FLEETMIG_REQUIRE_TOOLS").is_ok_and(|v| v == "1" || v == "true") {
            panic!("prometheus_client is required (FLEETMIG_REQUIRE_TOOLS=1): set FLEETMIG_PROMETHEUS_CLIENT");
        }
        eprintln!(
            "SKIPPED: the OpenMetrics parser (python3 prometheus_client) is not installed; set FLEETMIG_PROMETHEUS_CLIENT"
        );
        return None;
    }
    let mut child = cmd
        .arg(script)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "not valid OpenMetrics: {stderr}\n{text}");
    Some(serde_json::from_slice(&out.stdout).unwrap())
}
