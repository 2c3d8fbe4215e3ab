//! One day computed and rendered in memory, as named stages: load inputs →
//! queries (the history's rollups read and summed beside them) → row
//! accounting and gates → reconciliation →
//! anomalies and incidents → FOCUS rows → outputs and dashboards →
//! manifest. Each stage is a function with typed inputs and outputs;
//! [`compute`] only strings them together.
//!
//! Nothing is written here: publishing, mail and the webhook are the
//! caller's (`run_leased`, `backfill`, `settle`, `audit`).

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};
use datafusion::execution::context::SessionContext;
use tracing::info;

use super::flow::{self, DayResults, Flow, Reference, Rows};
use super::incidents::{self, RouteMix};
use super::inputs::{self, Loaded, object};
use super::{Selection, Stages, dashboards, new_run_id, settle};
use crate::anomaly::Anomaly;
use crate::anomaly::incident::Incident;
use crate::calendar::Day;
use crate::config::Config;
use crate::deliver::Output;
use crate::error::{Error, Result};
use crate::history::History;
use crate::lake::{Stores, partition_dir};
use crate::manifest::{
    DataQuality, FxFacts, Headline, Inputs, Manifest, PricingFacts, RowCounts, SkipKind,
};
use crate::queries::rows::{Dec, RollupDaily};
use crate::queries::{self, Params};
use crate::reconcile::Reconciliation;
use crate::report::model::InputFacts;
use dashboards::Dashboards;

/// A day computed and rendered, nothing written yet.
#[derive(Debug)]
pub struct Computed {
    pub stores: Arc<Stores>,
    pub day: Day,
    pub reports: crate::lake::Location,
    /// Every output but the manifest, rendered.
    pub outputs: Vec<Output>,
    pub manifest: Manifest,
    pub manifest_out: Output,
    pub kept: u64,
    pub unpriced: u64,
    pub cost_usd: String,
    pub dashboards: Dashboards,
    pub reconciliation: Reconciliation,
    pub gate_problems: Vec<String>,
    pub results: DayResults,
    /// The CSV exports as stored, by name.
    pub csvs: Vec<dashboards::Csv>,
    /// Incidents for the day's high-severity anomalies.
    pub incidents: Vec<Incident>,
    /// Each budget on the day, and the thresholds they cross.
    pub budgets: Vec<crate::budget::Row>,
    pub crossings: Vec<crate::budget::Crossing>,
    pub run_id: String,
    pub stages: Stages,
}

/// Compute and render one day (every output in memory); write nothing.
pub async fn compute(config: &Config, date: NaiveDate, sel: &Selection) -> Result<Computed> {
    let frame = Frame::new(config, date, sel);
    let (config, day) = (&frame.config, &frame.day);
    let mut stages = Stages::default();
    queries::parse_all()?;
    crate::report::html::templates()?;

    let stores = Arc::new(Stores::new(config.s3.clone()));
    let loaded = inputs::load(&stores, config, day, sel).await?;
    stages.lap("inputs");
    let digests = inputs::spawn_local_digests(&loaded.requests);
    let spill = flow::spill_dir(config.spill_dir.as_deref())?;
    // The earlier days' rollups are read while the day's queries run: they
    // do not depend on each other, and on object storage the history is a
    // hundred small GETs whose latency the scans hide. Both finish before
    // either's error is reported, the queries' first (one answer per input).
    let (scanned, on_scanned) = tokio::sync::oneshot::channel();
    let (q, history) = tokio::join!(
        run_queries(config, day, &loaded, spill.path(), scanned),
        read_history(&stores, config, date, sel, on_scanned),
    );
    let q = q?;
    let history = history?;
    stages.lap("queries");
    // The day's exact rollup rows: read once, by every stage that needs them.
    let rollup = q.flow.results.rollup_daily.rows()?;
    let acct = account(config, &loaded, &q.flow)?;
    let earlier = Earlier {
        rollup: &rollup,
        history: &history.history,
    };
    let rec = reconcile_day(config, day, &loaded, &q, &earlier, spill.path()).await?;
    let (anomalies, incidents) =
        detect_anomalies(config, day, &loaded, &q, &earlier, spill.path()).await?;
    let budgets = budget_rows(config, date, &rollup, &history.history);
    let focus = focus_rows(config, day, &q.flow.results)?;
    let cost_usd = total_usd(&rollup);
    let reports = config.reports.join(&partition_dir(date));
    let budgets_csv =
        (!config.budgets.is_empty()).then(|| crate::report::budgets::batch(date, &budgets));
    let exports = Exports {
        results: &q.flow.results,
        reconciled: &rec,
        focus: &focus,
        anomalies: &crate::report::anomalies::batch(date, &anomalies),
        budgets: budgets_csv.as_ref(),
    };
    let (mut outputs, csvs) = exports.render(config, day)?;
    let view = DayView {
        day,
        standing: frame.standing.note(acct.rows.kept, &cost_usd),
        results: &q.flow.results,
        earlier: &earlier,
        facts: &acct.facts(&loaded),
        reconciliation: &rec.reconciliation,
        anomalies: &anomalies,
        budgets: &budgets,
    };
    let dashboards = view.dashboards(config)?;
    outputs.extend(dashboards.site(&reports)?);
    let digests = digests
        .await
        .map_err(|e| Error::Internal(format!("digest task: {e}")))??;
    let manifest = ManifestParts {
        frame: &frame,
        cost_usd: &cost_usd,
        alerts: dashboards.report.alerts.len(),
        digests,
        history_read: &history.read,
        outputs: &outputs,
    }
    .build(loaded, &q, &acct);
    let manifest_out = Output::new(reports.join("manifest.json"), manifest.to_json());
    stages.lap("report");
    Ok(Computed {
        stores,
        day: frame.day,
        reports,
        outputs,
        manifest,
        manifest_out,
        kept: acct.rows.kept,
        unpriced: acct.unpriced,
        cost_usd,
        dashboards,
        reconciliation: rec.reconciliation,
        gate_problems: acct.gate_problems,
        results: q.flow.results,
        csvs,
        incidents,
        crossings: crate::budget::crossings(&config.budgets, &budgets),
        budgets,
        run_id: frame.run_id.clone(),
        stages,
    })
}

/// What a computation is of: the config (a reprice's price table swapped
/// in), the day and its standing, the run.
struct Frame {
    config: Config,
    day: Day,
    standing: settle::Standing,
    run_id: String,
    started: DateTime<Utc>,
}

impl Frame {
    fn new(config: &Config, date: NaiveDate, sel: &Selection) -> Frame {
        let config = match &sel.prices {
            Some(prices) => Config {
                prices: prices.clone(),
                ..config.clone()
            },
            None => config.clone(),
        };
        let started = Utc::now();
        let day = Day::new(date, config.timezone);
        let standing = sel
            .standing
            .clone()
            .unwrap_or_else(|| settle::Standing::at(&day, config.late_days, started));
        info!(date = %date, zone = %config.timezone, start = %day.start, end = %day.end, status = standing.status, "report day");
        Frame {
            run_id: sel.run_id.clone().unwrap_or_else(new_run_id),
            config,
            day,
            standing,
            started,
        }
    }
}

/// The day's queries, run, and the session that scanned its rows (the
/// evidence scans of the reconciliation and the incidents run in it too).
pub(super) struct Queried {
    pub params: Params,
    pub flow: Flow,
    /// Price rows in force on the day that jumped 10x from or to a neighbour.
    pub price_jumps: Vec<crate::pricing::Jump>,
    /// The workers, in a distributed run.
    pub cluster: Option<crate::engine::Cluster>,
    /// The session that scans the day's rows (the evidence scans too): the
    /// cluster's in a distributed run, else the one the queries ran in.
    pub scans: SessionContext,
}

/// Stage 2: the queries over the day's rows.
///
/// `scanned` is sent once the day's rows are scanned and found non-empty
/// (what remains are steps over small tables).
async fn run_queries(
    config: &Config,
    day: &Day,
    loaded: &Loaded,
    spill: &std::path::Path,
    scanned: tokio::sync::oneshot::Sender<()>,
) -> Result<Queried> {
    let ctx = queries::session(config.threads, config.memory_limit, spill)?;
    match config.memory_limit {
        Some(bytes) => {
            info!(threads = config.threads, memory_limit_bytes = bytes, spill_dir = %spill.display(), "query memory pool")
        }
        None => {
            info!(threads = config.threads, spill_dir = %spill.display(), "query memory unbounded (no run.memory_limit, no cgroup limit)")
        }
    }
    let params = Params::of(day);
    let input = &loaded.requests;
    let empty_day = |in_day: u64| {
        if in_day > 0 {
            // The receiver is gone only if the history failed, which the
            // join reports.
            let _ = scanned.send(());
            return Ok(());
        }
        Err(Error::EmptyDay {
            date: day.date.to_string(),
            zone: config.timezone.to_string(),
            detail: format!(
                "{} row(s) in {} object(s), none of them in [{}, {}) with all required columns",
                input.rows_listed(),
                input.files().len(),
                day.start.to_rfc3339(),
                day.end.to_rfc3339()
            ),
        })
    };
    let reference = Reference {
        day,
        bucket_keys: config.duplicate_bucket_keys,
        aliases: &config.aliases,
        prices: &loaded.prices,
        fx: &loaded.fx,
    };
    // Workers are resolved and checked now, before any scan: one that does
    // not answer or runs other code fails the run with nothing published.
    let cluster = match config.engine.is_distributed() {
        false => None,
        true => {
            let cluster = crate::engine::Cluster::connect(&config.engine).await?;
            info!(workers = ?cluster.urls().iter().map(|u| u.as_str()).collect::<Vec<_>>(), "distributed run");
            let session = cluster.session(&ctx, std::sync::Arc::clone(input.stores()));
            Some((cluster, session))
        }
    };
    let flow = flow::flow(
        &ctx,
        cluster.as_ref().map(|(_, s)| s),
        &params,
        Rows::Lake(input),
        &reference,
        spill,
        empty_day,
    )
    .await?;
    let timings: Vec<String> = flow
        .timings
        .iter()
        .map(|(n, t)| format!("{n}={t:.3}s"))
        .collect();
    info!(stages = %timings.join(" "), "queries done");
    // Warned once per run by the caller (`warn_price_jumps`), not per day.
    let used: std::collections::BTreeSet<&str> = flow
        .resolutions
        .iter()
        .flat_map(|r| r.price_ids.iter().map(String::as_str))
        .collect();
    let price_jumps = loaded
        .prices
        .jumps()
        .into_iter()
        .filter(|j| j.price_ids.iter().any(|id| used.contains(id.as_str())))
        .collect();
    let (cluster, scans) = match cluster {
        None => (None, ctx),
        Some((cluster, session)) => (Some(cluster), session),
    };
    Ok(Queried {
        params,
        flow,
        price_jumps,
        cluster,
        scans,
    })
}

/// Stage 2b, beside the queries: the earlier days' rollups.
///
/// Every object of the window is fetched and digested while the scans run;
/// the latency rollups are decoded and summed once the scans are done
/// (`scanned` sent, or dropped by a failed run): the day's remaining steps
/// are over small tables and leave a core idle much of the time, and
/// nothing decoded is held beside the scans' peak.
async fn read_history(
    stores: &Stores,
    config: &Config,
    date: NaiveDate,
    sel: &Selection,
    scanned: tokio::sync::oneshot::Receiver<()>,
) -> Result<inputs::LoadedHistory> {
    let mut history = inputs::load_history(stores, config, date, sel).await?;
    // Err: the queries failed, and the join reports their error first.
    let _ = scanned.await;
    let (started, days) = (std::time::Instant::now(), history.latency.fetched.len());
    std::mem::take(&mut history.latency)
        .add_to(&mut history.history)
        .await?;
    tracing::debug!(
        days,
        seconds = started.elapsed().as_secs_f64(),
        "latency history summed"
    );
    Ok(history)
}

/// Where every listed row went, and the data-quality gates.
pub(super) struct Accounting {
    pub rows: RowCounts,
    pub unpriced: u64,
    pub rejected_total: u64,
    /// Logged requests by currency without an FX rate.
    pub unconverted: BTreeMap<String, u64>,
    pub gate_problems: Vec<String>,
    pub unpriced_share: f64,
    pub rejected_share: f64,
    /// `data_quality` totals: token invariant violations, total-token
    /// mismatches, invalid logged costs, invalid citation rates.
    pub quality: [u64; 4],
}

/// Sum of a count over rows; negative counts (impossible) count 0.
fn total<T>(rows: &[T], count: impl Fn(&T) -> i64) -> u64 {
    rows.iter().map(|r| count(r).max(0) as u64).sum()
}

/// Stage 3: the row accounting (every listed row is outside the window,
/// without a timestamp, rejected, kept or a dropped duplicate: else an
/// internal error) and the data-quality gates.
fn account(config: &Config, loaded: &Loaded, flow: &Flow) -> Result<Accounting> {
    let ops = flow.results.ops_daily.rows()?;
    let kept = total(&ops, |r| r.requests.unwrap_or(0));
    let duplicates_dropped = total(&ops, |r| r.duplicates_dropped);
    if duplicates_dropped != flow.dropped {
        return Err(Error::Internal(format!(
            "{} duplicate rows left the ops counts but {duplicates_dropped} were counted",
            flow.dropped
        )));
    }
    let dq = flow.results.data_quality.rows()?;
    let unpriced = total(&dq, |r| r.unpriced_requests);
    let c = &flow.counters;
    let rejected: BTreeMap<String, u64> = c
        .rejected()
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    let rejected_total: u64 = rejected.values().sum();
    let load = |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
    let rows = RowCounts {
        listed: loaded.requests.rows_listed(),
        outside_window: load(&c.outside_window),
        null_ts: load(&c.null_ts),
        rejected,
        in_day: flow.in_day,
        duplicates_dropped,
        duplicate_conflicts: total(&ops, |r| r.duplicate_conflicts),
        kept,
        late_rows: load(&c.late_rows),
        early_rows: load(&c.early_rows),
    };
    if rows.listed != rows.outside_window + rows.null_ts + rejected_total + rows.in_day
        || rows.in_day != rows.kept + rows.duplicates_dropped
    {
        return Err(Error::Internal(format!(
            "row accounting does not balance: {rows:?}"
        )));
    }
    let unpriced_share = unpriced as f64 / kept.max(1) as f64;
    let rejected_share = rejected_total as f64 / (rejected_total + rows.in_day).max(1) as f64;
    let gate_problems = gates(
        config,
        (unpriced, kept, unpriced_share),
        (rejected_total, rejected_share),
    );
    let mut unconverted = BTreeMap::new();
    for r in flow.results.logged_currencies.rows()? {
        if !r.has_rate {
            let name = r.currency.unwrap_or_else(|| "(none)".to_string());
            unconverted.insert(name, r.logged_requests.max(0) as u64);
        }
    }
    Ok(Accounting {
        rows,
        unpriced,
        rejected_total,
        unconverted,
        gate_problems,
        unpriced_share,
        rejected_share,
        quality: [
            total(&dq, |r| r.token_violations),
            total(&dq, |r| r.total_tokens_mismatch),
            total(&dq, |r| r.logged_cost_invalid),
            total(&dq, |r| r.citation_rate_invalid),
        ],
    })
}

/// The data-quality gates that fail, each said in full.
fn gates(
    config: &Config,
    (unpriced, kept, unpriced_share): (u64, u64, f64),
    (rejected_total, rejected_share): (u64, f64),
) -> Vec<String> {
    let mut problems = Vec::new();
    if let Some(max) = config.quality.max_unpriced_share
        && unpriced_share > max
    {
        problems.push(format!(
            "{unpriced} of {kept} requests ({:.4}%) are unpriced; quality.max_unpriced_share is {:.4}%",
            unpriced_share * 100.0,
            max * 100.0
        ));
    }
    if rejected_share > config.quality.max_rejected_share {
        problems.push(format!(
            "{rejected_total} rows of the day were rejected for nulls in required columns ({:.4}%); quality.max_rejected_share is {:.4}%",
            rejected_share * 100.0,
            config.quality.max_rejected_share * 100.0
        ));
    }
    problems
}

impl Accounting {
    /// What the report's data-quality section says of the inputs.
    fn facts(&self, loaded: &Loaded) -> InputFacts {
        InputFacts {
            rows_listed: self.rows.listed,
            late_rows: self.rows.late_rows,
            early_rows: self.rows.early_rows,
            rejected_rows: self.rejected_total,
            logged_unconverted: self.unconverted.clone(),
            skipped_objects: loaded
                .skipped
                .iter()
                .map(|o| (o.key.clone(), o.reason.clone(), o.kind == SkipKind::Hidden))
                .collect(),
            absent_columns: loaded.absent_columns.clone(),
        }
    }
}

/// The reconciliation of the day and the month to date, and its CSVs.
pub(super) struct Reconciled {
    pub reconciliation: Reconciliation,
    /// `reconciliation_evidence`: the costliest requests of lines not ok.
    pub evidence: RecordBatch,
    pub lines: RecordBatch,
    pub month_to_date: RecordBatch,
    pub by_token_type: RecordBatch,
    pub logged_vs_computed: RecordBatch,
}

/// The day's rollup rows and the rollups of the days before it: what the
/// reconciliation and the anomaly baselines compare.
pub(super) struct Earlier<'a> {
    pub rollup: &'a [RollupDaily],
    pub history: &'a History,
}

/// Stage 5: the day and the month to date against the invoices, with
/// evidence for the lines that are not ok (one more narrow scan, only then).
async fn reconcile_day(
    config: &Config,
    day: &Day,
    loaded: &Loaded,
    q: &Queried,
    earlier: &Earlier<'_>,
    spill: &std::path::Path,
) -> Result<Reconciled> {
    let (rollup, history) = (earlier.rollup, earlier.history);
    use crate::reconcile as r;
    let date = day.date;
    let today_usage = r::usage_of(rollup);
    let mut usage: BTreeMap<NaiveDate, r::DayUsage> = history
        .usage
        .range(r::month_start(date)..date)
        .map(|(d, u)| (*d, u.clone()))
        .collect();
    usage.insert(date, today_usage.clone());
    let settings = &config.reconcile.settings;
    let reconciliation = r::reconcile(date, &usage, &loaded.invoices.lines, settings);
    let keys = r::evidence_keys(&reconciliation, &today_usage, &settings.models);
    let pass = std::time::Instant::now();
    let filters: Vec<[Option<String>; 5]> = keys.iter().map(r::pair_filter).collect();
    let rows = Rows::Lake(&loaded.requests);
    let (schema, batches) = flow::evidence(&q.scans, &q.params, rows, &filters, spill).await?;
    info!(
        pairs = keys.len(),
        rows = batches.iter().map(RecordBatch::num_rows).sum::<usize>(),
        seconds = pass.elapsed().as_secs_f64(),
        "evidence"
    );
    let evidence = r::evidence_batch(date, &keys, &schema, &batches)?;
    info!(
        lines = reconciliation.day.len(),
        month_to_date = reconciliation.month_to_date.len(),
        not_ok = reconciliation.not_ok(),
        "reconciled"
    );
    Ok(Reconciled {
        evidence,
        lines: r::lines_batch(date, None, &reconciliation.day),
        month_to_date: r::lines_batch(
            date,
            Some(r::month_start(date)),
            &reconciliation.month_to_date,
        ),
        by_token_type: r::types_batch(date, &reconciliation.day),
        logged_vs_computed: r::drift_batch(date, &reconciliation.logged),
        reconciliation,
    })
}

/// Stage 6: anomalies against the seasonal baseline of the rollups, and an
/// incident for each event of high-severity ones.
async fn detect_anomalies(
    config: &Config,
    day: &Day,
    loaded: &Loaded,
    q: &Queried,
    earlier: &Earlier<'_>,
    spill: &std::path::Path,
) -> Result<(Vec<Anomaly>, Vec<Incident>)> {
    let (rollup, history) = (earlier.rollup, earlier.history);
    let date = day.date;
    let today = crate::anomaly::rows_of(rollup);
    let anomalies = crate::anomaly::detect(date, &today, &history.rows, &config.anomaly);
    info!(
        flagged = anomalies.len(),
        high = anomalies
            .iter()
            .filter(|a| a.severity == crate::anomaly::Severity::High)
            .count(),
        "anomalies"
    );
    // Route mix: the anomaly window's days and today, from the latency rollups.
    let window_from = date - chrono::Duration::days(i64::from(config.anomaly.window_days));
    let (window, window_days) = history.routes(window_from, date - chrono::Duration::days(1));
    let routes = RouteMix {
        window,
        window_days,
        today: crate::history::routes_of(&q.flow.results.rollup_latency.rows()?)
            .unwrap_or_default(),
    };
    let cx = incidents::Context {
        day,
        prices: &loaded.prices,
        resolutions: &q.flow.resolutions,
        routes: &routes,
    };
    let rows = Rows::Lake(&loaded.requests);
    let incidents = incidents::incidents(&q.scans, &q.params, rows, &anomalies, &cx, spill).await?;
    Ok((anomalies, incidents))
}

/// Stage 6b: each budget's month to date and month-end forecast, from
/// the day's rollup and the earlier days' (none without `[[budgets]]`).
fn budget_rows(
    config: &Config,
    date: NaiveDate,
    rollup: &[RollupDaily],
    history: &History,
) -> Vec<crate::budget::Row> {
    if config.budgets.is_empty() {
        return Vec::new();
    }
    let rows = crate::budget::evaluate(
        &config.budgets,
        date,
        &crate::anomaly::rows_of(rollup),
        &history.rows,
    );
    for r in &rows {
        info!(budget = %r.name, month = %r.month, status = r.status.name(), mtd_actual_micros = r.mtd_actual, forecast_micros = r.forecast, "budget");
    }
    rows
}

/// A table as the CSV and Parquet writers take it.
type Table = (SchemaRef, Vec<RecordBatch>);
type TableRef<'a> = (&'a SchemaRef, &'a [RecordBatch]);

/// Stage 7: the FOCUS 1.2 rows: accounts, the billing period (the day's
/// calendar month in the report's zone, as providers invoice), Tags as JSON.
fn focus_rows(config: &Config, day: &Day, results: &DayResults) -> Result<Table> {
    use chrono::Datelike;
    let first = day.date.with_day(1).expect("day 1 exists");
    let next = first
        .checked_add_months(chrono::Months::new(1))
        .ok_or_else(|| Error::Internal(format!("no month after {first}")))?;
    let start_ns = |d: NaiveDate| Day::new(d, config.timezone).window().start_ns;
    let (schema, batches) = results.focus_costs.table();
    crate::report::focus::finish(
        schema,
        batches,
        &config.focus,
        (start_ns(first), start_ns(next)),
    )
}

/// The headline total: the exact sum, rounded once (not a sum of rounded rows).
fn total_usd(rollup: &[RollupDaily]) -> String {
    let scale = crate::history::ROLLUP_MONEY_SCALE;
    let sum: i128 = rollup
        .iter()
        .filter_map(|r| r.cost_usd.map(|c| c.at(scale)))
        .sum();
    let out = crate::money::OUT_SCALE;
    crate::money::format_scaled(Dec { value: sum, scale }.at(out), out)
}

/// What the dashboards show of a day.
struct DayView<'a> {
    day: &'a Day,
    standing: String,
    results: &'a DayResults,
    earlier: &'a Earlier<'a>,
    facts: &'a InputFacts,
    reconciliation: &'a Reconciliation,
    anomalies: &'a [Anomaly],
    budgets: &'a [crate::budget::Row],
}

impl DayView<'_> {
    /// Stage 8b: the report model and its charts, from the typed results.
    fn dashboards(&self, config: &Config) -> Result<Dashboards> {
        let r = self.results;
        Dashboards::build(&crate::report::model::Inputs {
            day: self.day,
            standing: self.standing.clone(),
            ops_daily: &r.ops_daily.rows()?,
            ops_by_model: &r.ops_by_model.rows()?,
            hourly: &r.hourly.rows()?,
            data_quality: &r.data_quality.rows()?,
            rollup_daily: self.earlier.rollup,
            history: self.earlier.history,
            facts: self.facts,
            rules: &config.alerts,
            reconciliation: Some(self.reconciliation),
            anomalies: self.anomalies,
            budgets: self.budgets,
        })
    }
}

/// Every table the day exports.
struct Exports<'a> {
    results: &'a DayResults,
    reconciled: &'a Reconciled,
    focus: &'a Table,
    anomalies: &'a RecordBatch,
    /// `budgets.csv`, only where `[[budgets]]` are configured (a day
    /// without them keeps the outputs it had before budgets existed).
    budgets: Option<&'a RecordBatch>,
}

fn one(batch: &RecordBatch) -> TableRef<'_> {
    (batch.schema_ref(), std::slice::from_ref(batch))
}

impl Exports<'_> {
    /// The CSV exports, by name, in the order the dashboards link them.
    /// Adding an export is one line here (and its name in `CSV_OUTPUTS`).
    fn csv_tables(&self) -> Vec<(&'static str, TableRef<'_>)> {
        let (r, rec) = (self.results, self.reconciled);
        let mut tables = vec![
            ("ops_daily", r.ops_daily.table()),
            ("ops_by_model", r.ops_by_model.table()),
            ("finance_by_dimension", r.finance_by_dimension.table()),
            ("data_quality", r.data_quality.table()),
            ("reconciliation", one(&rec.lines)),
            ("reconciliation_mtd", one(&rec.month_to_date)),
            ("reconciliation_by_token_type", one(&rec.by_token_type)),
            ("logged_vs_computed", one(&rec.logged_vs_computed)),
            ("reconciliation_evidence", one(&rec.evidence)),
            ("focus_costs", (&self.focus.0, &self.focus.1)),
            ("anomalies", one(self.anomalies)),
        ];
        if let Some(b) = self.budgets {
            tables.push(("budgets", one(b)));
        }
        tables
    }

    /// Stage 8: every CSV and rollup rendered in memory before anything is
    /// written; returns the outputs and the CSVs by name (for the mail).
    fn render(&self, config: &Config, day: &Day) -> Result<(Vec<Output>, Vec<dashboards::Csv>)> {
        let reports = config.reports.join(&partition_dir(day.date));
        let mut outputs = Vec::new();
        let mut csvs = Vec::new();
        for (name, (schema, batches)) in self.csv_tables() {
            let bytes = bytes::Bytes::from(crate::report::csv_bytes(schema, batches)?);
            outputs.push(Output::new(
                reports.join(&format!("{name}.csv")),
                bytes.clone(),
            ));
            csvs.push((name, bytes));
        }
        let names: Vec<&str> = csvs.iter().map(|(n, _)| *n).collect();
        let expected = super::csv_outputs(!config.budgets.is_empty());
        if names != expected {
            return Err(Error::Internal(format!(
                "the CSV exports {names:?} are not {expected:?} (CSV_OUTPUTS)"
            )));
        }
        let rollups = [
            ("daily", self.results.rollup_daily.table()),
            ("latency", self.results.rollup_latency.table()),
        ];
        for (dir, (schema, batches)) in rollups {
            let loc = config
                .rollups
                .join(dir)
                .join(&partition_dir(day.date))
                .join("part-0.parquet");
            let zone = [(crate::history::ZONE_KEY, config.timezone.name())];
            let bytes = crate::report::parquet_bytes_with(schema, batches, &zone)?;
            outputs.push(Output::new(loc, bytes));
        }
        Ok((outputs, csvs))
    }
}

/// What the manifest records besides the inputs and the row accounting.
struct ManifestParts<'a> {
    frame: &'a Frame,
    cost_usd: &'a str,
    alerts: usize,
    /// Content digests of local request objects (`None` on object stores).
    digests: Vec<Option<String>>,
    /// Rollup objects read as history, with their digests.
    history_read: &'a [(crate::lake::ObjectInfo, String)],
    outputs: &'a [Output],
}

impl ManifestParts<'_> {
    /// Stage 9: the manifest, last: it lists every output with its digest.
    fn build(self, loaded: Loaded, q: &Queried, acct: &Accounting) -> Manifest {
        let (config, day, standing) = (&self.frame.config, &self.frame.day, &self.frame.standing);
        let absent_columns = loaded.absent_columns.clone();
        let status = if acct.gate_problems.is_empty() {
            "ok"
        } else {
            "failed"
        };
        let [
            token_violations,
            total_tokens_mismatch,
            logged_cost_invalid,
            citation_rate_invalid,
        ] = acct.quality;
        let time = |t: DateTime<Utc>, f| t.to_rfc3339_opts(f, true);
        Manifest {
            manifest_version: crate::manifest::MANIFEST_VERSION,
            program: format!("tokenledger {}", env!("CARGO_PKG_VERSION")),
            run_id: self.frame.run_id.clone(),
            date: day.date.to_string(),
            timezone: config.timezone.to_string(),
            window_start: time(day.start, SecondsFormat::Secs),
            window_end: time(day.end, SecondsFormat::Secs),
            seconds_in_day: day.seconds(),
            started_at: time(self.frame.started, SecondsFormat::Millis),
            finished_at: time(Utc::now(), SecondsFormat::Millis),
            config_digest: config.digest.clone(),
            status: standing.status.to_string(),
            final_after: time(standing.final_after, SecondsFormat::Secs),
            restated_from: standing.restated_from.clone(),
            headline: Headline {
                requests: acct.rows.kept,
                cost_usd: self.cost_usd.to_string(),
                unpriced_requests: acct.unpriced,
                alerts: self.alerts as u64,
                data_quality: status.to_string(),
            },
            inputs: self.inputs(loaded),
            // Read last: the evidence scans after the flow count too.
            engine: match &q.cluster {
                None => crate::manifest::EngineFacts::local(),
                Some(cluster) => crate::manifest::EngineFacts {
                    mode: "distributed".into(),
                    workers: cluster.urls().iter().map(|u| u.to_string()).collect(),
                    tasks_by_worker: cluster.tasks_by_worker(),
                },
            },
            pricing: PricingFacts {
                priced_requests: acct.rows.kept - acct.unpriced,
                unpriced_requests: acct.unpriced,
                models: q.flow.resolutions.clone(),
                price_jumps: q.price_jumps.clone(),
            },
            fx: FxFacts {
                rates: q.flow.chosen_rates.clone(),
                unconverted_requests: acct.unconverted.clone(),
            },
            data_quality: DataQuality {
                status: status.to_string(),
                problems: acct.gate_problems.clone(),
                token_invariant_violations: token_violations,
                total_tokens_mismatch,
                logged_cost_invalid,
                citation_rate_invalid,
                unpriced_share: acct.unpriced_share,
                rejected_share: acct.rejected_share,
                absent_columns,
                rejected_examples: q
                    .flow
                    .counters
                    .examples()
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v))
                    .collect(),
            },
            rows: acct.rows.clone(),
            outputs: self
                .outputs
                .iter()
                .map(|o| o.describe(&config.lake))
                .collect(),
        }
    }

    /// Every object read, with what identifies its content.
    fn inputs(&self, loaded: Loaded) -> Inputs {
        let lake = &self.frame.config.lake;
        Inputs {
            partitions: loaded.partitions,
            requests: loaded
                .requests
                .files()
                .iter()
                .zip(self.digests.iter().cloned())
                .map(|(f, digest)| {
                    object(
                        &f.info,
                        lake,
                        f.rows,
                        digest,
                        Some(partition_dir(f.partition_date)),
                    )
                })
                .collect(),
            prices: loaded.prices_obj,
            fx: loaded.fx_obj,
            invoices: loaded.invoices.objects,
            invoice_rows_skipped: loaded.invoices.skipped,
            invoice_duplicates: loaded.invoices.duplicates,
            history: self
                .history_read
                .iter()
                .map(|(info, sha)| object(info, lake, 0, Some(sha.clone()), None))
                .collect(),
            skipped: loaded.skipped,
        }
    }
}
