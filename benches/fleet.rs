//! Whole-fleet benchmark of the release binary: PostgreSQL schema-per-tenant against a psql
//! floor and a per-tenant psql loop, a no-op `up`, SQLite file-per-tenant, and peak memory.
//!
//! `cargo bench --bench fleet` runs every part and prints a Markdown table of medians. Runs
//! take seconds each, so this is a plain `harness = false` main that repeats each
//! measurement and takes the median, not a criterion benchmark. Scale with
//! `FLEETMIG_BENCH_TENANTS` (1000), `FLEETMIG_BENCH_REPEAT` (3), `FLEETMIG_BENCH_SQLITE`
//! (5000), `FLEETMIG_BENCH_SQLITE_MEM` (10000), `FLEETMIG_BENCH_LOOP_TENANTS` (25),
//! `FLEETMIG_BENCH_BUDGET` (seconds, 600), `FLEETMIG_BENCH_TX` (1; 0 leaves out `--tx
//! per-tenant`), `FLEETMIG_BENCH_PG` (`postgres://postgres@127.0.0.1:5432`);
//! `FLEETMIG_BENCH_KEEP=DIR` works in DIR and leaves the scripts and fleet files there.
//! Linux only: needs `psql`, GNU time (`/usr/bin/time`, Debian package `time`) and `/proc`,
//! which also gives the CPU time of the clients, of a local PostgreSQL server and of the rest.

use std::fmt::Write as _;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

const FLEETMIG: &str = env!("CARGO_BIN_EXE_fleetmig");
const GNU_TIME: &str = "/usr/bin/time";
/// Sessions to the server, for fleetmig (`-j` and `max_connections`) and for the floor.
const SESSIONS: usize = 8;
/// How long freed inodes count as recently deleted for ext4 (5 s once written out).
const INODE_AGE: Duration = Duration::from_secs(6);
/// A schema name that appears nowhere else in the scripts, replaced per tenant.
const PLACEHOLDER: &str = "fleetmig_bench_schema";
/// More transactions than this in other databases during a run mark it disturbed (the
/// bench's own admin queries before a run may reach the statistics late).
const FOREIGN_XACTS: i64 = 20;
/// The objects the last migration creates: a tenant that has it ran every migration.
const LAST_OBJECT: &str = "open_tasks";

/// The PostgreSQL migration set: a small SaaS schema growing over twelve releases.
const PG_MIGRATIONS: [(&str, &str); 12] = [
    (
        "create_accounts_and_users",
        "CREATE TABLE accounts (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE TABLE users (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id BIGINT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    email TEXT NOT NULL UNIQUE,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX users_account_id ON users (account_id);
INSERT INTO accounts (name) VALUES ('Default account');
INSERT INTO users (account_id, email)
VALUES (1, 'owner@example.com'), (1, 'ops@example.com'), (1, 'billing@example.com');
",
    ),
    (
        "add_users_display_name",
        "ALTER TABLE users ADD COLUMN display_name TEXT;\n",
    ),
    (
        "backfill_users_display_name",
        "UPDATE users SET display_name = split_part(email, '@', 1) WHERE display_name IS NULL;\n",
    ),
    (
        "users_display_name_not_null",
        "ALTER TABLE users ALTER COLUMN display_name SET NOT NULL;\n",
    ),
    (
        "create_projects",
        "CREATE TABLE projects (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id BIGINT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    title TEXT NOT NULL,
    archived BOOLEAN NOT NULL DEFAULT FALSE,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX projects_account_id ON projects (account_id) WHERE NOT archived;
INSERT INTO projects (account_id, title) VALUES (1, 'Onboarding');
",
    ),
    (
        "rename_projects_title",
        "ALTER TABLE projects RENAME COLUMN title TO name;\n",
    ),
    (
        "create_tasks",
        "CREATE TABLE tasks (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    project_id BIGINT NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    assignee_id BIGINT REFERENCES users (id) ON DELETE SET NULL,
    title TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'doing', 'done')),
    due_on DATE,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX tasks_project_id ON tasks (project_id);
CREATE INDEX tasks_assignee_id ON tasks (assignee_id);
INSERT INTO tasks (project_id, assignee_id, title) VALUES (1, 1, 'Invite the team'), (1, 2, 'Connect billing');
",
    ),
    (
        "add_accounts_settings",
        "ALTER TABLE accounts
    ADD COLUMN settings JSONB NOT NULL DEFAULT '{}'::jsonb,
    ADD COLUMN plan TEXT NOT NULL DEFAULT 'free';
",
    ),
    (
        "create_invoices",
        "CREATE TABLE invoices (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id BIGINT NOT NULL REFERENCES accounts (id),
    number INTEGER NOT NULL,
    amount_cents BIGINT NOT NULL CHECK (amount_cents >= 0),
    currency CHAR(3) NOT NULL DEFAULT 'EUR',
    issued_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (account_id, number)
);
",
    ),
    (
        "index_open_tasks_by_due_date",
        "CREATE INDEX tasks_open_due_on ON tasks (due_on) WHERE status <> 'done';\n",
    ),
    (
        "tasks_updated_at",
        "ALTER TABLE tasks ADD COLUMN updated_at TIMESTAMPTZ NOT NULL DEFAULT now();
CREATE FUNCTION touch_updated_at() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END;
$$;
CREATE TRIGGER tasks_touch BEFORE UPDATE ON tasks FOR EACH ROW EXECUTE FUNCTION touch_updated_at();
",
    ),
    (
        "create_open_tasks_view",
        "CREATE VIEW open_tasks AS
SELECT t.id, t.title, t.due_on, p.name AS project, u.display_name AS assignee
FROM tasks t
JOIN projects p ON p.id = t.project_id
LEFT JOIN users u ON u.id = t.assignee_id
WHERE t.status <> 'done';
",
    ),
];

/// The same releases in SQLite's dialect (no `SET NOT NULL`: an index takes its place).
const SQLITE_MIGRATIONS: [(&str, &str); 12] = [
    (
        "create_accounts_and_users",
        "CREATE TABLE accounts (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    created_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP
);
CREATE TABLE users (
    id INTEGER PRIMARY KEY,
    account_id INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    email TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP
);
CREATE INDEX users_account_id ON users (account_id);
INSERT INTO accounts (id, name) VALUES (1, 'Default account');
INSERT INTO users (account_id, email)
VALUES (1, 'owner@example.com'), (1, 'ops@example.com'), (1, 'billing@example.com');
",
    ),
    (
        "add_users_display_name",
        "ALTER TABLE users ADD COLUMN display_name TEXT;\n",
    ),
    (
        "backfill_users_display_name",
        "UPDATE users SET display_name = substr(email, 1, instr(email, '@') - 1) WHERE display_name IS NULL;\n",
    ),
    (
        "index_users_display_name",
        "CREATE INDEX users_display_name ON users (display_name);\n",
    ),
    (
        "create_projects",
        "CREATE TABLE projects (
    id INTEGER PRIMARY KEY,
    account_id INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    title TEXT NOT NULL,
    archived INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP
);
CREATE INDEX projects_account_id ON projects (account_id) WHERE archived = 0;
INSERT INTO projects (account_id, title) VALUES (1, 'Onboarding');
",
    ),
    (
        "rename_projects_title",
        "ALTER TABLE projects RENAME COLUMN title TO name;\n",
    ),
    (
        "create_tasks",
        "CREATE TABLE tasks (
    id INTEGER PRIMARY KEY,
    project_id INTEGER NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    assignee_id INTEGER REFERENCES users (id) ON DELETE SET NULL,
    title TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'doing', 'done')),
    due_on TEXT,
    created_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP
);
CREATE INDEX tasks_project_id ON tasks (project_id);
CREATE INDEX tasks_assignee_id ON tasks (assignee_id);
INSERT INTO tasks (project_id, assignee_id, title) VALUES (1, 1, 'Invite the team'), (1, 2, 'Connect billing');
",
    ),
    (
        "add_accounts_settings",
        "ALTER TABLE accounts ADD COLUMN settings TEXT NOT NULL DEFAULT '{}';
ALTER TABLE accounts ADD COLUMN plan TEXT NOT NULL DEFAULT 'free';
",
    ),
    (
        "create_invoices",
        "CREATE TABLE invoices (
    id INTEGER PRIMARY KEY,
    account_id INTEGER NOT NULL REFERENCES accounts (id),
    number INTEGER NOT NULL,
    amount_cents INTEGER NOT NULL CHECK (amount_cents >= 0),
    currency TEXT NOT NULL DEFAULT 'EUR',
    issued_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP,
    UNIQUE (account_id, number)
);
",
    ),
    (
        "index_open_tasks_by_due_date",
        "CREATE INDEX tasks_open_due_on ON tasks (due_on) WHERE status <> 'done';\n",
    ),
    (
        "tasks_updated_at",
        "ALTER TABLE tasks ADD COLUMN updated_at TEXT;
CREATE TRIGGER tasks_touch AFTER UPDATE ON tasks FOR EACH ROW WHEN NEW.updated_at IS OLD.updated_at
BEGIN
    UPDATE tasks SET updated_at = CURRENT_TIMESTAMP WHERE id = NEW.id;
END;
",
    ),
    (
        "create_open_tasks_view",
        "CREATE VIEW open_tasks AS
SELECT t.id, t.title, t.due_on, p.name AS project, u.display_name AS assignee
FROM tasks t
JOIN projects p ON p.id = t.project_id
LEFT JOIN users u ON u.id = t.assignee_id
WHERE t.status <> 'done';
",
    ),
];

/// What the environment asks for.
struct Config {
    tenants: usize,
    repeat: usize,
    sqlite: usize,
    sqlite_mem: usize,
    loop_tenants: usize,
    budget: Duration,
    pg: String,
}

fn env_number(name: &str, default: usize) -> usize {
    match std::env::var(name) {
        Ok(v) => v
            .trim()
            .parse()
            .unwrap_or_else(|_| fail(&format!("{name}={v}: not a whole number"))),
        Err(_) => default,
    }
}

impl Config {
    fn from_env() -> Config {
        let tenants = env_number("FLEETMIG_BENCH_TENANTS", 1000).max(1);
        Config {
            tenants,
            repeat: env_number("FLEETMIG_BENCH_REPEAT", 3).max(1),
            sqlite: env_number("FLEETMIG_BENCH_SQLITE", 5000),
            sqlite_mem: env_number("FLEETMIG_BENCH_SQLITE_MEM", 10_000),
            loop_tenants: env_number("FLEETMIG_BENCH_LOOP_TENANTS", 25).min(tenants),
            budget: Duration::from_secs(env_number("FLEETMIG_BENCH_BUDGET", 600) as u64),
            pg: std::env::var("FLEETMIG_BENCH_PG")
                .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".to_owned())
                .trim_end_matches('/')
                .to_owned(),
        }
    }
}

/// Stops the bench; unwinding drops the benchmark database and the temp folder.
fn fail(message: &str) -> ! {
    panic!("fleet bench: {message}")
}

/// Seconds per tick in `/proc` (`USER_HZ`, 100 on Linux).
const TICK: f64 = 0.01;

/// The fields of `/proc/PID/stat` after the command name, from the state (field 3) on.
fn proc_stat(pid: &str) -> Option<Vec<String>> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = text.rsplit_once(')')?;
    Some(rest.split_whitespace().map(str::to_owned).collect())
}

/// Fields 14 to 17 of a stat line (utime, stime, cutime, cstime), in seconds, summed from
/// `first` to `last`.
fn ticks(fields: &[String], first: usize, last: usize) -> f64 {
    (first..=last)
        .filter_map(|n| fields.get(n - 3)?.parse::<f64>().ok())
        .sum::<f64>()
        * TICK
}

/// CPU seconds used so far: the whole machine, the PostgreSQL server, kernel threads (the
/// file system's and block layer's share of fsync) and this bench's finished children
/// (fleetmig or psql).
#[derive(Debug, Clone, Copy, Default)]
struct Cpu {
    machine: f64,
    server: Option<f64>,
    kernel: f64,
    clients: f64,
}

/// Busy CPU seconds of the whole machine, from `/proc/stat`.
fn machine_busy() -> f64 {
    let text = fs::read_to_string("/proc/stat").unwrap_or_default();
    let values: Vec<f64> = text
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal: all but idle and iowait.
    [0, 1, 2, 5, 6, 7].iter().filter_map(|&i| values.get(i)).sum::<f64>() * TICK
}

/// Reads the CPU counters. A backend's time reaches the postmaster's children counters
/// when it exits, so server time is the postmaster's own and children's plus the time of
/// its live children.
struct CpuMeter {
    postmaster: Option<String>,
    cores: f64,
}

impl CpuMeter {
    fn read(&self) -> Cpu {
        let mut server = 0.0;
        let mut kernel = 0.0;
        let mut postmaster_seen = false;
        for entry in fs::read_dir("/proc").into_iter().flatten().flatten() {
            let name = entry.file_name();
            let Some(pid) = name.to_str().filter(|n| n.bytes().all(|b| b.is_ascii_digit())) else {
                continue;
            };
            let Some(fields) = proc_stat(pid) else { continue };
            let parent = fields.get(1).map(String::as_str);
            if Some(pid) == self.postmaster.as_deref() {
                postmaster_seen = true;
                server += ticks(&fields, 14, 17);
            } else if parent.is_some() && parent == self.postmaster.as_deref() {
                server += ticks(&fields, 14, 15);
            } else if pid == "2" || parent == Some("2") {
                kernel += ticks(&fields, 14, 15);
            }
        }
        Cpu {
            machine: machine_busy(),
            server: postmaster_seen.then_some(server),
            kernel,
            clients: proc_stat("self").map_or(0.0, |f| ticks(&f, 16, 17)),
        }
    }
}

/// One timed run.
#[derive(Debug, Clone, Copy)]
struct Sample {
    wall: f64,
    /// CPU seconds (user + system) of the measured clients: fleetmig, or the psql processes.
    client: f64,
    /// CPU seconds of the PostgreSQL server's processes, when the server is local.
    server: Option<f64>,
    /// CPU seconds of kernel threads (writeback, journal, block I/O).
    kernel: f64,
    /// Machine CPU seconds not accounted for by the three above: other processes, interrupts.
    other: f64,
    /// Transactions other databases of the server committed or rolled back meanwhile.
    foreign_xacts: i64,
    /// Checkpoints the server started meanwhile (each makes the next change to every page
    /// write a full page image to the WAL).
    checkpoints: i64,
    max_rss_kb: Option<u64>,
    /// The machine was quiet when the run started.
    quiet: bool,
    /// Seconds spent waiting for the machine to get quiet first.
    waited: f64,
}

impl Sample {
    /// The machine was busy before the run, other processes took more than a tenth of it
    /// during the run (with slack for the 10 ms resolution of the counters), or other
    /// clients of the server were at work.
    fn disturbed(&self, cores: f64) -> bool {
        !self.quiet || self.other > 0.10 * cores * self.wall + 0.1 || self.foreign_xacts > FOREIGN_XACTS
    }

    fn describe(&self, cores: f64) -> String {
        let server = self.server.map_or("?".to_owned(), |s| format!("{s:.1}"));
        let waited = if self.waited > 1.5 {
            format!(", waited {:.0} s for quiet", self.waited)
        } else {
            String::new()
        };
        let foreign = if self.foreign_xacts > FOREIGN_XACTS {
            format!(", {} transactions in other databases", self.foreign_xacts)
        } else {
            String::new()
        };
        let checkpoints = match self.checkpoints {
            0 => String::new(),
            n => format!(", {n} checkpoint(s)"),
        };
        format!(
            "{:.2} (client {:.2}, server {server}, kernel {:.1}, other {:.1}{checkpoints}{waited}{foreign}{})",
            self.wall,
            self.client,
            self.kernel,
            self.other,
            if self.disturbed(cores) { ", DISTURBED" } else { "" }
        )
    }
}

/// The last lines of a file, for a failure message.
fn tail(path: &Path) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

fn check_status(what: &str, status: std::io::Result<ExitStatus>, log: &Path) {
    match status {
        Ok(s) if s.success() => {}
        Ok(s) => fail(&format!("{what}: exited with {s}; output ends:\n{}", tail(log))),
        Err(e) => fail(&format!("{what}: could not start it: {e}")),
    }
}

/// Runs a command to completion, failing the bench if it fails; returns its output.
fn run(what: &str, cmd: &mut Command) -> String {
    let output = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| fail(&format!("{what}: could not start it: {e}")));
    if !output.status.success() {
        fail(&format!(
            "{what}: exited with {}:\n{}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn psql(url: &str) -> Command {
    let mut cmd = Command::new("psql");
    cmd.args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", url]);
    cmd
}

/// The benchmark's own database; dropped when this value is.
struct Database {
    server: String,
    name: String,
}

impl Database {
    fn url(&self) -> String {
        format!("{}/{}", self.server, self.name)
    }

    fn admin(&self, sql: &str) {
        run(
            &format!("psql -c \"{sql}\""),
            psql(&format!("{}/postgres", self.server)).args(["-c", sql]),
        );
    }

    /// Drops and recreates the database, then checkpoints so every timed run starts alike.
    ///
    /// Dropping the last run's database frees some 25,000 files. For a while after, ext4's
    /// inode allocator skips the recently freed inodes one by one (`recently_deleted` led
    /// the server's profile), so a run that starts right after a drop pays for the one
    /// before it, more with every repetition. Writing the freed inodes out and letting them
    /// age first keeps that out of every measurement alike.
    fn fresh(&self) {
        self.admin(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name));
        self.admin(&format!("CREATE DATABASE {}", self.name));
        self.admin("CHECKPOINT");
        let _ = Command::new("sync").status();
        std::thread::sleep(INODE_AGE);
    }

    fn query(&self, sql: &str) -> String {
        run(
            &format!("psql -c \"{sql}\""),
            psql(&self.url()).args(["-tA", "-c", sql]),
        )
        .trim()
        .to_owned()
    }

    /// The server's version and the settings that decide commit cost.
    fn describe(&self) -> String {
        self.query(
            "SELECT split_part(version(), ' on ', 1) || ', ssl ' || current_setting('ssl') \
             || ', fsync ' || current_setting('fsync') || ', synchronous_commit ' \
             || current_setting('synchronous_commit') || ', shared_buffers ' || current_setting('shared_buffers')",
        )
    }

    /// Transactions committed or rolled back so far in the server's other databases.
    fn foreign_xacts(&self) -> i64 {
        let sql = format!(
            "SELECT coalesce(sum(xact_commit + xact_rollback), 0) FROM pg_stat_database \
             WHERE datname IS NOT NULL AND datname NOT IN ('{}', 'postgres')",
            self.name
        );
        self.query(&sql).parse().unwrap_or(0)
    }

    /// Checkpoints the server has started so far.
    fn checkpoints(&self) -> i64 {
        let sql = "SELECT checkpoints_timed + checkpoints_req FROM pg_stat_bgwriter";
        self.query(sql).parse().unwrap_or(0)
    }

    /// Other clients of the server running a query right now.
    fn foreign_active(&self) -> i64 {
        let sql = "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' \
                   AND state <> 'idle' AND pid <> pg_backend_pid()";
        self.query(sql).parse().unwrap_or(0)
    }

    /// The postmaster's process id, when the server runs on this machine.
    fn postmaster(&self) -> Option<String> {
        let pid = self.query("SELECT pid FROM pg_stat_activity WHERE backend_type = 'checkpointer'");
        proc_stat(&pid)?.get(1).cloned()
    }

    /// Fails the bench unless `tenants` schemas hold every migration and its history row.
    fn verify(&self, what: &str, tenants: usize, migrations: usize) {
        let done = self.query(&format!(
            "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.relname = '{LAST_OBJECT}' AND n.nspname LIKE 't\\_%'"
        ));
        // In transactions of 500 tables: one statement over 10,000 history tables ran out
        // of the server's lock table (max_locks_per_transaction).
        let schemas = self.query("SELECT string_agg(nspname, ' ') FROM pg_namespace WHERE nspname LIKE 't\\_%'");
        let names: Vec<&str> = schemas.split_whitespace().collect();
        let mut counted = 0u64;
        for chunk in names.chunks(500) {
            let each: Vec<String> = chunk
                .iter()
                .map(|s| format!("SELECT count(*) AS c FROM {s}.fleetmig_history"))
                .collect();
            let sum = self.query(&format!(
                "SELECT coalesce(sum(c), 0) FROM ({}) u",
                each.join(" UNION ALL ")
            ));
            counted += sum
                .parse::<u64>()
                .unwrap_or_else(|_| fail(&format!("{what}: counting history rows: {sum}")));
        }
        let rows = counted.to_string();
        let want_rows = (tenants * migrations).to_string();
        if done != tenants.to_string() || rows != want_rows {
            fail(&format!(
                "{what}: expected {tenants} migrated schemas and {want_rows} history rows, found {done} and {rows}"
            ));
        }
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        let _ = psql(&format!("{}/postgres", self.server))
            .args(["-c", &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name)])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

fn write_migrations(dir: &Path, set: &[(&str, &str)]) {
    fs::create_dir_all(dir).expect("creating a migrations folder");
    for (i, (name, sql)) in set.iter().enumerate() {
        fs::write(dir.join(format!("{:04}_{name}.up.sql", i + 1)), sql).expect("writing a migration");
    }
}

fn tenant_id(i: usize, count: usize) -> String {
    let width = count.to_string().len().max(4);
    format!("{i:0width$}")
}

fn write_fleet(path: &Path, header: &str, count: usize) {
    let mut text = header.to_owned();
    text.push_str("tenants:\n");
    for i in 1..=count {
        let _ = writeln!(text, "  - id: \"{}\"", tenant_id(i, count));
    }
    fs::write(path, text).expect("writing a fleet file");
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("the bench's paths are UTF-8")
}

/// `fleetmig sql` for the placeholder schema, from version `from` to `to`.
fn offline_script(bin: &Path, migrations: &Path, from: usize, to: usize) -> String {
    run(
        "fleetmig sql",
        Command::new(bin).args([
            "sql",
            "--engine",
            "postgres",
            "--schema",
            PLACEHOLDER,
            "--migrations",
            path_str(migrations),
            "--from",
            &from.to_string(),
            "--to",
            &to.to_string(),
        ]),
    )
}

fn for_tenant(script: &str, id: &str) -> String {
    script.replace(&format!("\"{PLACEHOLDER}\""), &format!("\"t_{id}\""))
}

fn median(samples: &[f64]) -> Option<f64> {
    let mut v = samples.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => None,
        n if n % 2 == 1 => Some(v[n / 2]),
        n => Some((v[n / 2 - 1] + v[n / 2]) / 2.0),
    }
}

/// Every sample of every measurement, in run order.
#[derive(Default)]
struct Results {
    floor: Vec<Sample>,
    up: Vec<Sample>,
    up_tx: Vec<Sample>,
    noop: Vec<Sample>,
    loop_subset: Vec<Sample>,
    sqlite: Vec<Sample>,
    sqlite_mem: Option<Sample>,
}

/// The work folder and what every repetition needs.
struct Bench {
    cfg: Config,
    /// A copy of the release binary, so a rebuild during the run cannot swap it.
    bin: PathBuf,
    dir: PathBuf,
    db: Database,
    meter: CpuMeter,
    pg_fleet: PathBuf,
    pg_migrations: PathBuf,
    sqlite_migrations: PathBuf,
    /// One psql input per floor session, each holding its share of the tenants.
    floor_files: Vec<PathBuf>,
    /// Per loop tenant, one file per migration, in the order a shell loop would run them.
    loop_files: Vec<PathBuf>,
    has_tx: bool,
}

impl Bench {
    /// Waits (up to 20 s) until the machine is nearly idle and no other client of the server
    /// is running a query, so a measurement does not start on top of someone else's work or
    /// the server's leftover autovacuum. Returns how long it waited, and false when it never
    /// got quiet.
    fn wait_quiet(&self) -> (f64, bool) {
        let started = Instant::now();
        loop {
            let before = machine_busy();
            std::thread::sleep(Duration::from_millis(1000));
            let idle = (machine_busy() - before) / self.meter.cores < 0.15;
            if idle && self.db.foreign_active() == 0 {
                return (started.elapsed().as_secs_f64(), true);
            }
            if started.elapsed() > Duration::from_secs(20) {
                return (started.elapsed().as_secs_f64(), false);
            }
        }
    }

    /// Times `work` (which returns the peak RSS when it knows it) and what it cost in CPU.
    fn measure(&self, work: impl FnOnce() -> Option<u64>) -> Sample {
        let (waited, quiet) = self.wait_quiet();
        let foreign_before = self.db.foreign_xacts();
        let checkpoints_before = self.db.checkpoints();
        let before = self.meter.read();
        let started = Instant::now();
        let max_rss_kb = work();
        let wall = started.elapsed().as_secs_f64();
        let after = self.meter.read();
        let client = after.clients - before.clients;
        let server = after.server.zip(before.server).map(|(a, b)| a - b);
        // A kernel worker that exits takes its counts with it.
        let kernel = (after.kernel - before.kernel).max(0.0);
        let machine = after.machine - before.machine;
        std::thread::sleep(Duration::from_millis(1100));
        Sample {
            wall,
            client,
            server,
            kernel,
            other: (machine - client - kernel - server.unwrap_or(0.0)).max(0.0),
            foreign_xacts: self.db.foreign_xacts() - foreign_before,
            checkpoints: self.db.checkpoints() - checkpoints_before,
            max_rss_kb,
            quiet,
            waited,
        }
    }

    /// `fleetmig up` under GNU time (for its peak RSS), output to a log.
    fn fleetmig_up(&self, what: &str, fleet: &Path, migrations: &Path, extra: &[&str]) -> Sample {
        let log = self.dir.join("fleetmig.log");
        let time_file = self.dir.join("time.out");
        let mut cmd = Command::new(GNU_TIME);
        cmd.args(["-f", "%M", "-o", path_str(&time_file), path_str(&self.bin), "up"])
            .args(["--fleet", path_str(fleet), "--migrations", path_str(migrations)])
            .args(["-j", &SESSIONS.to_string(), "--max-failures", "all"])
            .args(extra)
            .current_dir(&self.dir)
            .stdin(Stdio::null());
        self.measure(|| {
            let out = File::create(&log).expect("creating the log file");
            let err = out.try_clone().expect("cloning the log file handle");
            check_status(what, cmd.stdout(out).stderr(err).status(), &log);
            let text = fs::read_to_string(&time_file).expect("reading GNU time's output");
            text.lines().last().and_then(|l| l.trim().parse().ok())
        })
    }

    fn floor(&self) -> Sample {
        self.db.fresh();
        let url = self.db.url();
        let sample = self.measure(|| {
            let children: Vec<_> = self
                .floor_files
                .iter()
                .map(|f| {
                    let log = File::create(f.with_extension("log")).expect("creating a log file");
                    let err = log.try_clone().expect("cloning the log file handle");
                    psql(&url)
                        .arg("-f")
                        .arg(f)
                        .stdin(Stdio::null())
                        .stdout(log)
                        .stderr(err)
                        .spawn()
                        .unwrap_or_else(|e| fail(&format!("starting psql: {e}")))
                })
                .collect();
            for (f, mut child) in self.floor_files.iter().zip(children) {
                check_status("floor psql session", child.wait(), &f.with_extension("log"));
            }
            None
        });
        self.db.verify("floor", self.cfg.tenants, PG_MIGRATIONS.len());
        sample
    }

    fn loop_subset(&self) -> Sample {
        self.db.fresh();
        let url = self.db.url();
        let log = self.dir.join("loop.log");
        let sample = self.measure(|| {
            for f in &self.loop_files {
                let out = File::create(&log).expect("creating the loop log");
                let err = out.try_clone().expect("cloning the log file handle");
                let status = psql(&url).arg("-f").arg(f).stdout(out).stderr(err).status();
                check_status("per-tenant psql loop", status, &log);
            }
            None
        });
        self.db
            .verify("per-tenant loop", self.cfg.loop_tenants, PG_MIGRATIONS.len());
        sample
    }

    fn sqlite_up(&self, count: usize) -> Sample {
        let dir = self.dir.join("sqlite");
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("creating the SQLite fleet folder");
        let fleet = dir.join("tenants.yaml");
        write_fleet(&fleet, "defaults:\n  url: \"sqlite://data/{id}.db\"\n", count);
        let what = format!("fleetmig up ({count} SQLite tenants)");
        let sample = self.fleetmig_up(&what, &fleet, &self.sqlite_migrations, &[]);
        let files = fs::read_dir(dir.join("data")).map_or(0, |d| d.count());
        if files < count {
            fail(&format!("{what}: {count} tenants but {files} database files"));
        }
        let _ = fs::remove_dir_all(&dir);
        sample
    }

    /// One repetition of every repeated measurement. The machine's speed drifts over
    /// minutes, so the three full PostgreSQL runs take turns going first, and each
    /// repetition's ratios to its own floor are reported too.
    fn repetition(&self, k: usize, results: &mut Results) {
        let (n, m) = (self.cfg.tenants, PG_MIGRATIONS.len());
        for part in (0..3).map(|i| (i + k) % 3) {
            match part {
                0 => results.floor.push(self.floor()),
                1 => {
                    self.db.fresh();
                    let up = self.fleetmig_up("fleetmig up", &self.pg_fleet, &self.pg_migrations, &[]);
                    results.up.push(up);
                    self.db.verify("fleetmig up", n, m);
                    self.db.query("CHECKPOINT");
                    let what = "no-op fleetmig up";
                    let noop = self.fleetmig_up(what, &self.pg_fleet, &self.pg_migrations, &[]);
                    results.noop.push(noop);
                    self.db.verify(what, n, m);
                }
                _ if self.has_tx => {
                    self.db.fresh();
                    let what = "fleetmig up --tx per-tenant";
                    let extra = ["--tx", "per-tenant"];
                    let tx = self.fleetmig_up(what, &self.pg_fleet, &self.pg_migrations, &extra);
                    results.up_tx.push(tx);
                    self.db.verify(what, n, m);
                }
                _ => {}
            }
        }
        if self.cfg.loop_tenants > 0 {
            results.loop_subset.push(self.loop_subset());
        }
        if self.cfg.sqlite > 0 {
            results.sqlite.push(self.sqlite_up(self.cfg.sqlite));
        }
    }
}

/// Writes the migration sets, the fleet file and every psql script.
fn setup(cfg: Config, dir: &Path) -> Bench {
    let dir = dir.to_owned();
    fs::create_dir_all(&dir).expect("creating the work folder");
    let pg_migrations = dir.join("pg-migrations");
    let sqlite_migrations = dir.join("sqlite-migrations");
    write_migrations(&pg_migrations, &PG_MIGRATIONS);
    write_migrations(&sqlite_migrations, &SQLITE_MIGRATIONS);
    let bin = dir.join("fleetmig");
    fs::copy(FLEETMIG, &bin).unwrap_or_else(|e| fail(&format!("copying {FLEETMIG}: {e}")));

    let db = Database {
        server: cfg.pg.clone(),
        name: "fleetmig_bench".to_owned(),
    };
    let pg_fleet = dir.join("pg-tenants.yaml");
    let header = format!(
        "hosts:\n  pg:\n    url: \"{}\"\n    max_connections: {SESSIONS}\ndefaults:\n  host: pg\n  schema: \"t_{{id}}\"\n",
        db.url()
    );
    write_fleet(&pg_fleet, &header, cfg.tenants);

    let whole = offline_script(&bin, &pg_migrations, 0, PG_MIGRATIONS.len());
    let mut shares = vec![String::new(); SESSIONS];
    for i in 1..=cfg.tenants {
        shares[(i - 1) % SESSIONS].push_str(&for_tenant(&whole, &tenant_id(i, cfg.tenants)));
    }
    let floor_files = shares
        .into_iter()
        .enumerate()
        .map(|(k, text)| {
            let path = dir.join(format!("floor-{k}.sql"));
            fs::write(&path, text).expect("writing a floor script");
            path
        })
        .collect();

    let steps: Vec<String> = (1..=PG_MIGRATIONS.len())
        .map(|v| offline_script(&bin, &pg_migrations, v - 1, v))
        .collect();
    let loop_dir = dir.join("loop");
    fs::create_dir_all(&loop_dir).expect("creating the loop folder");
    let mut loop_files = Vec::new();
    for i in 1..=cfg.loop_tenants {
        let id = tenant_id(i, cfg.tenants);
        for (v, step) in steps.iter().enumerate() {
            let path = loop_dir.join(format!("{id}-{:04}.sql", v + 1));
            fs::write(&path, for_tenant(step, &id)).expect("writing a loop script");
            loop_files.push(path);
        }
    }

    let help = run("fleetmig up --help", Command::new(&bin).args(["up", "--help"]));
    db.fresh();
    let meter = CpuMeter {
        postmaster: db.postmaster(),
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()) as f64,
    };
    Bench {
        cfg,
        bin,
        dir,
        db,
        meter,
        pg_fleet,
        pg_migrations,
        sqlite_migrations,
        floor_files,
        loop_files,
        // `FLEETMIG_BENCH_TX=0` leaves it out (at 10,000 tenants each cold run takes half an hour).
        has_tx: help.contains("--tx") && env_number("FLEETMIG_BENCH_TX", 1) != 0,
    }
}

/// The commit the binary was built from, when the crate is a git checkout.
fn revision() -> String {
    let git = |args: &[&str]| {
        Command::new("git")
            .arg("-C")
            .arg(env!("CARGO_MANIFEST_DIR"))
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    match git(&["rev-parse", "--short", "HEAD"]) {
        Some(head) => match git(&["status", "--porcelain", "--", "src", "Cargo.toml"]) {
            Some(s) if !s.is_empty() => format!("{head} + uncommitted changes"),
            _ => head,
        },
        None => "unknown revision".to_owned(),
    }
}

fn secs(v: f64) -> String {
    format!("{v:.2} s")
}

fn mb(kb: u64) -> String {
    format!("{:.1} MB", kb as f64 / 1024.0)
}

fn verdict(ok: bool) -> &'static str {
    if ok { "PASS" } else { "FAIL" }
}

/// The samples a median is taken over: the undisturbed ones, when there are any.
fn clean(v: &[Sample], cores: f64) -> Vec<Sample> {
    let good: Vec<Sample> = v.iter().filter(|s| !s.disturbed(cores)).copied().collect();
    if good.is_empty() { v.to_vec() } else { good }
}

/// The median of `f` over the clean samples.
fn median_of(v: &[Sample], cores: f64, f: impl Fn(&Sample) -> Option<f64>) -> Option<f64> {
    median(&clean(v, cores).iter().filter_map(f).collect::<Vec<_>>())
}

/// The median over repetitions of `b`'s wall time over `a`'s in the same repetition,
/// from the pairs where both are clean when there are any.
fn paired(a: &[Sample], b: &[Sample], cores: f64) -> Option<f64> {
    let pairs: Vec<(&Sample, &Sample)> = a.iter().zip(b).collect();
    let good: Vec<f64> = pairs
        .iter()
        .filter(|(x, y)| !x.disturbed(cores) && !y.disturbed(cores))
        .map(|(x, y)| y.wall / x.wall)
        .collect();
    if good.is_empty() {
        median(&pairs.iter().map(|(x, y)| y.wall / x.wall).collect::<Vec<_>>())
    } else {
        median(&good)
    }
}

/// How many samples a median stands on, when some were left out.
fn basis(v: &[Sample], cores: f64) -> String {
    let good = v.iter().filter(|s| !s.disturbed(cores)).count();
    match good {
        g if g == v.len() => String::new(),
        0 => format!(" (all {} disturbed)", v.len()),
        g => format!(" ({g} clean of {})", v.len()),
    }
}

fn report(b: &Bench, r: &Results, notes: &mut Vec<String>) {
    let cfg = &b.cfg;
    let n = cfg.tenants;
    let cores = b.meter.cores;
    let wall = |v: &[Sample]| median_of(v, cores, |s| Some(s.wall));
    let floor = wall(&r.floor);
    let up = wall(&r.up);
    // The verdict goes by the per-repetition ratio: it cancels the machine's drift.
    let vs_floor = |x: f64, runs: &[Sample], ok: fn(f64) -> bool| match (floor, paired(&r.floor, runs, cores)) {
        (Some(f), Some(p)) => format!("{:.2}x floor; per repetition {p:.2}x, {}", x / f, verdict(ok(p))),
        _ => "n/a".to_owned(),
    };
    let mut rows: Vec<[String; 4]> = Vec::new();
    if let Some(floor) = floor {
        rows.push([
            format!("floor: the same SQL for {n} PG tenants over {SESSIONS} parallel psql sessions"),
            secs(floor) + &basis(&r.floor, cores),
            "reference".into(),
            "1.00x".into(),
        ]);
    }
    if let Some(up) = up {
        rows.push([
            format!("fleetmig up -j {SESSIONS}, {n} PG schema tenants"),
            secs(up) + &basis(&r.up, cores),
            "<= 1.10x floor".into(),
            vs_floor(up, &r.up, |x| x <= 1.10),
        ]);
    }
    rows.push(match wall(&r.up_tx) {
        Some(tx) => [
            format!("fleetmig up -j {SESSIONS} --tx per-tenant, {n} PG tenants"),
            secs(tx) + &basis(&r.up_tx, cores),
            "< 1.00x floor".into(),
            vs_floor(tx, &r.up_tx, |x| x < 1.0),
        ],
        None => [
            "fleetmig up --tx per-tenant".into(),
            "not measured".into(),
            "< 1.00x floor".into(),
            "FLEETMIG_BENCH_TX=0, or `fleetmig up --help` lists no --tx".into(),
        ],
    });
    if let Some(noop) = wall(&r.noop) {
        rows.push([
            format!("no-op fleetmig up, {n} PG tenants at head"),
            secs(noop) + &basis(&r.noop, cores),
            "< 0.5 s".into(),
            format!("{:.2} ms/tenant, {}", noop * 1000.0 / n as f64, verdict(noop < 0.5)),
        ]);
    }
    if let Some(sub) = wall(&r.loop_subset) {
        let scaled = sub * n as f64 / cfg.loop_tenants as f64;
        rows.push([
            format!(
                "per-tenant loop (`psql -f` per tenant per migration), EXTRAPOLATED to {n} tenants \
                 from {} ({sub:.2} s measured)",
                cfg.loop_tenants
            ),
            secs(scaled) + &basis(&r.loop_subset, cores),
            "report".into(),
            up.map_or("n/a".into(), |u| format!("loop / fleetmig = {:.1}x", scaled / u)),
        ]);
    }
    if let Some(cpu) = median_of(&r.up, cores, |s| Some(s.client)) {
        let share = median_of(&r.up, cores, |s| Some(s.client / s.wall)).unwrap_or(0.0);
        rows.push([
            format!("fleetmig's own CPU (user+sys) during the {n}-tenant run"),
            secs(cpu) + &basis(&r.up, cores),
            "report".into(),
            format!(
                "{:.1}% of wall ({:.1}% of {cores} cores)",
                share * 100.0,
                share * 100.0 / cores
            ),
        ]);
    }
    let server = |v: &[Sample]| median_of(v, cores, |s| s.server);
    if let (Some(f), Some(u)) = (server(&r.floor), server(&r.up)) {
        rows.push([
            "PostgreSQL server CPU: fleetmig up run (floor run)".into(),
            format!("{u:.1} s ({f:.1} s)"),
            "report".into(),
            format!("{:.2}x the floor's", u / f),
        ]);
    }
    if let Some(rss) = r.up.iter().filter_map(|s| s.max_rss_kb).max() {
        rows.push([
            format!("fleetmig peak RSS, {n} PG tenants"),
            mb(rss),
            "report".into(),
            String::new(),
        ]);
    }
    if let Some(s) = wall(&r.sqlite) {
        rows.push([
            format!("fleetmig up -j {SESSIONS}, {} SQLite tenants", cfg.sqlite),
            secs(s) + &basis(&r.sqlite, cores),
            "report".into(),
            format!("{:.2} ms/tenant", s * 1000.0 / cfg.sqlite as f64),
        ]);
    }
    if let Some(m) = r.sqlite_mem {
        let rss = m.max_rss_kb.unwrap_or(0);
        rows.push([
            format!(
                "fleetmig up peak RSS, {} SQLite tenants (one run, {:.2} s)",
                cfg.sqlite_mem, m.wall
            ),
            mb(rss),
            "< 64 MB".into(),
            verdict(rss < 64 * 1024).into(),
        ]);
    }

    println!();
    println!("| measurement | median | target | ratio / verdict |");
    println!("| --- | --- | --- | --- |");
    for [a, b, c, d] in &rows {
        println!("| {a} | {b} | {c} | {d} |");
    }
    println!();
    println!("Samples in run order: wall s (CPU s of the clients, the PostgreSQL server, kernel threads, other):");
    let lists: [(&str, &[Sample]); 6] = [
        ("floor", &r.floor),
        ("fleetmig up", &r.up),
        ("fleetmig up --tx per-tenant", &r.up_tx),
        ("no-op up", &r.noop),
        ("per-tenant loop, measured part", &r.loop_subset),
        ("SQLite up", &r.sqlite),
    ];
    let memory = r
        .sqlite_mem
        .as_ref()
        .map(|s| ("SQLite memory run", std::slice::from_ref(s)));
    for (name, samples) in lists.into_iter().chain(memory) {
        if samples.is_empty() {
            continue;
        }
        let text: Vec<String> = samples.iter().map(|s| s.describe(cores)).collect();
        println!("- {name}: {}", text.join("; "));
    }
    let disturbed = [&r.floor, &r.up, &r.up_tx, &r.noop, &r.loop_subset, &r.sqlite]
        .iter()
        .flat_map(|v| v.iter())
        .filter(|s| s.disturbed(cores))
        .count();
    if disturbed > 0 {
        notes.push(format!(
            "{disturbed} sample(s) DISTURBED (the machine was busy before they started, other processes used over \
             10% of it, or other databases of the server were in use) and left out of the medians where a clean \
             sample exists"
        ));
    }
    if b.meter.postmaster.is_none() {
        notes.push("the PostgreSQL server is not on this machine (or not visible in /proc): no server CPU".into());
    }
    for note in notes {
        println!("Note: {note}");
    }
}

fn main() {
    let cfg = Config::from_env();
    if !Path::new(GNU_TIME).exists() {
        fail("needs GNU time at /usr/bin/time (Debian: `apt-get install time`)");
    }
    run("psql --version", Command::new("psql").arg("--version"));
    let temp = tempfile::Builder::new()
        .prefix("fleetmig-bench-")
        .tempdir()
        .expect("creating a temp folder");
    let dir = std::env::var_os("FLEETMIG_BENCH_KEEP").map_or_else(|| temp.path().to_owned(), PathBuf::from);
    let started = Instant::now();
    let bench = setup(cfg, &dir);
    let cfg = &bench.cfg;
    let version = run("fleetmig --version", Command::new(&bench.bin).arg("--version"));
    println!(
        "fleetmig fleet benchmark: {} ({}), {FLEETMIG}",
        version.trim(),
        revision()
    );
    println!(
        "{} PostgreSQL tenants (schema per tenant in one database, max_connections {SESSIONS}), {} migrations; \
         {} repetitions; per-tenant loop measured on {} tenants; {} SQLite tenants, peak memory at {}",
        cfg.tenants,
        PG_MIGRATIONS.len(),
        cfg.repeat,
        cfg.loop_tenants,
        cfg.sqlite,
        cfg.sqlite_mem
    );
    println!(
        "server: {}; {} CPUs; --tx per-tenant {}",
        bench.db.describe(),
        bench.meter.cores,
        if bench.has_tx { "measured" } else { "not measured" }
    );

    let mut results = Results::default();
    let mut notes = Vec::new();
    if cfg.sqlite_mem > 0 {
        eprintln!("fleet bench: peak memory, {} SQLite tenants", cfg.sqlite_mem);
        results.sqlite_mem = Some(bench.sqlite_up(cfg.sqlite_mem));
    }
    let mut repeat = cfg.repeat;
    let mut done = 0;
    while done < repeat {
        let rep_started = Instant::now();
        eprintln!("fleet bench: repetition {} of {repeat}", done + 1);
        bench.repetition(done, &mut results);
        done += 1;
        let per_rep = rep_started.elapsed().as_secs_f64();
        let left = cfg.budget.saturating_sub(started.elapsed()).as_secs_f64();
        let fits = (left / per_rep) as usize;
        if done < repeat && fits < repeat - done {
            let reduced = done + fits;
            notes.push(format!(
                "repetitions reduced from {repeat} to {reduced}: one takes {per_rep:.0} s and the budget is {} s \
                 (FLEETMIG_BENCH_BUDGET)",
                cfg.budget.as_secs()
            ));
            repeat = reduced;
        }
    }
    notes.push(format!("whole bench took {:.0} s", started.elapsed().as_secs_f64()));
    if cfg.loop_tenants > 0 {
        notes.push(format!(
            "the per-tenant loop is measured on {} tenants and scaled linearly to {}",
            cfg.loop_tenants, cfg.tenants
        ));
    }
    report(&bench, &results, &mut notes);
}
