//! The daily job, end to end; the only module that knows every stage.
//!
//! 1. Load and validate the price table and FX table (config errors, exit 2).
//! 2. List the partitions that can hold the day's rows; read every footer and
//!    check every file's columns (input errors, exit 3) before any work.
//! 3. The queries ([`flow`]): duplicate keys, ops counts, the finance pass
//!    (duplicate candidates set aside and resolved), then every output.
//! 4. Render everything in memory: CSVs, rollups, the dashboards and charts
//!    ([`dashboards`]); apply the data-quality gates; publish with the
//!    manifest last; rebuild the report index.
//! 5. Mail each audience once ([`crate::deliver::mail`]); a failed send is
//!    exit 5 with everything published.
//!
//! The day's rows are never collected: they stream through DataFusion.
//! ARCHITECTURE.md walks through the data flow step by step.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use chrono::{NaiveDate, Utc};
use tracing::{info, warn};

use crate::calendar::Day;
use crate::config::Config;
use crate::deliver::{Output, publish};
use crate::error::{Error, ExitKind, Problems, Result};
use crate::lake::{Location, Stores, partition_dir};
use crate::manifest::{Manifest, SkipKind, SkippedObject};
use crate::queries;
use crate::reconcile::Reconciliation;

pub mod audit;
mod budget_alerts;
mod compute;
pub mod dashboards;
mod flow;
mod incidents;
mod inputs;
pub mod prices;
pub mod settle;

pub use compute::{Computed, compute};
pub use flow::{DayResults, check_queries};
pub use inputs::{
    InvoiceListing, Invoices, list_invoices, load_fx, load_invoices, load_prices, read_invoices,
};

use crate::deliver::mail::{self, Deliveries};
use dashboards::LetterContext;

/// The names of the CSV exports in `reports/date=D/`.
pub const CSV_OUTPUTS: [&str; 11] = [
    "ops_daily",
    "ops_by_model",
    "finance_by_dimension",
    "data_quality",
    "reconciliation",
    "reconciliation_mtd",
    "reconciliation_by_token_type",
    "logged_vs_computed",
    "reconciliation_evidence",
    "focus_costs",
    "anomalies",
];

/// The CSV exports of a day: [`CSV_OUTPUTS`], then `budgets` where
/// `[[budgets]]` are configured.
pub fn csv_outputs(budgets: bool) -> Vec<&'static str> {
    let mut names = CSV_OUTPUTS.to_vec();
    if budgets {
        names.push("budgets");
    }
    names
}

/// What a finished run produced.
#[derive(Debug)]
pub struct RunSummary {
    pub day: Day,
    /// `reports/date=D/`.
    pub reports: Location,
    pub manifest: Manifest,
    /// `Ok`, or `DataQuality` when a gate failed (outputs published anyway).
    pub outcome: ExitKind,
    /// Kept requests and total priced cost (6 decimals).
    pub requests: u64,
    pub cost_usd: String,
    /// Mail sent, skipped and failed (`None` when mail is off).
    pub deliveries: Option<Deliveries>,
    /// The model the dashboards and mails were rendered from.
    pub report: crate::report::model::Report,
    pub reconciliation: Reconciliation,
    pub run_id: String,
    /// Seconds per stage.
    pub stages: Stages,
    /// Earlier days this run restated (late rows).
    pub restated: Vec<settle::Restatement>,
}

/// How to run a day.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// The run's id in logs, lease and manifest (default: a new one).
    pub run_id: Option<String>,
    /// Mail every audience again, even those already mailed for the day.
    pub resend: bool,
    /// Exit with [`ExitKind::Mismatch`] when a reconciliation line is not
    /// `ok` (also `reconcile.fail_on_mismatch`).
    pub fail_on_mismatch: bool,
    /// Replace a day published in another time zone (else a usage error).
    pub replace_zone: bool,
}

/// Which inputs a computation reads. The default lists the day's partitions,
/// the invoice sources and the rollups of the 30 days before, as a nightly
/// run does; a replay names exactly the objects a manifest lists, and a
/// reprice swaps the price table.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    /// Request-log objects with the partition date each was listed under.
    pub requests: Option<Vec<(Location, NaiveDate)>>,
    /// Invoice objects and how to read each.
    pub invoices: Option<Vec<(Location, crate::reconcile::invoices::Adapter)>>,
    /// Days whose rollups are read as history.
    pub history: Option<Vec<NaiveDate>>,
    /// Another price table (`reprice`).
    pub prices: Option<Location>,
    /// The run's id (default: a new one).
    pub run_id: Option<String>,
    /// The objects the run listed and did not read (a replay reports what
    /// the run reported; default: what this listing skips).
    pub skipped: Option<Vec<SkippedObject>>,
    /// The day's status and what the publication restates (a replay: as
    /// recorded; a restatement: the run it replaces; default: the status at
    /// this run's start, restating nothing).
    pub standing: Option<settle::Standing>,
}

/// A new run id: UTC start time and 32 random bits (`20261128T020000Z-1a2b3c4d`).
pub fn new_run_id() -> String {
    format!(
        "{}-{:08x}",
        Utc::now().format("%Y%m%dT%H%M%SZ"),
        rand::random::<u32>()
    )
}

/// Wall-clock time per stage of a run, each logged as it ends.
#[derive(Debug, Clone)]
pub struct Stages {
    last: std::time::Instant,
    pub done: Vec<(String, f64)>,
}

impl Default for Stages {
    fn default() -> Self {
        Stages {
            last: std::time::Instant::now(),
            done: Vec::new(),
        }
    }
}

impl Stages {
    /// End the current stage: log and record its time.
    pub fn lap(&mut self, stage: &str) {
        let now = std::time::Instant::now();
        let seconds = now.duration_since(self.last).as_secs_f64();
        self.last = now;
        info!(
            stage,
            seconds = (seconds * 1000.0).round() / 1000.0,
            "stage done"
        );
        self.done.push((stage.to_string(), seconds));
    }

    /// `name=1.234s name=0.5s ...`
    pub fn render(&self) -> String {
        self.done
            .iter()
            .map(|(n, t)| format!("{n}={t:.3}s"))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// `tokenledger check`: config (already validated by loading it), SQL, price
/// table, FX table and alias targets; every problem in one error.
pub async fn check(config: &Config) -> Result<Vec<String>> {
    let stores = Stores::new(config.s3.clone());
    let mut problems = Problems::new();
    let mut checked = Vec::new();
    if let Err(e) = check_lake_root(config) {
        problems.push(e.to_string());
    }
    match check_queries().await {
        Ok(_) => checked.push(format!(
            "{} SQL files parse and plan; the {} outputs Rust reads match their row types",
            queries::FILES.len(),
            queries::rows::CONTRACTS.len()
        )),
        Err(e) => problems.push(e.to_string()),
    }
    match crate::report::html::check() {
        Ok(n) => checked.push(format!("{n} templates parse")),
        Err(e) => problems.push(e.to_string()),
    }
    if config.engine.is_distributed() {
        match crate::engine::Cluster::connect(&config.engine).await {
            Ok(cluster) => checked.push(format!(
                "engine: {} worker(s) answer and run this build ({})",
                cluster.urls().len(),
                crate::engine::version()
            )),
            Err(e) => problems.push(e.to_string()),
        }
    }
    match load_prices(&stores, config).await {
        Ok((obj, prices)) => {
            checked.push(format!("price table {} ({} rows)", config.prices, obj.rows));
            let jumps = prices.jumps();
            if !jumps.is_empty() {
                checked.push(format!(
                    "price table: {} price move(s) of 10x or more between versions (check them; a run flags the ones in force on its day):",
                    jumps.len()
                ));
                for j in jumps.iter().take(20) {
                    checked.push(format!("  {j}"));
                }
                if jumps.len() > 20 {
                    checked.push(format!("  ... and {} more", jumps.len() - 20));
                }
            }
            let alias = config.aliases.check_targets(&prices);
            alias.0.into_iter().for_each(|p| problems.push(p));
        }
        Err(e) => problems.push(e.to_string()),
    }
    let fx = match load_fx(&stores, config).await {
        Ok((obj, fx)) => {
            checked.push(match obj {
                Some(obj) => format!("FX table {} ({} rows)", config.fx, obj.rows),
                None => format!("FX table {}: absent (only USD converts)", config.fx),
            });
            Some(fx)
        }
        Err(e) => {
            problems.push(e.to_string());
            None
        }
    };
    // A broken FX table does not hide the invoices' own problems: they are
    // read and parsed all the same, only not converted to USD.
    match load_invoices(&stores, config, fx.as_ref()).await {
        Ok(inv) => {
            checked.push(format!(
                "invoices under {}: {} object(s), {} line(s)",
                config.invoices,
                inv.objects.len(),
                inv.objects.iter().map(|o| o.rows).sum::<u64>()
            ));
            // An invoice no source reads is a layout or config mistake;
            // markers and hidden files are only listed.
            for o in &inv.unread {
                if o.kind == SkipKind::Hidden {
                    checked.push(format!("invoice object {} not read: {}", o.key, o.reason));
                } else {
                    problems.push(format!("invoice object {}: {}", o.key, o.reason));
                }
            }
        }
        Err(e) => problems.push(e.to_string()),
    }
    if problems.is_empty() {
        Ok(checked)
    } else {
        Err(Error::config("tokenledger check", problems))
    }
}

/// A day is published in one time zone: a run in another zone (a one-off
/// `--tz`) would replace its reports and its rollup, and the month to date
/// and baselines would then mix zones. Refused (exit 2) unless the run says
/// it replaces the day on purpose.
async fn check_published_zone(
    stores: &Stores,
    config: &Config,
    date: NaiveDate,
    day_dir: &Location,
    replace: bool,
) -> Result<()> {
    let manifest = day_dir.join("manifest.json");
    let Some(bytes) = stores.get_opt(&manifest).await? else {
        return Ok(());
    };
    let published = serde_json::from_slice::<serde_json::Value>(&bytes)
        .ok()
        .and_then(|m| {
            m.get("timezone")
                .and_then(|z| z.as_str())
                .map(str::to_string)
        });
    match published {
        Some(zone) if zone != config.timezone.name() => {
            if replace {
                warn!(date = %date, published_zone = %zone, zone = %config.timezone, "replacing a day published in another time zone (--replace-zone)");
                Ok(())
            } else {
                Err(Error::Usage(format!(
                    "{date} is published in {zone} ({manifest}); this run is in {}: it would replace that day's reports and rollup, and the month to date would mix zones. Run in {zone}, or pass --replace-zone to replace the day on purpose",
                    config.timezone
                )))
            }
        }
        _ => Ok(()),
    }
}

/// A local lake root must be an existing directory: a typo must not become
/// an empty lake (the lease would create it) nor a retryable failure.
pub fn check_lake_root(config: &Config) -> Result<()> {
    let Some(dir) = config.lake.local_path() else {
        return Ok(());
    };
    match std::fs::metadata(&dir) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(Error::Usage(format!(
            "lake root {}: is a file, not a directory",
            dir.display()
        ))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(Error::Usage(format!(
            "lake root {}: no such directory",
            dir.display()
        ))),
        Err(e) => Err(Error::Usage(format!("lake root {}: {e}", dir.display()))),
    }
}

/// Run the job for one day with default options.
pub async fn run(config: &Config, date: NaiveDate) -> Result<RunSummary> {
    run_with(config, date, &RunOptions::default()).await
}

/// Run the job for one day: take the day's lease, finish what a killed run
/// left, compute, render, gate, publish, mail, release the lease.
pub async fn run_with(
    config: &Config,
    date: NaiveDate,
    options: &RunOptions,
) -> Result<RunSummary> {
    check_lake_root(config)?;
    let run_id = options.run_id.clone().unwrap_or_else(new_run_id);
    let stores = Arc::new(Stores::new(config.s3.clone()));
    let day_dir = config.reports.join(&partition_dir(date));
    let lease = crate::lake::lease::Lease::acquire(
        &stores,
        &day_dir,
        &date.to_string(),
        &run_id,
        config.lease,
    )
    .await?;
    let result = run_leased(config, date, options, &run_id, &stores, &day_dir, &lease).await;
    match lease.release(&stores).await {
        Ok(()) => result,
        // The run's own outcome matters more than a lease left to go stale.
        Err(e) if result.is_err() => {
            tracing::warn!(error = %e, "the lease was not released; it goes stale");
            result
        }
        Err(e) => Err(e),
    }
}

async fn run_leased(
    config: &Config,
    date: NaiveDate,
    options: &RunOptions,
    run_id: &str,
    stores: &Stores,
    day_dir: &Location,
    lease: &crate::lake::lease::Lease,
) -> Result<RunSummary> {
    let (installed, discarded) = crate::deliver::recover(stores, day_dir).await?;
    if installed + discarded > 0 {
        info!(
            installed,
            discarded, "recovered what earlier killed runs left in staging"
        );
    }
    check_published_zone(stores, config, date, day_dir, options.replace_zone).await?;
    // Late rows of the days before restate them first, so this day's month
    // to date and baselines read their settled rollups.
    let restated = settle::settle(config, date, run_id).await?;
    let restated_lines: Vec<String> = restated.iter().map(settle::Restatement::line).collect();
    let mut jumps = BTreeSet::new();
    if config.backfill_missing {
        jumps = history_for(config, date).await?;
    }
    let sel = Selection {
        run_id: Some(run_id.to_string()),
        ..Selection::default()
    };
    let c = compute(config, date, &sel).await?;
    jumps.extend(c.manifest.pricing.price_jumps.iter().cloned());
    warn_price_jumps(&jumps);
    let Computed {
        stores,
        day,
        reports,
        outputs,
        manifest,
        manifest_out,
        kept,
        unpriced,
        cost_usd,
        dashboards,
        reconciliation,
        gate_problems,
        results,
        csvs,
        incidents,
        crossings,
        run_id,
        mut stages,
        ..
    } = c;
    publish(&stores, &reports, &run_id, &outputs, &manifest_out, || {
        lease.verify(&stores)
    })
    .await?;
    info!(requests = kept, cost_usd = %cost_usd, unpriced, alerts = dashboards.report.alerts.len(), reports = %reports, "published");
    let days = dashboards::publish_index(&stores, &config.reports).await?;
    info!(days, index = %config.reports.join("index.html"), "report index written");
    stages.lap("publish");
    let webhook_failed = incidents::file_incidents(&stores, config, day.date, &incidents).await?;
    if !incidents.is_empty() {
        stages.lap("incidents");
    }
    let mut outcome = if (options.fail_on_mismatch || config.reconcile.fail_on_mismatch)
        && reconciliation.not_ok() > 0
    {
        ExitKind::Mismatch
    } else if gate_problems.is_empty() {
        ExitKind::Ok
    } else {
        ExitKind::DataQuality
    };
    if webhook_failed {
        // Like a mail: published, the webhook call missing; a rerun sends it.
        outcome = ExitKind::Delivery;
    }
    let deliveries = if config.mail.enabled() {
        let alerts = budget_alerts::pending(&stores, &config.reports, &crossings).await?;
        let alert_lines: Vec<String> = alerts
            .iter()
            .map(crate::report::budgets::alert_line)
            .collect();
        let letters = dashboards.letters(
            &config.mail,
            &LetterContext {
                date,
                base_url: config.public_base_url.as_ref(),
                csvs: &csvs,
                rollup_daily: &results.rollup_daily.rows()?,
                finance_by_dimension: &results.finance_by_dimension,
                quality_failed: !gate_problems.is_empty(),
                restated: &restated_lines,
                budget_alerts: &alert_lines,
            },
        )?;
        let d = mail::deliver(
            &stores,
            &config.mail,
            &letters,
            &reports.join("deliveries"),
            &partition_dir(date),
            options.resend,
            &run_id,
        )
        .await?;
        info!(
            sent = d.sent.len(),
            already_sent = d.skipped.len(),
            failed = d.failed.len(),
            "mail"
        );
        stages.lap("mail");
        budget_alerts::record(&stores, config, &alerts, &d.sent, date, &run_id).await?;
        if !d.failed.is_empty() {
            // The reports are published; only the mail is missing, and a
            // rerun sends just that.
            outcome = ExitKind::Delivery;
        }
        Some(d)
    } else {
        None
    };

    Ok(RunSummary {
        day,
        reports,
        outcome,
        manifest,
        requests: kept,
        cost_usd,
        deliveries,
        report: dashboards.report,
        reconciliation,
        run_id,
        stages,
        restated,
    })
}

/// One warning per price move in force on any day this run computed, however
/// many days it built (a backfill of 29 days warns once, not 29 times).
pub fn warn_price_jumps(jumps: &BTreeSet<crate::pricing::Jump>) {
    for j in jumps {
        tracing::warn!(jump = %j, "a price in force on a computed day moved 10x or more between versions");
    }
}

/// Build the rollups missing from the anomaly baseline window of `date`
/// (and, with budgets, from the month to date: a budget's actual is the sum
/// of the month's rollups) for days with request logs only: a one-time scan
/// of each such day, after which runs read rollups alone. Days that cannot
/// be built are skipped with a warning; the baseline is then shorter (and a
/// budget's row names the day). Returns the price moves in force on the
/// days built, for the run to warn about once.
async fn history_for(config: &Config, date: NaiveDate) -> Result<BTreeSet<crate::pricing::Jump>> {
    use chrono::Datelike;
    let days = i64::from(config.anomaly.window_days);
    let mut from = date - chrono::Duration::days(days);
    if !config.budgets.is_empty() {
        from = from.min(date.with_day(1).unwrap_or(date));
    }
    let to = date - chrono::Duration::days(1);
    let started = std::time::Instant::now();
    let done = backfill(config, from, to, false, |d, outcome| match outcome {
        Backfilled::Built { requests, .. } => {
            info!(date = %d, requests, "history: built the missing rollup")
        }
        Backfilled::Failed(e) => {
            tracing::warn!(date = %d, error = %e, "history: rollup not built; the baseline skips the day")
        }
        Backfilled::Present | Backfilled::NoLogs => {}
    })
    .await?;
    let built = done
        .iter()
        .filter(|(_, o)| matches!(o, Backfilled::Built { .. }))
        .count();
    if built > 0 {
        info!(
            built,
            seconds = started.elapsed().as_secs_f64(),
            "history: rollups built for the anomaly baseline"
        );
    }
    Ok(jumps_of(&done))
}

/// The price moves in force on the days a backfill built.
pub fn jumps_of(days: &[(NaiveDate, Backfilled)]) -> BTreeSet<crate::pricing::Jump> {
    days.iter()
        .flat_map(|(_, o)| match o {
            Backfilled::Built { price_jumps, .. } => price_jumps.as_slice(),
            _ => &[],
        })
        .cloned()
        .collect()
}

/// What `backfill` did with one day.
#[derive(Debug)]
pub enum Backfilled {
    /// The rollup was there already.
    Present,
    /// No request rows of the day (no objects in the partitions that can
    /// hold them, or only rows of neighbouring days): nothing to build.
    NoLogs,
    /// Built: the day's kept requests, and the 10x price moves in force on
    /// it (for the caller to warn about once, not once per day).
    Built {
        requests: u64,
        price_jumps: Vec<crate::pricing::Jump>,
        /// Tasks each worker ran for the day (empty in local mode).
        tasks_by_worker: BTreeMap<String, u64>,
    },
    /// Could not be built (e.g. no logs that day).
    Failed(Error),
}

/// How many days a multi-day command (`backfill`, `reprice`, a run's
/// missing history) computes at once: one in local mode (a day already
/// uses every core), one per worker with a cluster, so that each worker
/// has a day's tasks to run while the coordinator lists, plans and
/// renders the others. The workers are resolved and checked here, before
/// any day: one that does not answer fails the command at the start.
pub async fn days_in_flight(config: &Config) -> Result<usize> {
    if !config.engine.is_distributed() {
        return Ok(1);
    }
    let cluster = crate::engine::Cluster::connect(&config.engine).await?;
    Ok(cluster.urls().len().max(1))
}

/// Build the daily rollups of `from..=to` that are missing (all of them with
/// `force`), from the request logs, writing only the rollups: the history
/// that comparisons and anomaly baselines read. `progress` sees each day,
/// in date order. With workers, [`days_in_flight`] days are computed at
/// once; each day's rollups are written as soon as it is done.
pub async fn backfill(
    config: &Config,
    from: NaiveDate,
    to: NaiveDate,
    force: bool,
    mut progress: impl FnMut(NaiveDate, &Backfilled),
) -> Result<Vec<(NaiveDate, Backfilled)>> {
    use futures::StreamExt;
    check_lake_root(config)?;
    let stores = Stores::new(config.s3.clone());
    let dates: Vec<NaiveDate> = from.iter_days().take_while(|d| *d <= to).collect();
    let in_flight = if dates.len() > 1 {
        days_in_flight(config).await?
    } else {
        1
    };
    let mut days = futures::stream::iter(dates)
        .map(|date| {
            let stores = &stores;
            async move { (date, backfill_day(config, stores, date, force).await) }
        })
        .buffered(in_flight);
    let mut out = Vec::new();
    while let Some((date, outcome)) = days.next().await {
        let outcome = outcome?;
        progress(date, &outcome);
        out.push((date, outcome));
    }
    Ok(out)
}

/// One day of [`backfill`]; `Err` only for what stops the whole backfill
/// (storage, I/O, internal), a day's own failure is [`Backfilled::Failed`].
async fn backfill_day(
    config: &Config,
    stores: &Stores,
    date: NaiveDate,
    force: bool,
) -> Result<Backfilled> {
    let daily = config
        .rollups
        .join("daily")
        .join(&partition_dir(date))
        .join("part-0.parquet");
    if !force && stores.exists(&daily).await? {
        return Ok(Backfilled::Present);
    }
    if !has_logs(stores, config, date).await? {
        return Ok(Backfilled::NoLogs);
    }
    Ok(match compute(config, date, &Selection::default()).await {
        Ok(c) => {
            // The latency rollup first: the daily one marks the day done.
            let mut rollups: Vec<&Output> = c
                .outputs
                .iter()
                .filter(|o| o.location.as_str().starts_with(config.rollups.as_str()))
                .collect();
            rollups.sort_by_key(|o| o.location == daily);
            for o in rollups {
                stores.put(&o.location, o.bytes.clone()).await?;
            }
            Backfilled::Built {
                requests: c.kept,
                price_jumps: c.manifest.pricing.price_jumps.clone(),
                tasks_by_worker: c.manifest.engine.tasks_by_worker.clone(),
            }
        }
        // What would fail every other day too: storage, the machine, a
        // worker gone.
        Err(
            e @ (Error::Storage { .. }
            | Error::Io { .. }
            | Error::Internal(_)
            | Error::Worker { .. }),
        ) => {
            return Err(e);
        }
        // Objects in the partitions around the day but no row of the
        // day itself (the day before the lake's first partition, whose
        // late-row window reaches into it): a day without logs, as a
        // run's history counts it, not a failure.
        Err(Error::EmptyDay { detail, .. }) => {
            info!(date = %date, %detail, "backfill: no request rows of the day");
            Backfilled::NoLogs
        }
        Err(e) => Backfilled::Failed(e),
    })
}

/// Whether any partition that can hold rows of `date` has a data object.
async fn has_logs(stores: &Stores, config: &Config, date: NaiveDate) -> Result<bool> {
    let day = Day::new(date, config.timezone);
    for p in day.partitions(config.late_days) {
        let listed = stores
            .list(&config.requests.join(&partition_dir(p)))
            .await?;
        if listed
            .iter()
            .any(|o| crate::lake::is_data_file(&o.location))
        {
            return Ok(true);
        }
    }
    Ok(false)
}
