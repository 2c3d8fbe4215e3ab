//! Budget alerts go out once a month per threshold: a crossing (the actual
//! reaching a share of a budget, or the forecast going over it) is listed in
//! the finance letter of the first day it is seen, and recorded under
//! `reports/budget-alerts/month=YYYY-MM/<budget>/<crossing>.json` once that
//! letter was sent. A crossing with a record is not listed again that month
//! (a rerun, the next day); one whose letter failed is listed the next time.
//! Only the records are written here; what crossed is `crate::budget`'s.

use bytes::Bytes;
use chrono::{NaiveDate, SecondsFormat, Utc};
use serde::Serialize;

use super::dashboards::slug;
use crate::budget::Crossing;
use crate::config::Config;
use crate::deliver::mail::ReportKind;
use crate::error::{Error, Result};
use crate::lake::{Location, Stores};

/// Where the record of a crossing is.
fn record_of(reports: &Location, c: &Crossing) -> Location {
    reports
        .join("budget-alerts")
        .join(&format!("month={}", c.month))
        .join(&slug(&c.budget))
        .join(&format!("{}.json", c.key()))
}

/// The crossings not yet alerted this month.
pub(super) async fn pending(
    stores: &Stores,
    reports: &Location,
    crossings: &[Crossing],
) -> Result<Vec<Crossing>> {
    let mut out = Vec::new();
    for c in crossings {
        if !stores.exists(&record_of(reports, c)).await? {
            out.push(c.clone());
        }
    }
    Ok(out)
}

#[derive(Serialize)]
struct Record<'a> {
    #[serde(flatten)]
    crossing: &'a Crossing,
    alert: String,
    date: String,
    letters: &'a [String],
    run_id: &'a str,
    sent_at: String,
}

/// Record `alerts` as alerted when a finance letter of `date` carrying
/// them was among the letters `sent` (nothing is recorded otherwise: the
/// next run lists them again).
pub(super) async fn record(
    stores: &Stores,
    config: &Config,
    alerts: &[Crossing],
    sent: &[String],
    date: NaiveDate,
    run_id: &str,
) -> Result<()> {
    let letters: Vec<String> = config
        .mail
        .audiences
        .iter()
        .filter(|a| a.kind == ReportKind::Finance && sent.contains(&a.name))
        .map(|a| a.name.clone())
        .collect();
    if letters.is_empty() {
        return Ok(());
    }
    let reports = &config.reports;
    let letters = letters.as_slice();
    for c in alerts {
        let rec = Record {
            crossing: c,
            alert: crate::report::budgets::alert_line(c),
            date: date.to_string(),
            letters,
            run_id,
            sent_at: Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true),
        };
        let json = serde_json::to_vec_pretty(&rec).map_err(|e| Error::Internal(e.to_string()))?;
        stores
            .put(&record_of(reports, c), Bytes::from(json))
            .await?;
        tracing::info!(budget = %c.budget, month = %c.month, alert = %c.key(), "budget alert sent");
    }
    Ok(())
}
