//! Commands that read the fleet and change nothing: `plan`, `status`, `wait`.

use std::io::Write;
use std::path::Path;

use super::exit::Outcome;
use super::options;
use crate::api;
use crate::cli::{Command, Format, Global};
use crate::error::Error;
use crate::exec::run::Inspected;
use crate::exec::wait::{WaitOptions, WaitOutcome};
use crate::model::fleet::Tenant;
use crate::model::foreign::Tool;
use crate::model::lint::LintMode;
use crate::model::migration::{Direction, Version};
use crate::model::policy::WaveSpec;
use crate::model::sets::Sets;
use crate::plan::select::Selector;
use crate::plan::tenant::{self as plan, Target};
use crate::report::status as report;
use crate::report::tables::{self, PlanRow};

/// `plan`: per tenant, in rollout order, where it is and what would run.
pub(super) async fn plan(
    g: &Global,
    to: Option<Version>,
    canary: &[Selector],
    waves: &[WaveSpec],
    verbose: bool,
    out: &mut (dyn Write + Send),
) -> Result<Outcome, Error> {
    let opts = options(g, to);
    let fleet = super::load_fleet(g).await?;
    let sets = super::load_set_of(g, &fleet)?;
    let tenants = api::selected(&fleet, &opts.select)?;
    let to = api::target(&sets, opts.to)?;
    let spec = WaveSpec::joined(waves).map_err(|e| Error::Usage(format!("--waves: {e}")))?;
    let planned = api::plan_waves(&fleet, &tenants, canary, spec.as_ref())?;
    let waves = &planned.waves;
    let ordered: Vec<&Tenant> = waves.iter().flat_map(|w| w.tenants.iter().copied()).collect();
    let wave_of: Vec<usize> = waves.iter().flat_map(|w| w.tenants.iter().map(|_| w.number)).collect();
    let states = api::inspect(&fleet, &sets, &opts, &ordered).await;
    let lint = super::lint::lint_pending(g, &fleet, &sets, &states, super::lint::Range { from: None, to });
    let rows: Vec<PlanRow> = states
        .into_iter()
        .zip(wave_of)
        .map(|(state, wave)| plan_row(&sets, to, state, wave))
        .collect();
    // The fleet file's: `plan` takes no --window.
    let window = (fleet.rollout.window.as_ref()).map(|w| tables::plan_window(w, jiff::Timestamp::now()));
    match g.format {
        Format::Json => {
            // Written as it serializes (top-level keys in the order `json!` gave): a document built as a
            // `Value` first took about 1 KB a tenant, 100 MB for 100,000 tenants.
            let doc = PlanJson {
                lint: crate::report::lint::json(&lint),
                target: to,
                tenants: &rows,
                wave_steps: &planned.steps,
                warnings: tables::step_warnings(&planned.steps),
                waves: tables::plan_waves(&planned),
                window: &window,
            };
            let mut buffered = std::io::BufWriter::with_capacity(1 << 16, &mut *out);
            serde_json::to_writer(&mut buffered, &doc).map_err(std::io::Error::from)?;
            writeln!(buffered)?;
            buffered.flush()?
        }
        Format::Text | Format::Github | Format::Openmetrics => {
            write!(out, "{}", tables::plan_text(&sets, &rows, verbose))?;
            write!(
                out,
                "{}",
                tables::waves_text(&tables::plan_waves(&planned), &planned.steps)
            )?;
            if let Some(window) = &window {
                write!(out, "{}", tables::window_text(window))?;
            }
            super::lint::show(&lint, LintMode::Warn, out)?;
        }
    }
    super::lint::refuse(&lint, LintMode::Warn, "plan")?;
    let all_well = rows.iter().all(|r| r.refused.is_none());
    Ok(Outcome::Fleet { all_well })
}

/// `plan --format json`, its keys in alphabetical order.
#[derive(serde::Serialize)]
struct PlanJson<'a> {
    lint: serde_json::Value,
    target: Version,
    tenants: &'a [PlanRow],
    wave_steps: &'a [crate::plan::waves::StepPlaced],
    warnings: Vec<String>,
    waves: Vec<tables::PlanWave>,
    window: &'a Option<tables::PlanWindow>,
}

/// One tenant's line of the plan: the steps to `to` (up or down from where it is), or why
/// it cannot be planned.
fn plan_row(sets: &Sets, to: Version, (t, rows): Inspected<'_>, wave: usize) -> PlanRow {
    let (set, to) = (sets.of(t.engine), sets.resolve(t.engine, to));
    let refused = |from, refused, refusal| PlanRow {
        wave,
        id: t.id.to_string(),
        from,
        to: from,
        steps: vec![],
        refused: Some(refused),
        refusal,
    };
    let rows = match rows {
        Ok(rows) => rows,
        Err(e) => return refused(None, format!("unreachable: {e}"), None),
    };
    let from = plan::version_of(&rows);
    let target = if to >= from {
        Target::Up { to }
    } else {
        Target::Down { to }
    };
    match plan::plan(set, &rows, target) {
        Ok(p) => PlanRow {
            wave,
            id: t.id.to_string(),
            from: Some(p.from),
            to: Some(p.to),
            steps: p
                .steps
                .iter()
                .map(|s| match s.direction {
                    Direction::Up => s.migration.label(),
                    Direction::Down => format!("{} (down)", s.migration.label()),
                })
                .collect(),
            refused: None,
            refusal: None,
        },
        Err(r) => refused(Some(from), r.to_string(), Some(r)),
    }
}

/// `status`: where each selected tenant stands, with what the ledger adds.
pub(super) async fn status(g: &Global, command: &Command, out: &mut (dyn Write + Send)) -> Result<Outcome, Error> {
    let Command::Status {
        to,
        lagging,
        drift,
        metric_labels,
    } = command
    else {
        return Ok(Outcome::Done);
    };
    if g.format == Format::Openmetrics {
        crate::report::metrics::check_label_names(metric_labels).map_err(|e| Error::Usage(e.to_string()))?;
    } else if !metric_labels.is_empty() {
        return Err(Error::Usage("--metric-labels: only with --format openmetrics".into()));
    }
    let opts = options(g, *to);
    let fleet = super::load_fleet(g).await?;
    let sets = super::load_set_of(g, &fleet)?;
    let mut status = api::assess(&fleet, &sets, &opts).await?;
    if *drift {
        let drift = super::drift::Args {
            reference: None,
            scratch: &[],
        };
        let report = super::drift::report(g, &fleet, &sets, &drift).await?;
        status.mark_schema_drift(&crate::report::drift::by_tenant(&report));
    }
    // The ledger only adds since-when and last errors: one that cannot be read is noted,
    // and a missing one is not created. Metrics carry neither.
    let ledger_error = if status.all_current() || g.format == Format::Openmetrics {
        None
    } else {
        let annotated = match super::ledger_location(g, &fleet) {
            Ok(url) => api::annotate_within(&mut status, &url, g.connect_timeout).await,
            Err(e) => Err(e),
        };
        annotated.err().map(|e| crate::error::render(&e))
    };
    match g.format {
        Format::Json => {
            let doc = report::status_doc(&status, *lagging, ledger_error);
            writeln!(out, "{}", serde_json::to_string(&doc).map_err(std::io::Error::other)?)?
        }
        Format::Openmetrics => {
            let labels = crate::report::metrics::TenantLabels::of(&fleet, metric_labels);
            let now = std::time::SystemTime::now();
            write!(
                out,
                "{}",
                crate::report::metrics::status(&status, &labels, *lagging, now)
            )?
        }
        Format::Text | Format::Github => {
            let text = report::status_text(&sets, &status, *lagging, ledger_error.as_deref());
            write!(out, "{text}")?
        }
    }
    Ok(Outcome::Fleet {
        all_well: status.all_current(),
    })
}

/// `wait`: reads the fleet until every selected tenant is there or the time is up,
/// showing progress on a terminal.
pub(super) async fn wait(
    g: &Global,
    to: Option<Version>,
    wait: &WaitOptions,
    out: &mut (dyn Write + Send),
) -> Result<Outcome, Error> {
    let opts = options(g, to);
    let fleet = super::load_fleet(g).await?;
    let sets = super::load_set_of(g, &fleet)?;
    let mut progress = report::WaitProgress::new(g.format == Format::Text);
    let outcome = api::watch(&fleet, &sets, &opts, wait, &mut |s| progress.read(s, out)).await?;
    write_wait(&outcome, g.format, out)?;
    Ok(Outcome::Fleet {
        all_well: outcome.arrived,
    })
}

fn write_wait(outcome: &WaitOutcome, format: Format, out: &mut (dyn Write + Send)) -> Result<(), Error> {
    match format {
        Format::Json => writeln!(
            out,
            "{}",
            serde_json::to_string(&report::wait_doc(outcome)).map_err(std::io::Error::other)?
        )?,
        Format::Text | Format::Github | Format::Openmetrics => write!(out, "{}", report::wait_text(outcome))?,
    }
    Ok(())
}

/// `adopt --from TOOL [--map FILE] --dry-run`: what each tenant would record, or why not; nothing written.
pub(super) async fn adopt_plan(
    g: &Global,
    tool: Tool,
    map: Option<&Path>,
    out: &mut (dyn Write + Send),
) -> Result<Outcome, Error> {
    let opts = options(g, None);
    let fleet = super::load_fleet(g).await?;
    let sets = super::load_set_of(g, &fleet)?;
    let map = super::revision_map(map, &sets)?;
    let from = super::adoption(tool, map.as_ref())?;
    let tenants = api::selected(&fleet, &opts.select)?;
    let read = api::inspect_adoptable(&fleet, &sets, &opts, &tenants, tool).await;
    let rows: Vec<tables::AdoptRow> = read
        .into_iter()
        .map(|(t, read)| {
            let planned = read.map(|(applied, foreign)| {
                crate::plan::adopt::adopt(sets.of(t.engine), &applied, from, foreign.as_deref())
            });
            tables::adopt_row(t, tool, planned)
        })
        .collect();
    match g.format {
        Format::Json => writeln!(
            out,
            "{}",
            serde_json::json!({ "from": tool, "dry_run": true, "tenants": rows })
        )?,
        Format::Text | Format::Github | Format::Openmetrics => write!(out, "{}", tables::adopt_text(from, &rows))?,
    }
    Ok(Outcome::Fleet {
        all_well: rows.iter().all(|r| r.refused.is_none()),
    })
}
