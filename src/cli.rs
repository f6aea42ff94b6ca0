//! Command-line arguments: plain data for clap. `app` turns them into actions.

use std::num::NonZeroU32;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::model::bounds::{self, DAY, HOUR, MS, SECOND};
use crate::model::fleet::Engine;
use crate::model::foreign::Tool;
use crate::model::lint::LintMode;
use crate::model::migration::{Layout, Version};
use crate::model::policy::WaveSpec;
use crate::model::policy::{MaxFailures, MaxSkipped, RollbackPolicy};
use crate::model::window::Window;
use crate::plan::select::{Partition, Selector};

#[derive(Debug, Parser)]
#[command(
    name = "fleetmig",
    version,
    about = "Apply versioned SQL migrations across a fleet of tenant databases or schemas",
    after_help = ENVIRONMENT
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// Shown below every command's options: what the environment changes.
const ENVIRONMENT: &str = "\
Environment:
  FLEETMIG_LOG     Diagnostic log on stderr, as tracing filter directives: `debug`,
                   `fleetmig=debug`, `sqlx=info,fleetmig=trace` [default: off]
  NO_COLOR         When set (and not empty), the log is never coloured; it is coloured only
                   when stderr is a terminal
  FLEETMIG_FLEET, FLEETMIG_MIGRATIONS, FLEETMIG_LAYOUT, FLEETMIG_LEDGER,
  FLEETMIG_PARTITION:
                   --fleet, --migrations, --layout, --ledger, --partition

Exit codes: 0 success or nothing to do; 1 a tenant failed, was skipped or is not current;
2 usage or configuration error, nothing touched; 3 a run ran but its report could not be
written; 141 standard output closed early (`| head`) by a command that only reads.";

/// Options every command takes, shown under their own heading.
#[derive(Debug, Args)]
#[command(next_help_heading = "Global options")]
pub struct Global {
    /// Where runs are recorded [default: the fleet file's `ledger:`, else a SQLite file
    /// beside the fleet file, `<name>.ledger.db`].
    #[arg(
        long,
        global = true,
        env = "FLEETMIG_LEDGER",
        hide_env_values = true,
        value_name = "URL"
    )]
    pub ledger: Option<String>,
    /// The fleet file.
    #[arg(
        long,
        global = true,
        default_value = "tenants.yaml",
        env = "FLEETMIG_FLEET",
        value_name = "FILE"
    )]
    pub fleet: PathBuf,
    /// The migrations folder [default: the fleet file's `migrations:`, else `migrations`].
    #[arg(long, global = true, env = "FLEETMIG_MIGRATIONS", value_name = "DIR")]
    pub migrations: Option<PathBuf>,
    /// The migrations folder's layout: fleetmig (also sqlx, golang-migrate), sqlx-simple,
    /// diesel, flyway or dbmate. [default: detected from the folder]
    #[arg(long, global = true, env = "FLEETMIG_LAYOUT", value_name = "LAYOUT")]
    pub layout: Option<Layout>,
    /// Run pending migrations older than a tenant's newest applied one (Flyway's
    /// outOfOrder) instead of refusing the tenant [default: the fleet file's
    /// `migrations: { out_of_order: true }`, else off].
    #[arg(long, global = true)]
    pub out_of_order: bool,
    /// Pick tenants: `id=acme`, `tier=free,region=eu` (all terms), `key!=value`, `*` wildcards.
    /// Repeat to pick tenants matching any.
    #[arg(long = "select", global = true, value_name = "EXPR")]
    pub select: Vec<Selector>,
    /// Tenants in flight at once.
    #[arg(short = 'j', long, global = true, value_name = "N", default_value_t = 8, value_parser = |s: &str| bounds::number(s, 1usize, 1000))]
    pub concurrency: usize,
    /// Only this share of the fleet: K of N (`2/4`), by a hash of each tenant's id, so N
    /// runners that know nothing of each other (a Kubernetes Indexed Job, a CI matrix)
    /// migrate every tenant once between them. A share can be empty: nothing to do, exit 0.
    #[arg(long, global = true, env = "FLEETMIG_PARTITION", value_name = "K/N")]
    pub partition: Option<Partition>,
    /// Output: text for people, json for machines (github: workflow annotations, for
    /// `lint` only; openmetrics: Prometheus' exposition format, for `status` only).
    #[arg(long, global = true, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Give up on a tenant that does not answer within this time (1ms to 1h).
    #[arg(long, global = true, value_name = "DURATION", value_parser = |s: &str| bounds::duration(s, MS, HOUR), default_value = "10s")]
    pub connect_timeout: Duration,
    /// Wait this long for another runner's lock on a tenant (up to 1 day).
    #[arg(long, global = true, value_name = "DURATION", value_parser = |s: &str| bounds::duration(s, Duration::ZERO, DAY), default_value = "60s")]
    pub lock_wait: Duration,
    /// PostgreSQL lock_timeout for migration statements (0s: none; up to 24 days).
    #[arg(long, global = true, value_name = "DURATION", value_parser = pg_timeout, default_value = "10s")]
    pub lock_timeout: Duration,
    /// PostgreSQL statement_timeout for migration statements (0s: none; up to 24 days).
    #[arg(long, global = true, value_name = "DURATION", value_parser = pg_timeout, default_value = "0s")]
    pub statement_timeout: Duration,
}

/// How `up` and `down` roll out: waves, gates, limits, stop and rollback.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Rollout options")]
pub struct Rollout {
    /// Tenants that form the first wave, besides those marked `canary: true`.
    #[arg(long, value_name = "EXPR")]
    pub canary: Vec<Selector>,
    /// The waves after the canaries: cumulative sizes (`1,10%,50%,100%`), or, one per
    /// --waves, a selector (`region=eu,tier!=enterprise`: the tenants not placed yet that
    /// match) or `*` (all left). With selectors, every tenant must be placed: end with `*`.
    #[arg(long, value_name = "WAVES")]
    pub waves: Vec<WaveSpec>,
    /// Run the canary wave only (tenants marked `canary: true` or matching --canary). With
    /// --partition K/N, the whole fleet's canaries run in share 1 and the other shares do
    /// nothing, so one job template can run it on every runner first.
    #[arg(long)]
    pub canary_only: bool,
    /// Stop after this many failed tenants (`3`), this share (`10%`), or never (`all`).
    /// [default: the fleet file's `rollout.max_failures`, else 1]
    #[arg(long)]
    pub max_failures: Option<MaxFailures>,
    /// Stop after this many skipped tenants (drifted, dirty, locked, unreachable): `3`,
    /// `10%`, or never (`all`); `canary`: a skipped canary stops the run, other skipped
    /// tenants do not. [default: the fleet file's `rollout.max_skipped`, else `canary`]
    #[arg(long)]
    pub max_skipped: Option<MaxSkipped>,
    /// After this many connection attempts in a row to one host failed (refused, timed
    /// out; a tenant's retries count), skip the host's tenants not started yet, untried, as
    /// `unreachable`; one probes it again at the next wave or 30s later. `0`: never. Skipped tenants count
    /// against --max-skipped. [default: the fleet file's `rollout.host_failures`, else 3]
    #[arg(long, value_name = "K", value_parser = |s: &str| bounds::number(s, 0u32, 100_000))]
    pub host_failures: Option<u32>,
    /// What to bring back to its start version when the run stops early.
    /// [default: the fleet file's `rollout.rollback`, else failed]
    #[arg(long, value_enum)]
    pub rollback: Option<RollbackPolicy>,
    /// Wait this long after each wave before the next (up to 7 days).
    #[arg(long, value_name = "DURATION", value_parser = bake)]
    pub bake: Option<Duration>,
    /// A query run on every tenant of a finished wave; each must return true to go on.
    /// Tried once on the first tenant before wave 1: an error there (but for a missing
    /// table, column or function, which a migration may create) stops the run before
    /// anything changes.
    #[arg(long, value_name = "SQL")]
    pub check: Option<String>,
    /// Start tenants only in this change window, as `Mon-Fri 02:00-05:00 Europe/Copenhagen`
    /// (days optional; `22:00-02:00` runs past midnight). Outside it the run waits; tenants
    /// in flight finish. [default: the fleet file's `rollout.window`, else any time]
    #[arg(long, value_name = "WINDOW")]
    pub window: Option<Window>,
    /// Ask on the terminal before each next wave.
    #[arg(long)]
    pub confirm: bool,
    /// Answer yes to --confirm, and to a `down` that takes tenants to version 0 (needed
    /// without a terminal).
    #[arg(long)]
    pub yes: bool,
    /// Stop cleanly after this wave.
    #[arg(long, value_name = "WAVE", value_parser = |s: &str| bounds::number(s, 1usize, 10_000))]
    pub pause_after: Option<usize>,
    /// Tenant starts per second.
    #[arg(long, value_name = "N", value_parser = per_second)]
    pub rate: Option<NonZeroU32>,
    /// Tenant starts allowed at once under --rate (default: the rate).
    #[arg(long, value_name = "N", requires = "rate", value_parser = per_second)]
    pub burst: Option<NonZeroU32>,
    /// One transaction per migration, or one per tenant (PostgreSQL, SQLite): a tenant's
    /// pending migrations commit together or not at all. [default: per-migration]
    #[arg(long, value_enum)]
    pub tx: Option<TxMode>,
    /// Keep trying a tenant this long after its first transient error (connection lost or
    /// refused, lock timeout, serialization failure, deadlock, too many connections), with
    /// capped, jittered backoff: a server restart or failover is ridden out. `0s`: never
    /// retry. SQL errors in a migration are never retried. [default: 60s]
    #[arg(long, value_parser = |s: &str| bounds::duration(s, Duration::ZERO, DAY), value_name = "DURATION")]
    pub retry_for: Option<Duration>,
    /// At most this many retries per tenant within --retry-for [default: no count limit].
    #[arg(long, value_name = "N", value_parser = |s: &str| bounds::number(s, 0u32, 100_000))]
    pub retries: Option<u32>,
    /// Also write the final report here: `.json`, `.md`, `.xml` (JUnit XML: one test
    /// suite per wave, one test case per tenant, for CI systems), or `.html` (one
    /// self-contained page: failures first, a timeline by wave, versions before and after).
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
    /// At the end, write the run's outcome here as OpenMetrics text (tenants per status,
    /// duration, stop reason, target, run id), replacing the file at once: for the
    /// node exporter's textfile collector (a `.prom` file in its folder).
    #[arg(long, value_name = "FILE")]
    pub metrics_file: Option<PathBuf>,
    /// POST the run's start, each wave's end, a stop and its finish to this webhook
    /// (repeatable; beside the fleet file's `notify:`). A slow or failing endpoint never
    /// holds the rollout up: each post is tried 3 times in the background, and the run waits
    /// at most 2s at its end for the last ones. Tokens in the URL never show.
    #[arg(long, value_name = "URL")]
    pub notify: Vec<String>,
    /// The body --notify's webhooks are sent: json (the event, as JSON Lines print it) or
    /// slack (an incoming webhook's text).
    #[arg(long, value_name = "FORMAT", value_parser = ["json", "slack"], default_value = "json")]
    pub notify_format: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TxMode {
    PerMigration,
    PerTenant,
}

impl Rollout {
    /// `--tx`, or its default.
    pub fn tx_mode(&self) -> TxMode {
        self.tx.unwrap_or(TxMode::PerMigration)
    }

    /// `--retry-for`, or its default.
    pub fn retry_within(&self) -> Duration {
        self.retry_for.unwrap_or(Duration::from_secs(60))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Text,
    Json,
    Github,
    Openmetrics,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum EngineArg {
    Postgres,
    Mysql,
    Sqlite,
}

impl From<EngineArg> for Engine {
    fn from(e: EngineArg) -> Engine {
        match e {
            EngineArg::Postgres => Engine::Postgres,
            EngineArg::Mysql => Engine::MySql,
            EngineArg::Sqlite => Engine::Sqlite,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Write the next migration's NNNN_name.up.sql and .down.sql, to be filled in.
    ///
    /// The version is the newest one plus one, or, when the newest is a UTC time stamp
    /// (`20240101120000`), the time now in the same form.
    New {
        /// The migration's name: letters, digits and `_` (spaces and `-` become `_`).
        name: String,
    },
    /// Show, per tenant, where it is and what would run. Touches nothing.
    Plan {
        /// Plan to this version instead of head (below a tenant's version: the down steps).
        #[arg(long, value_name = "VERSION")]
        to: Option<Version>,
        /// Tenants that form the first wave, besides those marked `canary: true`.
        #[arg(long, value_name = "EXPR")]
        canary: Vec<Selector>,
        /// The waves after the canaries, as for `up`: sizes, selectors or `*`.
        #[arg(long, value_name = "WAVES")]
        waves: Vec<WaveSpec>,
        /// List every migration a tenant would run, not their range and count.
        #[arg(long, short = 'v')]
        verbose: bool,
    },
    /// Apply pending migrations up to head, or to --to.
    Up {
        /// Apply migrations up to this version instead of head.
        #[arg(long, value_name = "VERSION")]
        to: Option<Version>,
        /// Continue an interrupted run (the newest unfinished one, or RUN) with its target
        /// and waves; each tenant's real version is read from its history table.
        #[arg(long, value_name = "RUN", num_args = 0..=1, default_missing_value = "", conflicts_with = "to")]
        resume: Option<String>,
        /// Before wave 1, run `check` over the pending migrations on a scratch target and
        /// refuse the run when one fails [default: the fleet file's
        /// `rollout.check_migrations`, else off].
        #[arg(long, conflicts_with_all = ["resume", "join"])]
        check_migrations: bool,
        /// Lint the pending migrations before wave 1: warn (print the findings, go on),
        /// deny (refuse the run on any finding not allowed), off. A CONCURRENTLY in a
        /// transactional migration refuses the run whatever this says [default: the fleet
        /// file's `rollout.lint`, else warn].
        #[arg(long, value_name = "MODE", value_parser = |s: &str| s.parse::<LintMode>(), conflicts_with_all = ["resume", "join"])]
        lint: Option<LintMode>,
        #[command(flatten)]
        rollout: Rollout,
        #[command(flatten)]
        together: Together,
    },
    /// List past runs from the ledger, newest first.
    Runs {
        /// Show at most this many runs.
        #[arg(long, value_name = "N", default_value_t = 20, value_parser = |s: &str| bounds::number(s, 1i64, 1_000_000))]
        limit: i64,
    },
    /// Print a past run's report from the ledger (text, or --format json).
    ///
    /// The text lists every tenant that needs a look; succeeded and not-started ones past a
    /// screenful are counted unless --all.
    Report {
        /// The run's id, as `fleetmig runs` lists it.
        run: String,
        /// List every tenant, however many.
        #[arg(long)]
        all: bool,
        /// Also write the report as one self-contained HTML page to FILE.
        #[arg(long, value_name = "FILE")]
        html: Option<PathBuf>,
    },
    /// Revert migrations with their down scripts, newest first.
    Down {
        /// Revert every migration above this version (0: all of them).
        #[arg(
            long,
            value_name = "VERSION",
            required_unless_present = "steps",
            conflicts_with = "steps"
        )]
        to: Option<Version>,
        /// Revert this many of each tenant's newest migrations.
        #[arg(long, value_name = "N", value_parser = |s: &str| bounds::number(s, 1usize, 1_000_000))]
        steps: Option<usize>,
        #[command(flatten)]
        rollout: Rollout,
    },
    /// Tenants per version as a chart, and per tenant: version, migrations behind, state,
    /// since when and its last error (from the ledger). Exit 1 unless all are current.
    Status {
        /// Measure against this version instead of head.
        #[arg(long, value_name = "VERSION")]
        to: Option<Version>,
        /// List only the tenants that are not current.
        #[arg(long)]
        lagging: bool,
        /// Also compare each tenant's catalog with its version's reference, as `drift`
        /// does: a tenant whose schema differs shows as `schema_drift`.
        #[arg(long)]
        drift: bool,
        /// With --format openmetrics: fleet labels to add to each tenant's samples,
        /// beside tenant, host and engine (`tier,region`).
        #[arg(long, value_name = "LABELS", value_delimiter = ',')]
        metric_labels: Vec<String>,
    },
    /// Block until every selected tenant has every migration up to head (or --to); exit 0
    /// when they do, 1 with the tenants still short when the time is up.
    Wait {
        /// Wait for this version instead of head.
        #[arg(long, value_name = "VERSION")]
        to: Option<Version>,
        /// Give up after this long (up to 30 days).
        #[arg(long, value_name = "DURATION", value_parser = |s: &str| bounds::duration(s, Duration::ZERO, 30 * DAY), default_value = "60s")]
        timeout: Duration,
        /// Time between two reads of the fleet (10ms to 1h).
        #[arg(long, value_name = "DURATION", value_parser = |s: &str| bounds::duration(s, 10 * MS, HOUR), default_value = "1s")]
        interval: Duration,
    },
    /// The migration set: version, name, reversible or not, checksum.
    ///
    /// Entries of the folder that are not migrations (a README, a loose `.sql` beside
    /// diesel's folders, hidden files) are left alone, never applied: counted here, listed
    /// with --verbose, and always in `--format json`'s `ignored`.
    History {
        /// List each folder entry that is not a migration, not just their count.
        #[arg(long, short = 'v')]
        verbose: bool,
    },
    /// Print the SQL an offline DBA would run, history writes included. Connects to nothing.
    Sql {
        /// The version the database is at; the script starts after it.
        #[arg(long, value_name = "VERSION", default_value = "0")]
        from: Version,
        /// The version the script ends at, instead of head.
        #[arg(long, value_name = "VERSION")]
        to: Option<Version>,
        /// The SQL dialect; by default the selected tenants' engine.
        #[arg(long, value_enum)]
        engine: Option<EngineArg>,
        /// Create and use this schema (PostgreSQL) or database (MySQL) first.
        #[arg(long)]
        schema: Option<String>,
    },
    /// Prove every migration and its way back on an empty scratch target
    ///
    /// For each engine of the fleet (or --engine), one migration at a time: the catalog is
    /// read, the up applied, read again, the down applied (the catalog must be as before
    /// the up), and the up applied again (it must be as after the first up). SQLite runs
    /// in a temporary file; PostgreSQL and MySQL in a temporary database made, and always
    /// dropped, on the server --scratch or the fleet file's `scratch:` names. Verdicts: ok,
    /// irreversible, up-fails, down-fails, down-incomplete, redo-fails, redo-differs. Exit 1
    /// on anything but ok and irreversible.
    Check {
        /// Check only this engine's migrations.
        #[arg(long, value_enum)]
        engine: Option<EngineArg>,
        /// Start above this version: the migrations up to it are applied first, unchecked.
        #[arg(long, value_name = "VERSION")]
        from: Option<Version>,
        /// Check up to this version instead of head.
        #[arg(long, value_name = "VERSION")]
        to: Option<Version>,
        /// A PostgreSQL or MySQL server to make the scratch database on (repeat for both),
        /// instead of the fleet file's `scratch:`.
        #[arg(long, value_name = "URL")]
        scratch: Vec<String>,
        /// Count an irreversible migration as a failure.
        #[arg(long)]
        strict: bool,
    },
    /// Find statements that hurt a live fleet (locks, table rewrites, renames, drops) in
    /// the pending migrations, or in FILES.
    ///
    /// Without FILES: the migrations some selected tenant still lacks (or all above
    /// --from), each finding with the tenants it will run on. Exit 1 on an error finding
    /// not allowed by a `-- fleetmig: allow <rule-id> <reason>` comment (with
    /// --deny-warnings, on any).
    Lint {
        /// Lint the migrations above this version, whatever the tenants lack.
        #[arg(long, value_name = "VERSION")]
        from: Option<Version>,
        /// Lint up to this version instead of head.
        #[arg(long, value_name = "VERSION")]
        to: Option<Version>,
        /// The engine FILES are written for [default: the fleet's one engine].
        #[arg(long, value_enum)]
        engine: Option<EngineArg>,
        /// Exit 1 on a warning too.
        #[arg(long)]
        deny_warnings: bool,
        /// SQL files to lint instead of the pending migrations (in order: each sees what
        /// the ones before it created).
        files: Vec<PathBuf>,
    },
    /// Is every tenant's real schema what its version says? Touches nothing
    ///
    /// Reads each selected tenant's catalog (the schema-tenants of a PostgreSQL host with a
    /// few queries per host) and version, and compares it with the catalog `check`'s
    /// scratch target has after the migrations up to that version (SQLite in a temporary
    /// file; PostgreSQL and MySQL on --scratch or the fleet file's `scratch:`), or with
    /// --reference's. With neither, a version's tenants are held to the catalog most of
    /// them share, and the report says it is a guess. Tenants at version 0, dirty or
    /// unreachable are listed, not compared. Exit 1 on drift, 4 when no tenant drifted but
    /// some could not be compared.
    Drift {
        /// This tenant's catalog is the truth for its version (other versions still use the
        /// scratch target).
        #[arg(long, value_name = "TENANT")]
        reference: Option<String>,
        /// A PostgreSQL or MySQL server to make the scratch database on (repeat for both),
        /// instead of the fleet file's `scratch:`.
        #[arg(long, value_name = "URL")]
        scratch: Vec<String>,
    },
    /// Record tenants as being at VERSION without running SQL (adopt a fleet, clear a dirty tenant)
    ///
    /// With --checksums instead of VERSION, keep each tenant's version and record the
    /// migration files' checksums as they are now: accepts a deliberate edit of an applied
    /// migration (drift), as Flyway's `repair` does.
    Stamp {
        /// The version to record: migrations 1..VERSION applied, none above.
        #[arg(required_unless_present = "checksums")]
        version: Option<Version>,
        /// Keep each tenant's version and record the current files' checksums for the
        /// migrations it has (after a deliberate edit of an applied migration); with
        /// =VERSION, for that migration only. Refuses a tenant that is dirty, or (without
        /// =VERSION) has a migration with no file.
        #[arg(
            long,
            value_name = "VERSION",
            num_args = 0..=1,
            require_equals = true,
            conflicts_with = "version"
        )]
        checksums: Option<Option<Version>>,
    },
    /// Take over tenants another migration tool migrated: record what its history says
    ///
    /// Reads each selected tenant's diesel (`__diesel_schema_migrations`), sqlx
    /// (`_sqlx_migrations`), golang-migrate or dbmate (`schema_migrations`), Flyway
    /// (`flyway_schema_history`) or Alembic (`alembic_version`) table and records exactly
    /// those versions, with the migration files' checksums, in fleetmig_history, under the
    /// tenant's lock, without running SQL. Alembic keeps only its head revision, whose
    /// version --map gives: every migration up to it is recorded. A tenant whose table
    /// records a version no file has, marks a row failed or dirty, holds several Alembic
    /// heads or a revision the map lacks, or whose fleetmig history already says
    /// otherwise, is refused by name.
    Adopt {
        /// The tool whose history table the tenants hold: diesel, sqlx, golang-migrate,
        /// flyway, dbmate or alembic.
        #[arg(long, value_name = "TOOL")]
        from: Tool,
        /// With --from alembic (and only then): a YAML file mapping each Alembic revision
        /// id to the version of the migration set it stands for, one `revision: version`
        /// a line (`ae1027a6acf: 3`).
        #[arg(long, value_name = "FILE")]
        map: Option<PathBuf>,
        /// Print what each tenant would record (or why not) and change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Print a completion script for a shell
    ///
    /// bash: `fleetmig completions bash > ~/.local/share/bash-completion/completions/fleetmig`;
    /// zsh: into a folder of your `fpath` as `_fleetmig`; fish:
    /// `fleetmig completions fish > ~/.config/fish/completions/fleetmig.fish`; PowerShell:
    /// `fleetmig completions powershell | Out-String | Invoke-Expression` in your profile.
    Completions {
        /// The shell: bash, zsh, fish, powershell or elvish.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page, as roff: `fleetmig man | man -l -`
    ///
    /// With a command name, that command's own page (`fleetmig man up`, installed as
    /// fleetmig-up.1).
    Man {
        /// The command whose page to print [default: fleetmig's own].
        #[arg(value_name = "COMMAND")]
        command: Option<String>,
    },
}

/// Several runners on one `up` run, through a PostgreSQL ledger.
#[derive(Debug, Args)]
#[command(next_help_heading = "Several runners")]
pub struct Together {
    /// Create the run for several runners: this one and any `up --join RUN` claim its
    /// tenants from the ledger, one at a time, under leases.
    #[arg(long, conflicts_with_all = ["resume", "join"])]
    pub shared: bool,
    /// Work on a shared run another runner created, with its target, waves and failure limit.
    #[arg(long, value_name = "RUN", conflicts_with_all = ["to", "resume"])]
    pub join: Option<String>,
    /// How long a claimed tenant stays this runner's without a heartbeat (renewed every
    /// third of it); after that another runner takes it over.
    #[arg(long, value_name = "DURATION", value_parser = |s: &str| bounds::duration(s, SECOND, HOUR), default_value = "30s")]
    pub lease: Duration,
}

impl Together {
    /// True when this runner works on a shared run.
    pub fn is_shared(&self) -> bool {
        self.shared || self.join.is_some()
    }
}

/// A flag value out of its range or unreadable; the message is what clap shows after
/// "invalid value ... for ...".
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BadValue(String);

/// PostgreSQL's `lock_timeout` and `statement_timeout`: whole milliseconds that fit its
/// 32-bit setting (24 days is under its 2147483647 ms limit); 0 means none.
fn pg_timeout(text: &str) -> Result<Duration, BadValue> {
    bounds::duration(text, Duration::ZERO, 24 * DAY).map_err(|e| BadValue(e.to_string()))
}

/// The pause after each wave (`--bake`), in the range the fleet file's `rollout.bake` has.
fn bake(text: &str) -> Result<Duration, BadValue> {
    bounds::duration(text, Duration::ZERO, bounds::BAKE_MAX).map_err(|e| BadValue(e.to_string()))
}

/// `--rate` and `--burst`: tenant starts per second.
fn per_second(text: &str) -> Result<NonZeroU32, BadValue> {
    let n = bounds::number(text, 1u32, 100_000).map_err(|e| BadValue(e.to_string()))?;
    NonZeroU32::new(n).ok_or_else(|| BadValue("0".into()))
}

/// `--rollback`'s words come from the model, where the fleet file and the ledger read them
/// too: clap stays in this module.
impl ValueEnum for RollbackPolicy {
    fn value_variants<'a>() -> &'a [Self] {
        &RollbackPolicy::ALL
    }

    fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
        Some(clap::builder::PossibleValue::new(self.name()).help(self.help()))
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// Every option and argument of every command says what it is for.
    #[test]
    fn every_option_and_argument_has_help_text() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for arg in cmd.get_arguments() {
                let builtin = matches!(arg.get_id().as_str(), "help" | "version");
                if !builtin && arg.get_help().is_none() {
                    missing.push(format!("{path} {}", arg.get_id()));
                }
            }
            for sub in cmd.get_subcommands() {
                if sub.get_about().is_none() {
                    missing.push(format!("{path} {}", sub.get_name()));
                }
                walk(sub, &format!("{path} {}", sub.get_name()), missing);
            }
        }
        let mut cli = super::Cli::command();
        cli.build();
        let mut missing = Vec::new();
        walk(&cli, "fleetmig", &mut missing);
        assert!(missing.is_empty(), "without help text: {missing:?}");
    }
}
