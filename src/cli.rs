//! The command line: argument parsing, logging set-up, and the mapping of
//! outcomes to exit codes. Each subcommand calls one library entry point;
//! nothing here computes.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use chrono::{NaiveDate, Utc};
use clap::{Parser, Subcommand, ValueEnum};

use crate::config::{Config, Overrides};
use crate::error::{Error, ExitKind, Result, render_chain};

/// `println!` that never panics: a closed stdout (`tokenledger run | head`)
/// or a full device loses the text, never the run, its lease or its exit code.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout().lock(), $($arg)*);
    }};
}

/// `print!` that never panics (see [`outln`]).
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let mut stdout = std::io::stdout().lock();
        let _ = write!(stdout, $($arg)*);
        let _ = stdout.flush();
    }};
}

/// `eprintln!` that never panics (stderr closed or on a full device).
macro_rules! errln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr().lock(), $($arg)*);
    }};
}

#[derive(Debug, Parser)]
#[command(
    name = "tokenledger",
    version,
    about = "Turn a day of LLM request logs into Ops and Finance numbers both can trust.",
    after_help = "Exit codes: 0 ok; 1 runtime failure (storage, I/O); 2 usage or configuration error; \
                  3 input data unusable (nothing published); 4 data-quality gate failed (published, flagged); \
                  5 published but a mail was not sent (a rerun sends it); 6 a reconciliation line is not ok \
                  (only with --fail-on-mismatch or reconcile.fail_on_mismatch; published); \
                  7 replay: an output is not byte-identical; 8 another run holds the day's lease (nothing done)."
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Log format on stderr: text on a terminal and JSON lines otherwise (auto).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Auto)]
    log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Auto,
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Compute and publish one day's reports.
    Run(RunArgs),
    /// Validate the config, price table, FX table, SQL and templates.
    Check(ConfigArgs),
    /// Write a demo lake (30 days of realistic traffic) and run the job on its last day.
    Demo {
        /// Where to write the demo lake.
        #[arg(long, default_value = "tokenledger-demo")]
        dir: PathBuf,
    },
    /// Replay a published day from its manifest: re-read exactly the inputs it
    /// lists (verifying sizes, etags and digests), recompute, and report
    /// byte-identical or the cells that differ. Writes nothing.
    Replay {
        /// The manifest: a key relative to the lake (e.g.
        /// reports/date=2026-10-31/manifest.json), a path or a URL.
        #[arg(long)]
        manifest: String,
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Show what another price table does to past days (a dry run: nothing
    /// is published).
    Reprice {
        #[arg(long)]
        from: NaiveDate,
        #[arg(long)]
        to: NaiveDate,
        /// The price table to try (CSV or Parquet; a path or URL).
        #[arg(long)]
        prices: String,
        /// Also write the lines as CSV to this local file.
        #[arg(long)]
        out: Option<PathBuf>,
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Build the daily rollups missing in a range of days (the history that
    /// comparisons and anomaly baselines read) from the request logs.
    Backfill {
        #[arg(long)]
        from: NaiveDate,
        #[arg(long)]
        to: NaiveDate,
        /// Rebuild rollups that exist too.
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Serve as a worker of distributed runs (`run --workers`), until
    /// SIGTERM or Ctrl-C: then it takes no new work, lets running tasks end
    /// and exits 0. It reads object storage with its own `[storage]`
    /// settings and credentials; only coordinators inside the cluster may
    /// reach it (see deploy/k8s/distributed/).
    Worker {
        /// Address to listen on, e.g. 0.0.0.0:50051.
        #[arg(long)]
        listen: std::net::SocketAddr,
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Maintain the price table.
    #[command(subcommand)]
    Prices(PricesCommand),
    /// Write one day of synthetic request logs in the lake layout (for benchmarks).
    Gen {
        /// Requests to generate (duplicate deliveries come on top, ~0.5%).
        #[arg(long)]
        rows: usize,
        /// The UTC date of the day.
        #[arg(long)]
        date: NaiveDate,
        /// Lake root to write to (a path or URL).
        #[arg(long)]
        out: String,
        /// Random seed.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Rows per Parquet object.
        #[arg(long, default_value_t = 1_000_000)]
        rows_per_file: usize,
    },
}

#[derive(Debug, Subcommand)]
enum PricesCommand {
    /// New price-table versions from LiteLLM's model_prices_and_context_window.json
    /// (USD per token): a version only where a price changed; a price of a
    /// known model going to 0 or moving 10x is refused without --force.
    Import {
        /// LiteLLM's JSON file (a path or URL).
        #[arg(long)]
        litellm: String,
        /// When the new prices take effect (RFC 3339 or a date); default: now.
        #[arg(long)]
        at: Option<String>,
        /// Import even prices that go to 0 or move 10x.
        #[arg(long)]
        force: bool,
        /// Print the changes; write nothing.
        #[arg(long)]
        dry_run: bool,
        /// Write the table here instead of over the configured one.
        #[arg(long)]
        out: Option<String>,
        #[command(flatten)]
        config: ConfigArgs,
    },
}

#[derive(Debug, clap::Args)]
struct ConfigArgs {
    /// TOML config file.
    #[arg(long, env = "TOKENLEDGER_CONFIG")]
    config: Option<PathBuf>,
    /// Lake root (path or URL); overrides lake.root.
    #[arg(long)]
    lake: Option<String>,
    /// IANA time zone of the report day; overrides run.timezone.
    #[arg(long = "tz")]
    tz: Option<String>,
    /// Run the heavy queries on these workers (`http://host:port`,
    /// comma-separated); overrides engine.workers and engine.workers_dns.
    #[arg(long, value_name = "URL[,URL...]")]
    workers: Option<String>,
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// Report date (YYYY-MM-DD); default: yesterday in the configured zone.
    #[arg(long)]
    date: Option<NaiveDate>,
    /// Mail every audience again, even those the day was already mailed to.
    #[arg(long)]
    resend: bool,
    /// Exit with code 6 when any reconciliation line (day or month to date) is not `ok`.
    #[arg(long)]
    fail_on_mismatch: bool,
    /// Replace a day published in another time zone (its reports and
    /// rollup) with this run's zone; without it such a run exits 2.
    #[arg(long)]
    replace_zone: bool,
    #[command(flatten)]
    config: ConfigArgs,
}

impl ConfigArgs {
    fn load(&self) -> Result<Config> {
        let lake = match &self.lake {
            // A relative --lake is relative to the working directory.
            Some(l) if !l.contains("://") => Some(
                std::path::absolute(l)
                    .map_err(|e| Error::Usage(format!("--lake {l}: {e}")))?
                    .to_string_lossy()
                    .to_string(),
            ),
            other => other.clone(),
        };
        Config::load(
            self.config.as_deref(),
            &Overrides {
                lake,
                timezone: self.tz.clone(),
                workers: self.workers.clone(),
                config_dir: None,
            },
        )
    }
}

/// Whether stderr carries JSON log lines (set once by [`init_logging`]).
static JSON_LOGS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();

fn json_logs() -> bool {
    JSON_LOGS.get().copied().unwrap_or(false)
}

fn init_logging(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("TOKENLEDGER_LOG")
        .unwrap_or_else(|_| EnvFilter::new("tokenledger=info,warn"));
    let json = match format {
        LogFormat::Json => true,
        LogFormat::Text => false,
        LogFormat::Auto => !std::io::stderr().is_terminal(),
    };
    let _ = JSON_LOGS.set(json);
    // A log line that cannot be written (stderr closed or on a full device)
    // is lost; the subscriber must not `eprintln!` about it (that panics).
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .log_internal_errors(false);
    let _ = if json {
        builder
            .with_writer(std::io::stderr)
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init()
    } else {
        builder
            .with_writer(progress::LogWriter::default)
            .with_target(false)
            .try_init()
    };
}

/// The progress line `backfill` draws on a terminal, kept below the text
/// log: a log event clears the line, is written, and the line is drawn
/// again, so INFO lines never overwrite the bar nor the bar a log line.
mod progress {
    use std::io::Write;
    use std::sync::Mutex;

    /// The line on screen now, if any.
    static LINE: Mutex<Option<String>> = Mutex::new(None);

    const CLEAR: &str = "\r\x1b[2K";

    fn line() -> std::sync::MutexGuard<'static, Option<String>> {
        LINE.lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Replace the progress line.
    pub fn draw(text: String) {
        let mut current = line();
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "{CLEAR}{text}");
        let _ = err.flush();
        *current = Some(text);
    }

    /// End the progress line (a newline under it), if one was drawn.
    pub fn finish() {
        if line().take().is_some() {
            let _ = writeln!(std::io::stderr().lock());
        }
    }

    /// Write one log event to `out` with the progress line `bar` kept below.
    pub fn log_above(out: &mut impl Write, bar: Option<&str>, event: &[u8]) {
        match bar {
            Some(bar) => {
                let _ = write!(out, "{CLEAR}");
                let _ = out.write_all(event);
                let _ = write!(out, "{bar}");
            }
            None => {
                let _ = out.write_all(event);
            }
        }
        let _ = out.flush();
    }

    /// The text log's writer: buffers one event, writes it on drop.
    #[derive(Debug, Default)]
    pub struct LogWriter(Vec<u8>);

    impl Write for LogWriter {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Drop for LogWriter {
        fn drop(&mut self) {
            if self.0.is_empty() {
                return;
            }
            let current = line();
            log_above(&mut std::io::stderr().lock(), current.as_deref(), &self.0);
        }
    }

    #[cfg(test)]
    mod tests {
        #[test]
        fn a_log_line_is_written_above_the_progress_bar() {
            let mut out = Vec::new();
            super::log_above(&mut out, Some("[###   ] 3/9"), b"INFO day built\n");
            assert_eq!(
                String::from_utf8(out).unwrap(),
                "\r\x1b[2KINFO day built\n[###   ] 3/9"
            );
            let mut out = Vec::new();
            super::log_above(&mut out, None, b"INFO plain\n");
            assert_eq!(out, b"INFO plain\n");
        }
    }
}

/// Parse the command line, run, print errors with their causes, exit.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() {
                ExitKind::Usage
            } else {
                ExitKind::Ok
            };
            let _ = e.print();
            return code.into();
        }
    };
    init_logging(cli.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(exit_code = ExitKind::Runtime.code(), error = %e, "cannot start the async runtime");
            if !json_logs() {
                errln!("error: cannot start the async runtime: {e}");
            }
            return ExitKind::Runtime.into();
        }
    };
    let run_id = crate::pipeline::new_run_id();
    let command = cli.command.name();
    let span = tracing::info_span!("tokenledger", run_id = %run_id, command);
    let _entered = span.enter();
    let started = std::time::Instant::now();
    let outcome = runtime.block_on(tracing::Instrument::instrument(
        run(cli.command, &run_id),
        span.clone(),
    ));
    let seconds = (started.elapsed().as_secs_f64() * 1000.0).round() / 1000.0;
    // The final line of every command: what happened and its exit code.
    match outcome {
        Ok(kind) => {
            tracing::info!(exit_code = kind.code(), outcome = ?kind, seconds, "finished");
            kind.into()
        }
        Err(e) => {
            let chain = render_chain(&e);
            // JSON logs: the `finished` event below carries the error; a
            // plain line would break the stream for log pipelines.
            if !json_logs() {
                errln!("error: {chain}");
            }
            let kind = e.kind();
            tracing::error!(exit_code = kind.code(), outcome = ?kind, seconds, error = %chain, "finished");
            kind.into()
        }
    }
}

impl Command {
    fn name(&self) -> &'static str {
        match self {
            Command::Run(_) => "run",
            Command::Check(_) => "check",
            Command::Demo { .. } => "demo",
            Command::Replay { .. } => "replay",
            Command::Reprice { .. } => "reprice",
            Command::Backfill { .. } => "backfill",
            Command::Prices { .. } => "prices",
            Command::Gen { .. } => "gen",
            Command::Worker { .. } => "worker",
        }
    }
}

async fn run(command: Command, run_id: &str) -> Result<ExitKind> {
    match command {
        Command::Run(args) => {
            let config = args.config.load()?;
            let date = args
                .date
                .unwrap_or_else(|| crate::calendar::yesterday(Utc::now(), config.timezone));
            let options = crate::pipeline::RunOptions {
                run_id: Some(run_id.to_string()),
                resend: args.resend,
                fail_on_mismatch: args.fail_on_mismatch,
                replace_zone: args.replace_zone,
            };
            let summary = crate::pipeline::run_with(&config, date, &options).await?;
            print_summary(&summary);
            tracing::info!(
                requests = summary.requests,
                cost_usd = %summary.cost_usd,
                stages = %summary.stages.render(),
                "run summary"
            );
            Ok(summary.outcome)
        }
        Command::Check(args) => {
            let config = args.load()?;
            for line in crate::pipeline::check(&config).await? {
                outln!("ok: {line}");
            }
            outln!(
                "ok: config {}",
                args.config
                    .as_deref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_else(|| "(defaults)".into())
            );
            Ok(ExitKind::Ok)
        }
        Command::Replay { manifest, config } => {
            let config = config.load()?;
            let loc = crate::lake::Location::parse(&manifest, Some(&config.lake))
                .map_err(|e| Error::Usage(format!("--manifest: {e}")))?;
            let r = crate::pipeline::audit::replay(&config, &loc).await?;
            print_replay(&loc, &r);
            Ok(if r.identical() {
                ExitKind::Ok
            } else {
                ExitKind::Differs
            })
        }
        Command::Reprice {
            from,
            to,
            prices,
            out,
            config,
        } => {
            if to < from {
                return Err(Error::Usage(format!("--to {to} is before --from {from}")));
            }
            let config = config.load()?;
            let prices = crate::lake::Location::parse(&prices, None)
                .map_err(|e| Error::Usage(format!("--prices: {e}")))?;
            let lines = crate::pipeline::audit::reprice(&config, from, to, &prices).await?;
            let csv = crate::pipeline::audit::reprice_csv(&lines);
            out!("{}", String::from_utf8_lossy(&csv));
            let sum = |f: fn(&crate::pipeline::audit::RepriceLine) -> Option<i128>| -> i128 {
                lines.iter().filter_map(f).sum()
            };
            let (b, a) = (sum(|l| l.before), sum(|l| l.after));
            let unpriced = |f: fn(&crate::pipeline::audit::RepriceLine) -> i64| -> i64 {
                lines.iter().map(f).sum()
            };
            outln!(
                "total {from}..{to}: before {} USD, after {} USD, delta {} USD; unpriced requests before {}, after {} (dry run: nothing published)",
                crate::money::format_scaled(b, crate::money::OUT_SCALE),
                crate::money::format_scaled(a, crate::money::OUT_SCALE),
                crate::money::format_scaled(a - b, crate::money::OUT_SCALE),
                unpriced(|l| l.unpriced_before),
                unpriced(|l| l.unpriced_after)
            );
            if let Some(path) = out {
                std::fs::write(&path, &csv).map_err(|e| Error::Io {
                    what: format!("writing {}", path.display()),
                    source: e,
                })?;
            }
            Ok(ExitKind::Ok)
        }
        Command::Prices(PricesCommand::Import {
            litellm,
            at,
            force,
            dry_run,
            out,
            config,
        }) => {
            let config = config.load()?;
            let file = crate::lake::Location::parse(&litellm, None)
                .map_err(|e| Error::Usage(format!("--litellm: {e}")))?;
            let at = match at {
                Some(t) => crate::tabular::parse_instant(&t)
                    .map_err(|e| Error::Usage(format!("--at: {e}")))?,
                None => Utc::now(),
            };
            let out = out
                .map(|o| crate::lake::Location::parse(&o, None))
                .transpose()
                .map_err(|e| Error::Usage(format!("--out: {e}")))?;
            let r =
                crate::pipeline::prices::import(&config, &file, at, force, dry_run, out.as_ref())
                    .await?;
            for c in &r.plan.changes {
                outln!("{}", crate::pricing::litellm::describe(c));
            }
            for w in &r.plan.refused {
                outln!("forced: {w}");
            }
            let skipped: usize = r.plan.skipped.values().sum();
            outln!(
                "{} new, {} changed, {} unchanged, {} skipped (no per-token price); {}",
                r.plan.changes.iter().filter(|c| c.old.is_none()).count(),
                r.plan.changes.iter().filter(|c| c.old.is_some()).count(),
                r.plan.unchanged,
                skipped,
                match &r.written {
                    Some(loc) => format!("written to {loc}"),
                    None => "nothing written".to_string(),
                }
            );
            Ok(ExitKind::Ok)
        }
        Command::Backfill {
            from,
            to,
            force,
            config,
        } => {
            if to < from {
                return Err(Error::Usage(format!("--to {to} is before --from {from}")));
            }
            let config = config.load()?;
            let total = (to - from).num_days() + 1;
            // JSON logs keep stderr one JSON line per event: no bar then.
            let bar = std::io::stderr().is_terminal() && !json_logs();
            let mut n = 0;
            let days = crate::pipeline::backfill(&config, from, to, force, |date, outcome| {
                use crate::pipeline::Backfilled;
                n += 1;
                let what = match outcome {
                    Backfilled::Present => "present".to_string(),
                    Backfilled::NoLogs => "no logs".to_string(),
                    Backfilled::Built { requests, .. } => format!("built ({requests} requests)"),
                    Backfilled::Failed(e) => format!("FAILED: {}", e.to_string().lines().next().unwrap_or_default()),
                };
                if bar {
                    // A progress bar below the log on a terminal (log lines
                    // are written above it); one log line per day otherwise.
                    let width = 30usize;
                    let done = (n as usize * width) / total.max(1) as usize;
                    progress::draw(format!(
                        "[{}{}] {n}/{total} {date} {what}",
                        "#".repeat(done),
                        " ".repeat(width - done)
                    ));
                } else {
                    tracing::info!(date = %date, day = n, days = total, outcome = %what, "backfill");
                }
            })
            .await;
            progress::finish();
            let days = days?;
            crate::pipeline::warn_price_jumps(&crate::pipeline::jumps_of(&days));
            let count = |f: fn(&crate::pipeline::Backfilled) -> bool| {
                days.iter().filter(|(_, o)| f(o)).count()
            };
            outln!(
                "backfill {from}..{to}: {} built, {} present, {} without logs, {} failed",
                count(|o| matches!(o, crate::pipeline::Backfilled::Built { .. })),
                count(|o| matches!(o, crate::pipeline::Backfilled::Present)),
                count(|o| matches!(o, crate::pipeline::Backfilled::NoLogs)),
                count(|o| matches!(o, crate::pipeline::Backfilled::Failed(_)))
            );
            let mut tasks: std::collections::BTreeMap<&str, u64> = Default::default();
            for (_, o) in &days {
                if let crate::pipeline::Backfilled::Built {
                    tasks_by_worker, ..
                } = o
                {
                    for (url, n) in tasks_by_worker {
                        *tasks.entry(url.as_str()).or_default() += n;
                    }
                }
            }
            if !tasks.is_empty() {
                let list: Vec<String> = tasks.iter().map(|(u, n)| format!("{u} {n}")).collect();
                outln!("  tasks by worker: {}", list.join(", "));
            }
            let mut kind = ExitKind::Ok;
            for (date, o) in &days {
                if let crate::pipeline::Backfilled::NoLogs = o {
                    outln!("  {date}: no logs (no request rows of the day)");
                }
                if let crate::pipeline::Backfilled::Failed(e) = o {
                    outln!("  {date}: {}", render_chain(e));
                    if kind == ExitKind::Ok {
                        kind = e.kind();
                    }
                }
            }
            Ok(kind)
        }
        Command::Worker { listen, mut config } => {
            // A worker reads only the objects a coordinator names, by full
            // URL, and needs only storage settings: without a config file or
            // a lake it runs on the defaults and the environment (AWS_*).
            if config.config.is_none()
                && config.lake.is_none()
                && std::env::var_os("TOKENLEDGER_LAKE__ROOT").is_none()
            {
                config.lake = Some("/".into());
            }
            let config = config.load()?;
            let stores = std::sync::Arc::new(crate::lake::Stores::new(config.s3.clone()));
            tracing::info!(%listen, version = %crate::engine::version(), "worker listening");
            crate::engine::serve(listen, stores, shutdown_signal()).await?;
            tracing::info!("worker stopped");
            Ok(ExitKind::Ok)
        }
        Command::Demo { dir } => {
            let outcome = crate::demo::demo(&dir, crate::demo::DemoOptions::default()).await?;
            outln!(
                "demo lake: {} ({} request rows over 30 days, prices, FX, invoices)",
                outcome.lake,
                outcome.rows_written
            );
            print_summary(&outcome.run);
            outln!(
                "rerun: tokenledger run --config {} --date {}",
                outcome.config_path.display(),
                outcome.run.day.date
            );
            Ok(outcome.run.outcome)
        }
        Command::Gen {
            rows,
            date,
            out,
            seed,
            rows_per_file,
        } => {
            let loc = crate::lake::Location::parse(&out, None)
                .map_err(|e| Error::Usage(format!("--out: {e}")))?;
            let started = std::time::Instant::now();
            let outcome = crate::demo::gen_day(
                &loc,
                crate::demo::GenOptions {
                    rows,
                    date,
                    seed,
                    rows_per_file: rows_per_file.max(1),
                },
            )
            .await?;
            outln!(
                "wrote {} rows in {} objects under {} in {:.1} s",
                outcome.rows,
                outcome.files,
                loc,
                started.elapsed().as_secs_f64()
            );
            Ok(ExitKind::Ok)
        }
    }
}

/// SIGTERM (Kubernetes stopping a pod) or Ctrl-C.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
    tracing::info!("shutdown requested: finishing running tasks, taking no new ones");
}

fn print_replay(manifest: &crate::lake::Location, r: &crate::pipeline::audit::ReplayReport) {
    outln!(
        "replay of {manifest} ({}): {} input object(s) checked, {} changed, {} unverified",
        r.date.map(|d| d.to_string()).unwrap_or_default(),
        r.inputs,
        r.changed_inputs.len(),
        r.unverified_inputs.len()
    );
    for c in &r.changed_inputs {
        outln!("  input changed: {c}");
    }
    for c in &r.unverified_inputs {
        outln!("  input unverified: {c}");
    }
    if let Some(c) = &r.config_changed {
        outln!("  note: {c}");
    }
    let same = r.outputs.iter().filter(|o| o.difference.is_none()).count();
    outln!("outputs: {same} of {} byte-identical", r.outputs.len());
    for o in &r.outputs {
        if let Some(d) = &o.difference {
            outln!("  differs: {}: {d}", o.key);
        }
    }
    let mut notes = Vec::new();
    if !r.changed_inputs.is_empty() {
        notes.push(format!(
            "{} input(s) changed since the run, no output did",
            r.changed_inputs.len()
        ));
    }
    if !r.unverified_inputs.is_empty() {
        notes.push(format!(
            "{} input(s) could not be verified",
            r.unverified_inputs.len()
        ));
    }
    outln!(
        "result: {}",
        match (r.identical(), notes.is_empty()) {
            (true, true) => "byte-identical".to_string(),
            (true, false) => format!("byte-identical ({})", notes.join("; ")),
            (false, _) => "DIFFERS".to_string(),
        }
    );
}

fn print_summary(s: &crate::pipeline::RunSummary) {
    let m = &s.manifest;
    outln!(
        "report day {} ({}): {} requests, cost {} USD, {} unpriced, {} duplicates dropped",
        m.date,
        m.timezone,
        s.requests,
        s.cost_usd,
        m.pricing.unpriced_requests,
        m.rows.duplicates_dropped
    );
    outln!("reports: {}", s.reports);
    for o in &m.outputs {
        outln!("  {} ({} bytes)", o.key, o.size);
    }
    if let Some(d) = &s.deliveries {
        if !d.sent.is_empty() {
            outln!("mail sent: {}", d.sent.join(", "));
        }
        if !d.skipped.is_empty() {
            outln!(
                "mail already sent (use --resend to send again): {}",
                d.skipped.join(", ")
            );
        }
        for (name, e) in &d.failed {
            outln!("mail NOT sent: {name}: {e}");
        }
    }
    let r = &s.reconciliation;
    outln!(
        "reconciliation: {} line(s) for the day, {} month to date, {} not ok; {} invoice object(s)",
        r.day.len(),
        r.month_to_date.len(),
        r.not_ok(),
        m.inputs.invoices.len()
    );
    for (scope, lines) in [("day", &r.day), ("month to date", &r.month_to_date)] {
        for l in lines
            .iter()
            .filter(|l| l.status != crate::reconcile::Status::Ok)
        {
            let money = |v: Option<i128>| {
                v.map_or("-".to_string(), |v| {
                    crate::money::format_scaled(v, crate::money::OUT_SCALE)
                })
            };
            outln!(
                "  {} {}/{} ({scope}): computed {} invoiced {} delta {}{}",
                l.status.as_str(),
                l.provider,
                if l.model.is_empty() { "*" } else { &l.model },
                money(l.computed_usd),
                money(l.invoiced_usd),
                money(l.delta_usd),
                if l.explanation.is_empty() {
                    String::new()
                } else {
                    format!(": {}", l.explanation)
                }
            );
        }
    }
    if m.data_quality.status != "ok" {
        for p in &m.data_quality.problems {
            outln!("data quality: {p}");
        }
    }
}
