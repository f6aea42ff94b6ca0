//! The commands that run: `up`, `down`, `stamp`. Each decides its action and hands it to
//! [`execute`], which plans the run once (`api::Run`), records it, shows it as it goes and
//! writes its report.

use std::io::{IsTerminal, Write};
use std::path::Path;
use std::time::Duration;

use indicatif::ProgressDrawTarget;

use super::checks::{
    Scope, check_history_compat, check_per_tenant_tx, check_report_path, confirm_down_to_zero, read_for_down,
    refuse_irreversible, refuse_irreversible_past,
};
use super::exit::Outcome;
use super::notify::Notifier;
use super::prompt::{can_confirm, wave_prompt};
use super::{open_ledger, options, report_command, resume, signals};
use crate::api::{self, Run};
use crate::cli::{Format, Global, Rollout, TxMode};
use crate::driver::ledger::Ledger;
use crate::error::Error;
use crate::exec::dispatch::{Gates, Policy, Rate, rehearse_check};
use crate::exec::events::{Events, Stamped};
use crate::exec::join::Shared;
use crate::exec::tenant::{Action, Retry};
use crate::exec::window::{ChangeWindow, SystemClock};
use crate::model::fleet::{Fleet, Tenant};
use crate::model::foreign::Tool;
use crate::model::lint::LintMode;
use crate::model::migration::Version;
use crate::model::notify::{NotifyFormat, Webhook};
use crate::model::policy::{MaxFailures, MaxSkipped, RollbackPolicy, StopReason};
use crate::model::run::RunReport;
use crate::model::sets::Sets;
use crate::plan::tenant::Target;
use crate::plan::waves::{Wave, single};
use crate::report::json::write_event;
use crate::report::log::LogWriter;
use crate::report::notify::Notices;
use crate::report::progress::ProgressReporter;
use crate::report::run::{self as run_report, Rows};

/// `up` on this runner's own selection.
pub(super) async fn up(
    g: &Global,
    to: Option<Version>,
    rollout: &Rollout,
    check_migrations: bool,
    lint: Option<LintMode>,
    out: &mut (dyn Write + Send),
) -> Result<Outcome, Error> {
    let fleet = rollout_fleet(g, rollout).await?;
    let sets = super::load_set_of(g, &fleet)?;
    let tenants = rollout_tenants(g, &fleet, rollout)?;
    let to = api::target(&sets, to)?;
    let lint = lint.or(fleet.rollout.lint).unwrap_or_default();
    before_wave_1(g, &fleet, &sets, &tenants, to, lint, check_migrations).await?;
    let args = RunArgs {
        tenants,
        action: Action::Migrate(Target::Up { to }),
        command: "up",
        rollout: Some(rollout),
        record: Record::New,
    };
    execute(g, &fleet, &sets, args, out).await
}

/// `down --to VERSION` or `down --steps N`.
pub(super) async fn down(
    g: &Global,
    to: Option<Version>,
    steps: Option<usize>,
    rollout: &Rollout,
    out: &mut (dyn Write + Send),
) -> Result<Outcome, Error> {
    // Undoing a down means running up scripts again: an operator does that
    // deliberately, with `up --to`, not as a side effect of a stop.
    if let Some(policy) = rollout.rollback.filter(|p| *p != RollbackPolicy::None) {
        return Err(Error::Usage(format!(
            "down --rollback {}: only `up` rolls back; a `down` that stops leaves each tenant where it stopped (the report says where), and `fleetmig up --to VERSION` takes tenants forward again",
            policy.name()
        )));
    }
    let fleet = rollout_fleet(g, rollout).await?;
    let sets = super::load_set_of(g, &fleet)?;
    let tenants = rollout_tenants(g, &fleet, rollout)?;
    let target = match (to, steps) {
        (Some(to), _) => Target::Down {
            to: api::check_targets(&sets, to, "--to")?,
        },
        (None, Some(steps)) => Target::DownSteps { steps },
        (None, None) => return Err(Error::Usage("give --to or --steps".into())),
    };
    let opts = options(g, None);
    let scope = Scope {
        sets: &sets,
        fleet: &fleet,
        opts: &opts,
        tenants: &tenants,
    };
    refuse_irreversible_past(&sets, target)?;
    let states = read_for_down(&scope, target, rollout.yes).await;
    refuse_irreversible(&scope, target, &states)?;
    confirm_down_to_zero(&scope, target, rollout.yes, &states).await?;
    let args = RunArgs {
        tenants,
        action: Action::Migrate(target),
        command: "down",
        rollout: Some(rollout),
        record: Record::New,
    };
    execute(g, &fleet, &sets, args, out).await
}

/// `stamp VERSION` or `stamp --checksums[=VERSION]`.
pub(super) async fn stamp(
    g: &Global,
    version: Option<Version>,
    checksums: Option<Option<Version>>,
    out: &mut (dyn Write + Send),
) -> Result<Outcome, Error> {
    let fleet = super::load_fleet(g).await?;
    let sets = super::load_set_of(g, &fleet)?;
    let tenants = api::selected(&fleet, &g.select)?;
    let action = match (version, checksums) {
        (_, Some(only)) => Action::Checksums(
            only.map(|v| api::check_targets(&sets, v, "stamp --checksums"))
                .transpose()?,
        ),
        (Some(v), None) => Action::Stamp(api::check_targets(&sets, v, "stamp")?),
        (None, None) => unreachable!("clap requires VERSION or --checksums"),
    };
    let args = RunArgs {
        tenants,
        action,
        command: "stamp",
        rollout: None,
        record: Record::New,
    };
    execute(g, &fleet, &sets, args, out).await
}

/// `adopt --from TOOL [--map FILE]`: records each tenant's other-tool history as fleetmig's.
pub(super) async fn adopt(
    g: &Global,
    tool: Tool,
    map: Option<&Path>,
    out: &mut (dyn Write + Send),
) -> Result<Outcome, Error> {
    let fleet = super::load_fleet(g).await?;
    let sets = super::load_set_of(g, &fleet)?;
    let map = super::revision_map(map, &sets)?;
    let args = RunArgs {
        tenants: api::selected(&fleet, &g.select)?,
        action: Action::Adopt(super::adoption(tool, map.as_ref())?),
        command: "adopt",
        rollout: None,
        record: Record::New,
    };
    execute(g, &fleet, &sets, args, out).await
}

/// A run the ledger already holds, picked up again: resumed, or a shared run joined.
pub(super) struct Resume<'f> {
    pub run_id: String,
    pub waves: Vec<Wave<'f>>,
    pub ledger: Ledger,
    /// Set when this runner claims tenants of a shared run instead of running them all.
    pub shared: Option<Shared>,
}

/// Where the run stands in the ledger.
pub(super) enum Record<'f> {
    /// A new run of this runner's own, recorded in the command line's ledger.
    New,
    /// A new shared run, recorded in `ledger` for every runner to claim tenants of, each
    /// for `lease` at a time.
    NewShared { ledger: Ledger, lease: Duration },
    /// A run the ledger already holds.
    Taken(Resume<'f>),
}

/// What a run command asks for.
pub(super) struct RunArgs<'a, 'f> {
    /// The run's tenants: the selection, or a recorded run's.
    pub tenants: Vec<&'f Tenant>,
    pub action: Action<'f>,
    pub command: &'static str,
    /// `None` for `stamp`: one wave, no limits, no rollback.
    pub rollout: Option<&'a Rollout>,
    pub record: Record<'f>,
}

/// Runs `args` to its end and writes its report: on `out` as it goes (and the summary,
/// when it stopped early or did not succeed), and to `--report`.
pub(super) async fn execute(
    g: &Global,
    fleet: &Fleet,
    sets: &Sets,
    args: RunArgs<'_, '_>,
    out: &mut (dyn Write + Send),
) -> Result<Outcome, Error> {
    let outputs = Outputs {
        report: args.rollout.and_then(|r| r.report.as_deref()),
        metrics: args.rollout.and_then(|r| r.metrics_file.as_deref()),
        target: match &args.action {
            Action::Migrate(Target::Up { to } | Target::Down { to }) => Some(to.to_string()),
            Action::Migrate(Target::DownSteps { steps }) => Some(format!("-{steps}")),
            Action::Stamp(v) => Some(v.to_string()),
            _ => None,
        },
    };
    if let Some(path) = outputs.report {
        check_report_path(path)?;
    }
    let webhooks = webhooks(fleet, args.rollout)?;
    let mut run = prepare(g, fleet, sets, args).await?;
    let notifier = super::notify::Notifier::new(webhooks);
    let (report, written) = show(g.format, &mut run, &notifier, out).await;
    // After a second interrupt the process must end soon (`signals::GRACE`).
    let flush = match report.stop_reason {
        StopReason::Abandoned => Duration::from_millis(300),
        _ => super::notify::FLUSH,
    };
    let report = finish(g, sets, &run, report, written, &outputs, out);
    for failure in notifier.finish(flush) {
        eprintln!("warning: {failure}");
    }
    Ok(Outcome::Run(Box::new(report?)))
}

/// The fleet file's `notify:` webhooks and `--notify`'s.
fn webhooks(fleet: &Fleet, rollout: Option<&Rollout>) -> Result<Vec<Webhook>, Error> {
    let mut hooks = fleet.notify.clone();
    if let Some(r) = rollout {
        let format: NotifyFormat = r.notify_format.parse().map_err(Error::Usage)?;
        for text in &r.notify {
            hooks.push(Webhook::parse(text, format).map_err(|e| Error::Usage(format!("--notify {e}")))?);
        }
    }
    Ok(hooks)
}

/// The run, planned and checked once, and recorded in the ledger (new) or taken up again
/// there (resumed, joined). Every refusal comes before the ledger hears of the run: a
/// refused run leaves no run behind for `--resume` to pick up.
async fn prepare<'f>(g: &Global, fleet: &'f Fleet, sets: &'f Sets, args: RunArgs<'_, 'f>) -> Result<Run<'f>, Error> {
    // A resumed or joined run keeps the waves it was started with, whatever the fleet's
    // labels say today.
    let kept = match &args.record {
        Record::Taken(resume) => Some(resume.waves.clone()),
        _ => None,
    };
    let (waves, policy) = rollout_plan(fleet, &args.tenants, args.rollout, kept)?;
    check_history_compat(sets, fleet, &args.tenants)?;
    let opts = options(g, None);
    let mut ctx = api::context(fleet, sets, &opts);
    if let Some(r) = args.rollout {
        ctx.retry = Retry {
            within: r.retry_within(),
            attempts: r.retries,
        };
        if r.tx_mode() == TxMode::PerTenant {
            let scope = Scope {
                sets,
                fleet,
                opts: &opts,
                tenants: &args.tenants,
            };
            check_per_tenant_tx(&scope, args.action).await?;
            ctx.per_tenant_tx = true;
        }
    }
    let mut run = Run {
        ctx,
        waves,
        action: args.action,
        policy,
        command: args.command,
        shared: None,
        source: Some(super::run_source(g, fleet, sets)),
    };
    rehearse(&run).await?;
    let out_of_order = sets.iter().any(|(_, s)| s.out_of_order());
    let recorded = args
        .rollout
        .map(|r| resume::record(fleet, r, &run.policy, out_of_order))
        .transpose()?;
    match args.record {
        Record::New => run.begin(open_ledger(g, fleet).await?, recorded).await?,
        Record::NewShared { ledger, lease } => run.begin_shared(ledger, recorded, lease).await?,
        Record::Taken(resume) => {
            if resume.shared.is_none() {
                resume.ledger.reopen_run(&resume.run_id).await?;
            }
            run.ctx.run_id = resume.run_id;
            run.ctx.ledger = Some(resume.ledger);
            run.waves = resume.waves;
            run.shared = resume.shared;
        }
    }
    Ok(run)
}

/// `--check` is tried once on the run's first tenant before wave 1: a query that cannot
/// run stops the run before anything changes.
async fn rehearse(run: &Run<'_>) -> Result<(), Error> {
    let first = run.waves.first().and_then(|w| w.tenants.first());
    let (Some(sql), Some(first)) = (&run.policy.gates.check, first) else {
        return Ok(());
    };
    rehearse_check(&run.ctx, first, sql).await.map_err(|e| {
        Error::Refused(format!(
            "--check `{sql}` cannot run: tried on tenant `{}` before wave 1: {e}",
            first.id
        ))
    })
}

/// The waves and policy a command line asks for; `None` (for `stamp`): one wave, every
/// tenant tried, nothing rolled back.
fn rollout_plan<'f>(
    fleet: &Fleet,
    tenants: &[&'f Tenant],
    rollout: Option<&Rollout>,
    kept: Option<Vec<Wave<'f>>>,
) -> Result<(Vec<Wave<'f>>, Policy), Error> {
    let Some(r) = rollout else {
        let policy = Policy {
            max_failures: MaxFailures::Unlimited,
            max_skipped: MaxSkipped::Limit(MaxFailures::Unlimited),
            rollback: RollbackPolicy::None,
            ..Policy::default()
        };
        return Ok((kept.unwrap_or_else(|| single(tenants)), policy));
    };
    if r.confirm && !r.yes && !can_confirm() {
        return Err(Error::Usage(
            "--confirm needs a terminal to ask on; add --yes to go on without asking".into(),
        ));
    }
    let waves = match kept {
        Some(waves) => waves,
        None => api::plan_waves(fleet, tenants, &r.canary, resume::wave_spec(r)?.as_ref())?.waves,
    };
    if let Some(p) = r.pause_after {
        if p == 0 || p > waves.len() {
            return Err(Error::Usage(format!(
                "--pause-after {p}: the rollout has waves 1 to {}",
                waves.len()
            )));
        }
    }
    let defaults = &fleet.rollout;
    let policy = Policy {
        pause_after: r.pause_after,
        gates: Gates {
            bake: r.bake.or(defaults.bake),
            check: r.check.clone().or_else(|| defaults.check.clone()),
            confirm: r.confirm,
            assume_yes: r.yes,
            prompt: None,
        },
        rate: r.rate.map(|per_second| Rate {
            per_second,
            burst: r.burst.unwrap_or(per_second),
        }),
        window: (r.window.clone().or_else(|| defaults.window.clone()))
            .map(|w| ChangeWindow::new(w, std::sync::Arc::new(SystemClock))),
        ..api::limits_policy(fleet, r.max_failures, r.max_skipped, r.rollback, r.host_failures)
    };
    Ok((waves, policy))
}

/// Dispatches the run while its events are shown: progress bars on a terminal (stderr, so
/// stdout stays for the report), timestamped lines otherwise, JSON Lines on request.
/// Returns the report, and whether every event could be written.
async fn show(
    format: Format,
    run: &mut Run<'_>,
    notifier: &Notifier,
    out: &mut (dyn Write + Send),
) -> (RunReport, std::io::Result<()>) {
    let (events, rx) = Events::channel();
    let (interrupts, listener) = signals::listen();
    let id_width = run.tenants().iter().map(|t| t.id.as_str().len()).max().unwrap_or(0);
    let bars = format == Format::Text && std::io::stderr().is_terminal() && !ProgressDrawTarget::stderr().is_hidden();
    let progress = bars.then(|| ProgressReporter::new(ProgressDrawTarget::stderr(), id_width));
    if run.policy.gates.confirm {
        run.policy.gates.prompt = Some(wave_prompt(progress.as_ref()));
    }
    let run = &*run;
    let running = async {
        let report = run.dispatch(&events, interrupts).await;
        // Bounded: after an abandon, a pool may still wait on a server that stopped answering,
        // and the report must be out before the process's deadline (`signals::GRACE`).
        let closing = if report.stop_reason == StopReason::Abandoned {
            Duration::from_millis(300)
        } else {
            Duration::from_secs(2)
        };
        let _ = tokio::time::timeout(closing, run.ctx.connector.close()).await;
        drop(events);
        report
    };
    let shown = Shown {
        progress,
        format,
        id_width,
        notify: (!notifier.is_empty()).then(|| (Notices::new(&run.ctx.fleet.path.display().to_string()), notifier)),
    };
    let (report, written) = tokio::join!(running, relay(rx, shown, out));
    drop(listener);
    (report, written)
}

/// Where a run's events go besides the ledger.
struct Shown<'n> {
    /// Bars on a terminal; `None`: lines.
    progress: Option<ProgressReporter>,
    format: Format,
    id_width: usize,
    /// The notices webhooks are sent, and the notifier that posts them; `None` without
    /// webhooks.
    notify: Option<(Notices, &'n Notifier)>,
}

/// Writes each event as it comes, until the run drops its sender.
async fn relay(
    mut rx: tokio::sync::mpsc::UnboundedReceiver<Stamped>,
    mut shown: Shown<'_>,
    out: &mut (dyn Write + Send),
) -> std::io::Result<()> {
    let mut tell = |event: &Stamped| {
        if let Some((notices, notifier)) = &mut shown.notify {
            if let Some(notice) = notices.on(event) {
                notifier.send(&notice);
            }
        }
    };
    if let Some(mut progress) = shown.progress {
        while let Some(event) = rx.recv().await {
            tell(&event);
            progress.handle(&event);
        }
        progress.finish();
        return out.flush();
    }
    let mut log = LogWriter::new(shown.id_width);
    // What the log holds back (a `started` line, a count) is released on this clock.
    let mut clock = tokio::time::interval(Duration::from_millis(250));
    clock.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let event = tokio::select! {
            event = rx.recv() => event,
            _ = clock.tick(), if shown.format != Format::Json => {
                log.tick(out, now_ms())?;
                out.flush()?;
                continue;
            }
        };
        let Some(event) = event else { break };
        tell(&event);
        match shown.format {
            Format::Json => write_event(out, &event)?,
            Format::Text | Format::Github | Format::Openmetrics => log.write_event(out, &event)?,
        }
    }
    out.flush()
}

/// After the run: the warning when the ledger missed its end, the summary on `out` when it
/// stopped early or did not succeed, the `--report` file. From here on tenants may have
/// changed: an output that fails is reported as such, never as a refusal, and every other
/// output is still written.
fn finish(
    g: &Global,
    sets: &Sets,
    run: &Run<'_>,
    report: RunReport,
    written: std::io::Result<()>,
    outputs: &Outputs<'_>,
    out: &mut (dyn Write + Send),
) -> Result<RunReport, Error> {
    let missed_end = run.ctx.ledger.as_ref().and_then(Ledger::missed_end);
    if let Some(why) = &missed_end {
        eprintln!(
            "warning: the ledger missed the end of run `{}`: {why}. The report printed here (and --report) is the run's only full record; `fleetmig report` cannot show it.",
            report.run_id
        );
    }
    let mut unwritten = written.err().map(|e| ("standard output".to_owned(), e));
    if unwritten.is_none() && g.format == Format::Text && (report.stop_reason.is_early() || !report.is_success()) {
        // Rows left out must be one command away; when the ledger cannot give them, all of
        // them are printed here.
        let more = format!("{} lists every tenant", report_command(g, &report.run_id));
        let rows = match missed_end {
            None => Rows::Screenful { more: &more },
            Some(_) => Rows::All,
        };
        let grouped = crate::report::refusals::run_text(sets, &report);
        let source = run.source.as_ref().map(run_report::source_line).unwrap_or_default();
        if let Err(e) = write!(out, "{}{grouped}{source}", run_report::text(&report, rows)).and_then(|()| out.flush()) {
            unwritten = Some(("standard output".to_owned(), e));
        }
    }
    if let Some(path) = outputs.metrics {
        let body = crate::report::metrics::run(&report, outputs.target.as_deref(), std::time::SystemTime::now());
        if let Err(e) = replace_file(path, body.as_bytes()) {
            unwritten.get_or_insert((format!("--metrics-file `{}`", path.display()), e));
        }
    }
    if let Some(path) = outputs.report {
        let body = match path.extension().and_then(|e| e.to_str()) {
            Some("md") => run_report::markdown(&report),
            Some("xml") => run_report::junit(&report),
            Some("html" | "htm") => crate::report::html::html(&report, run.source.as_ref()),
            _ => run_report::json(&report),
        };
        if let Err(e) = std::fs::write(path, body) {
            unwritten.get_or_insert((format!("--report `{}`", path.display()), e));
        }
    }
    match unwritten {
        None => Ok(report),
        Some((target, source)) => Err(Error::Unreported {
            run_id: report.run_id.clone(),
            outcome: format!(
                "stop reason: {}; {}",
                report.stop_reason,
                crate::report::text::summary_line(&report.summary).trim_end_matches('.')
            ),
            target,
            kept: if missed_end.is_some() {
                "and the ledger missed its end (see the warning above)".to_owned()
            } else {
                format!("the ledger keeps it: `fleetmig report {}`", report.run_id)
            },
            source,
        }),
    }
}

/// The fleet an `up` or `down` rolls out to: `--partition`'s share, except that
/// `--canary-only` takes the canaries of the whole fleet in share 1 and none in the others.
async fn rollout_fleet(g: &Global, rollout: &Rollout) -> Result<Fleet, Error> {
    match (rollout.canary_only, g.partition) {
        (true, Some(p)) if !p.is_first() => Err(Error::NothingHere(format!(
            "--partition {p} --canary-only: the canary wave runs in share 1; nothing to do here"
        ))),
        (true, Some(_)) => super::load_whole_fleet(g).await,
        _ => super::load_fleet(g).await,
    }
}

/// The selected tenants, only the canaries with `--canary-only`.
fn rollout_tenants<'f>(g: &Global, fleet: &'f Fleet, rollout: &Rollout) -> Result<Vec<&'f Tenant>, Error> {
    let mut tenants = api::selected(fleet, &g.select)?;
    if rollout.canary_only {
        tenants.retain(|t| t.canary || rollout.canary.iter().any(|s| s.matches(t)));
        if tenants.is_empty() {
            return Err(Error::Usage(
                "--canary-only: no selected tenant is a canary (`canary: true` in the fleet file, or --canary EXPR)"
                    .into(),
            ));
        }
    }
    Ok(tenants)
}

/// Where a run's outcome goes besides standard output.
struct Outputs<'a> {
    /// `--report FILE`.
    report: Option<&'a Path>,
    /// `--metrics-file FILE`.
    metrics: Option<&'a Path>,
    /// The run's target as the metrics show it: a version, `head`, or `-N` steps down.
    target: Option<String>,
}

/// Writes `body` to a temporary file beside `path` and renames it over `path`: a reader
/// (the textfile collector) sees the old file or the new one, never half of one.
fn replace_file(path: &Path, body: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut file = tempfile::NamedTempFile::new_in(dir)?;
    file.write_all(body)?;
    // Readable by the collector, which seldom runs as this user (a temporary file is 0600).
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        file.as_file().set_permissions(std::fs::Permissions::from_mode(0o644))?;
    }
    file.as_file().sync_all()?;
    file.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// What `up` checks before wave 1, on one survey of the selected tenants: the lint of
/// their pending migrations (which also refuses a CONCURRENTLY that would fail on every
/// tenant, whatever `--lint` says), then `--check-migrations`. No survey when neither can
/// say anything: no check asked for, and no live finding in any migration up to `to`.
pub(super) async fn before_wave_1(
    g: &Global,
    fleet: &Fleet,
    sets: &Sets,
    tenants: &[&Tenant],
    to: Version,
    lint: LintMode,
    check_migrations: bool,
) -> Result<(), Error> {
    let check = check_migrations || fleet.rollout.check_migrations;
    if !check && !super::lint::any_live(sets, tenants, to) {
        return Ok(());
    }
    let states = api::inspect(fleet, sets, &options(g, None), tenants).await;
    super::lint::before_up(g, fleet, sets, &states, to, lint)?;
    if check {
        super::check::before_up(g, fleet, sets, tenants, &states, to).await?;
    }
    Ok(())
}

/// Milliseconds since the Unix epoch, the clock of `Stamped::at_ms`.
fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
