//! `tokenledger demo` and `tokenledger gen`: lakes of synthetic traffic.
//!
//! The demo lake holds 30 days (2026-10-02 .. 2026-10-31, fixed so the demo's
//! numbers are reproducible) of request logs from [`crate::synth`], rows that
//! arrive a partition late, duplicate deliveries, the example price table
//! (real LiteLLM price rows plus a price cut at noon on the last day), EUR
//! rates with weekend gaps, provider invoices in the normalized form of SPEC
//! 1.4 (with a deliberate overcharge, a missing invoice and a line without
//! usage), and a config with the alias rules its logged model names need.
//! `gen` writes one day of N rows in the same layout, for benchmarks.
//! Everything is embedded in the binary: no network, no files outside it.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime, Datelike, Days, NaiveDate, Utc, Weekday};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use rust_decimal::Decimal;

use crate::config::{Config, Overrides};
use crate::error::{Error, Result};
use crate::lake::{Location, Stores, partition_dir};
use crate::pricing::{AliasRules, PriceTable};
use crate::synth::{DayShape, LogRow, demo_volume, generate_day, generate_day_with, to_parquet};
use crate::tabular::TextTable;

/// The example price table (also the demo's).
pub const PRICES_CSV: &str = include_str!("../config/example-lake/prices.csv");
/// The example config; the demo writes it with its lake root set to itself.
pub const CONFIG_TOML: &str = include_str!("../config/tokenledger.toml");
const EXAMPLE_ROOT_LINE: &str = "root = \"example-lake\"";

pub fn first_day() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 10, 2).expect("valid date")
}
pub fn last_day() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 10, 31).expect("valid date")
}

/// Knobs of the demo lake.
#[derive(Debug, Clone, Copy)]
pub struct DemoOptions {
    /// Requests on a plain weekday at the start of the month.
    pub weekday_requests: usize,
    pub seed: u64,
}

impl Default for DemoOptions {
    fn default() -> Self {
        DemoOptions {
            weekday_requests: 12_000,
            seed: 20261031,
        }
    }
}

/// The config text of a lake whose config file sits at its root.
pub fn demo_config_text() -> Result<String> {
    if !CONFIG_TOML.contains(EXAMPLE_ROOT_LINE) {
        return Err(Error::Internal(
            "config/tokenledger.toml lost its example root line".into(),
        ));
    }
    Ok(CONFIG_TOML.replacen(
        EXAMPLE_ROOT_LINE,
        "root = \".\"   # this directory: the demo lake",
        1,
    ))
}

/// EUR rates on business days from `from` to `to` (ECB-like: no weekends).
fn fx_csv(from: NaiveDate, to: NaiveDate, seed: u64) -> String {
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut rate: f64 = 1.0850;
    let mut out = String::from("date,currency,usd_per_unit\n");
    for d in from.iter_days().take_while(|d| *d <= to) {
        if matches!(d.weekday(), Weekday::Sat | Weekday::Sun) {
            continue;
        }
        rate += rng.random_range(-0.004..0.004);
        out.push_str(&format!("{d},EUR,{rate:.4}\n"));
    }
    out
}

/// A provider's bill for one request: what the provider charges, by the
/// price in force at the request's time (providers bill each request once,
/// whatever our logs say).
fn billed(
    row: &LogRow,
    prices: &PriceTable,
    rules: &AliasRules,
) -> Option<(String, String, Decimal)> {
    let target = rules.resolve(&row.provider, &row.model);
    // The provider bills the unpriced Mistral model by its real list price.
    let (provider, model) = if row.model == "mistral-large-2411" {
        (
            "mistral".to_string(),
            "mistral/mistral-large-latest".to_string(),
        )
    } else {
        (target.provider.clone(), target.model.clone())
    };
    let at = DateTime::from_timestamp_micros(row.ts_us)?;
    let p = prices
        .versions(&provider, &model)
        .into_iter()
        .find(|p| p.in_force_at(at))?;
    if row.cache_hit {
        return Some((row.provider.clone(), row.model.clone(), Decimal::ZERO));
    }
    let r = row.cache_read_input_tokens.unwrap_or(0);
    let w = row.cache_creation_input_tokens.unwrap_or(0);
    let uncached = (row.input_tokens - r - w).max(0);
    let cost = (Decimal::from(uncached) * p.input_usd_per_1k?
        + Decimal::from(r) * p.cache_read_usd_per_1k?
        + Decimal::from(w) * p.cache_write_usd_per_1k?
        + Decimal::from(row.output_tokens) * p.output_usd_per_1k?)
        / Decimal::from(1000);
    Some((row.provider.clone(), row.model.clone(), cost))
}

/// Normalized invoice lines (SPEC 1.4) for the demo month.
fn invoices_csv(usage: &BTreeMap<(NaiveDate, String, String), Decimal>) -> String {
    let mut lines: BTreeMap<(NaiveDate, String, String), Decimal> = BTreeMap::new();
    for ((date, provider, model), amount) in usage {
        // OpenAI and Anthropic itemize by model; the others bill per provider.
        let itemized = matches!(provider.as_str(), "openai" | "anthropic");
        let key = (
            *date,
            provider.clone(),
            if itemized {
                model.clone()
            } else {
                String::new()
            },
        );
        *lines.entry(key).or_default() += *amount;
    }
    let overcharged = NaiveDate::from_ymd_opt(2026, 10, 15).expect("valid date");
    let unbilled = NaiveDate::from_ymd_opt(2026, 10, 20).expect("valid date");
    let mut out = String::from("provider,date,model,amount,currency\n");
    for ((date, provider, model), amount) in &lines {
        let mut amount = *amount;
        if *date == unbilled && provider == "bedrock" {
            continue; // an invoice line that never came
        }
        if *date == overcharged && provider == "anthropic" {
            amount *= Decimal::new(104, 2); // billed 4% over usage
        }
        out.push_str(&format!(
            "{provider},{date},{model},{},USD\n",
            amount.round_dp(2)
        ));
    }
    out.push_str("cohere,2026-10-12,,17.40,USD\n"); // billed, never used
    out
}

/// What `demo` wrote and ran.
#[derive(Debug)]
pub struct DemoOutcome {
    pub lake: Location,
    pub config_path: std::path::PathBuf,
    pub rows_written: usize,
    pub run: crate::pipeline::RunSummary,
}

/// Write the demo lake to `dir` and run the job on each of its days (mail
/// on the last only).
pub async fn demo(dir: &std::path::Path, options: DemoOptions) -> Result<DemoOutcome> {
    std::fs::create_dir_all(dir).map_err(|e| Error::Io {
        what: format!("creating {}", dir.display()),
        source: e,
    })?;
    let dir = std::path::absolute(dir).map_err(|e| Error::Io {
        what: format!("resolving {}", dir.display()),
        source: e,
    })?;
    let lake = Location::from_local_path(&dir).map_err(Error::Usage)?;
    let stores = Stores::new(Default::default());
    let config_text = demo_config_text()?;
    let config_path = dir.join("tokenledger.toml");

    let prices =
        PriceTable::parse(&TextTable::from_csv(PRICES_CSV.as_bytes()).map_err(Error::Internal)?)
            .map_err(|p| Error::Internal(format!("embedded price table: {p}")))?;
    let rules = Config::from_sources(
        &config_text,
        "demo",
        &[],
        &Overrides {
            lake: Some(dir.to_string_lossy().to_string()),
            ..Overrides::default()
        },
    )?
    .aliases;

    let mut usage: BTreeMap<(NaiveDate, String, String), Decimal> = BTreeMap::new();
    let mut rows_written = 0;
    let mut carried_late: Vec<LogRow> = Vec::new();
    let (first, last) = (first_day(), last_day());
    for date in first.iter_days().take_while(|d| *d <= last) {
        let volume = demo_volume(date, first, options.weekday_requests);
        let day = generate_day(date, volume, DayShape::default(), options.seed);
        let mut seen = std::collections::HashSet::new();
        for row in day.on_time.iter().chain(&day.late) {
            if seen.insert(row.trace_id.as_str())
                && let Some((provider, model, cost)) = billed(row, &prices, &rules)
            {
                *usage.entry((date, provider, model)).or_default() += cost;
            }
        }
        let part = lake.join("requests").join(&partition_dir(date));
        stores
            .put(
                &part.join("part-00000.parquet"),
                Bytes::from(to_parquet(&day.on_time, 8192)?),
            )
            .await?;
        if !carried_late.is_empty() {
            // Yesterday's late rows, written into today's partition.
            stores
                .put(
                    &part.join("part-00001.parquet"),
                    Bytes::from(to_parquet(&carried_late, 8192)?),
                )
                .await?;
        }
        rows_written += day.on_time.len() + day.late.len();
        carried_late = day.late;
    }
    if !carried_late.is_empty() {
        let next = last.checked_add_days(Days::new(1)).expect("valid date");
        let part = lake.join("requests").join(&partition_dir(next));
        stores
            .put(
                &part.join("part-00001.parquet"),
                Bytes::from(to_parquet(&carried_late, 8192)?),
            )
            .await?;
    }
    stores
        .put(
            &lake.join("prices.csv"),
            Bytes::from_static(PRICES_CSV.as_bytes()),
        )
        .await?;
    let fx_from = first.checked_sub_days(Days::new(14)).expect("valid date");
    stores
        .put(
            &lake.join("fx.csv"),
            Bytes::from(fx_csv(fx_from, last, options.seed)),
        )
        .await?;
    stores
        .put(
            &lake.join("invoices/normalized/2026-10.csv"),
            Bytes::from(invoices_csv(&usage)),
        )
        .await?;
    stores
        .put(&lake.join("tokenledger.toml"), Bytes::from(config_text))
        .await?;

    let config = Config::load(Some(&config_path), &Overrides::default())?;
    // The month before the last day, as the nightly job would have run it
    // (without mail), so the last day's dashboards have their trailing
    // values, month to date and 30-day trend, and the index lists every day.
    let mut backfill = config.clone();
    backfill.mail = Default::default();
    for date in first.iter_days().take_while(|d| *d < last) {
        let r = crate::pipeline::run(&backfill, date).await?;
        tracing::info!(date = %date, requests = r.requests, cost_usd = %r.cost_usd, "demo backfill");
    }
    let run = crate::pipeline::run(&config, last).await?;
    Ok(DemoOutcome {
        lake,
        config_path,
        rows_written,
        run,
    })
}

/// Knobs of `gen`.
#[derive(Debug, Clone, Copy)]
pub struct GenOptions {
    pub rows: usize,
    pub date: NaiveDate,
    pub seed: u64,
    pub rows_per_file: usize,
}

/// What `gen` wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenOutcome {
    pub files: usize,
    pub rows: usize,
}

/// The duplicates and late rows of a `gen` day.
const GEN_SHAPE: DayShape = DayShape {
    duplicate_share: 0.005,
    conflict_share: 0.0005,
    late_share: 0.02,
};

/// Write one day of `rows` requests (plus ~0.5% duplicate deliveries and a few
/// rows arriving in the next partition) under `out` in the lake layout, with
/// the example price table and an FX table.
pub async fn gen_day(out: &Location, options: GenOptions) -> Result<GenOutcome> {
    let stores = Arc::new(Stores::new(Default::default()));
    let (tx, mut rx) = tokio::sync::mpsc::channel::<(Location, Vec<u8>)>(2);
    let out2 = out.clone();
    let producer = tokio::task::spawn_blocking(move || -> Result<GenOutcome> {
        let shape = GEN_SHAPE;
        let part = out2.join("requests").join(&partition_dir(options.date));
        let next = options
            .date
            .checked_add_days(Days::new(1))
            .expect("valid date");
        let late_part = out2.join("requests").join(&partition_dir(next));
        // Each object is encoded as its rows come: memory holds one
        // object's bytes, never its rows, however large it is.
        let new_sink = || crate::synth::ParquetSink::new(131_072);
        let (mut on_time, mut late) = (new_sink()?, new_sink()?);
        let (mut files, mut rows) = (0usize, 0usize);
        let mut failed: Option<Error> = None;
        let send = |sink: crate::synth::ParquetSink, loc: Location, failed: &mut Option<Error>| {
            if sink.rows() == 0 || failed.is_some() {
                return;
            }
            match sink.finish() {
                Ok(bytes) => {
                    if tx.blocking_send((loc, bytes)).is_err() {
                        *failed = Some(Error::Internal("writer stopped".into()));
                    }
                }
                Err(e) => *failed = Some(e),
            }
        };
        generate_day_with(
            options.date,
            options.rows,
            shape,
            options.seed,
            &mut |row, is_late| {
                rows += 1;
                if failed.is_some() {
                    return;
                }
                let sink = if is_late { &mut late } else { &mut on_time };
                if let Err(e) = sink.push(row) {
                    failed = Some(e);
                    return;
                }
                if !is_late && on_time.rows() >= options.rows_per_file {
                    match new_sink() {
                        Ok(next) => {
                            let full = std::mem::replace(&mut on_time, next);
                            send(
                                full,
                                part.join(&format!("part-{files:05}.parquet")),
                                &mut failed,
                            );
                            files += 1;
                        }
                        Err(e) => failed = Some(e),
                    }
                }
            },
        );
        if on_time.rows() > 0 {
            send(
                on_time,
                part.join(&format!("part-{files:05}.parquet")),
                &mut failed,
            );
            files += 1;
        }
        if late.rows() > 0 {
            send(late, late_part.join("part-late-00000.parquet"), &mut failed);
            files += 1;
        }
        match failed {
            Some(e) => Err(e),
            None => Ok(GenOutcome { files, rows }),
        }
    });
    while let Some((loc, bytes)) = rx.recv().await {
        stores.put(&loc, Bytes::from(bytes)).await?;
    }
    let outcome = producer
        .await
        .map_err(|e| Error::Internal(format!("generator task: {e}")))??;
    stores
        .put(
            &out.join("prices.csv"),
            Bytes::from_static(PRICES_CSV.as_bytes()),
        )
        .await?;
    let from = options
        .date
        .checked_sub_days(Days::new(14))
        .expect("valid date");
    stores
        .put(
            &out.join("fx.csv"),
            Bytes::from(fx_csv(from, options.date, options.seed)),
        )
        .await?;
    Ok(outcome)
}

/// Today's date, for defaults.
pub fn today() -> NaiveDate {
    Utc::now().date_naive()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `gen` encodes each object as its rows come; the objects are the
    /// ones collecting the rows first and encoding them gave.
    #[tokio::test]
    async fn gen_writes_objects_as_their_rows_come_with_the_same_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let date = NaiveDate::from_ymd_opt(2026, 3, 2).unwrap();
        let out = Location::parse(dir.path().to_str().unwrap(), None).unwrap();
        let options = GenOptions {
            rows: 2_500,
            date,
            seed: 3,
            rows_per_file: 1_000,
        };
        let outcome = gen_day(&out, options).await.unwrap();

        // The same rows, collected first, cut every 1,000 on-time rows.
        let (mut on_time, mut late) = (Vec::new(), Vec::new());
        crate::synth::generate_day_with(date, 2_500, GEN_SHAPE, 3, &mut |row, is_late| {
            if is_late {
                late.push(row);
            } else {
                on_time.push(row);
            }
        });
        let total = on_time.len() + late.len();
        assert_eq!(outcome.rows, total);
        let chunks: Vec<&[crate::synth::LogRow]> = on_time.chunks(1_000).collect();
        assert_eq!(outcome.files, chunks.len() + usize::from(!late.is_empty()));
        let part = dir.path().join("requests").join(partition_dir(date));
        for (i, chunk) in chunks.iter().enumerate() {
            let got = std::fs::read(part.join(format!("part-{i:05}.parquet"))).unwrap();
            assert_eq!(
                got,
                crate::synth::to_parquet(chunk, 131_072).unwrap(),
                "object {i}"
            );
        }
        if !late.is_empty() {
            let next = date.succ_opt().unwrap();
            let got = std::fs::read(
                dir.path()
                    .join("requests")
                    .join(partition_dir(next))
                    .join("part-late-00000.parquet"),
            )
            .unwrap();
            assert_eq!(got, crate::synth::to_parquet(&late, 131_072).unwrap());
        }
    }

    #[test]
    fn the_demo_config_points_at_its_own_directory() {
        let text = demo_config_text().unwrap();
        assert!(text.contains("root = \".\""));
        assert!(!text.contains(EXAMPLE_ROOT_LINE));
    }

    #[test]
    fn fx_has_no_weekend_rates() {
        let csv = fx_csv(first_day(), last_day(), 1);
        assert!(csv.contains("2026-10-30,EUR,"));
        assert!(!csv.contains("2026-10-31,EUR,"), "Saturday has no rate");
        assert!(!csv.contains("2026-10-04,EUR,"), "Sunday has no rate");
    }

    #[test]
    fn the_embedded_price_table_is_valid() {
        let t = PriceTable::parse(&TextTable::from_csv(PRICES_CSV.as_bytes()).unwrap()).unwrap();
        assert_eq!(t.versions("openai", "gpt-4o-mini").len(), 2);
    }
}
