//! Incidents: one per event of the day's high-severity anomalies, each with
//! the costliest traces of its group (one narrow evidence scan), the price
//! rows in force for its models and a suggestion; then filed once per day
//! and posted to the webhook once.
//!
//! Assembles what `anomaly::incident` decides from the day's queries and
//! storage; it does not detect anything.

use chrono::{NaiveDate, SecondsFormat, Utc};
use datafusion::execution::context::SessionContext;
use tracing::info;

use super::flow::{Rows, evidence};
use crate::anomaly::Anomaly;
use crate::anomaly::incident::{self, Incident, PriceRowView, Trace};
use crate::calendar::Day;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::history::RouteCounts;
use crate::lake::{Stores, partition_dir};
use crate::manifest::sha256;
use crate::pricing::{PriceTable, Resolution};
use crate::queries::Params;
use crate::queries::rows::{Evidence, decode};

/// Requests by route of each model: over the anomaly window's days (and
/// how many days had routes), and today.
pub(super) struct RouteMix {
    pub window: RouteCounts,
    pub window_days: usize,
    pub today: RouteCounts,
}

/// What an incident is assembled from besides its anomaly.
pub(super) struct Context<'a> {
    pub day: &'a Day,
    pub prices: &'a PriceTable,
    pub resolutions: &'a [Resolution],
    pub routes: &'a RouteMix,
}

/// The incidents of the day's high-severity anomalies: each with its
/// group's costliest traces (sql/evidence.sql with the group as filter), the
/// price rows in force for its models, and a suggestion.
pub(super) async fn incidents(
    ctx: &SessionContext,
    params: &Params,
    rows: Rows<'_>,
    anomalies: &[Anomaly],
    cx: &Context<'_>,
    spill_dir: &std::path::Path,
) -> Result<Vec<Incident>> {
    let opening: Vec<&Anomaly> = anomalies.iter().filter(|a| incident::opens(a)).collect();
    if opening.is_empty() {
        return Ok(Vec::new());
    }
    // One incident per event, not per (group, metric): a person is paged once.
    let events = incident::events(&opening);
    // Each group's traces cost a narrow scan of the day: at most
    // EVIDENCE_PAIRS of them, for the largest impacts (events are sorted so).
    let filters: Vec<[Option<String>; 5]> = events
        .iter()
        .take(crate::reconcile::EVIDENCE_PAIRS)
        .map(|e| e.lead.filter.clone())
        .collect();
    let (schema, batches) = evidence(ctx, params, rows, &filters, spill_dir).await?;
    let opened_at = Utc::now();
    let mut out = Vec::new();
    for (i, event) in events.iter().enumerate() {
        let traces = match batches.get(i) {
            Some(b) => traces(&decode::<Evidence>(&schema, std::slice::from_ref(b))?),
            None => Vec::new(),
        };
        let a = event.lead;
        // The price rows in force today for the group's models.
        let group_models: std::collections::BTreeSet<&String> = a
            .models_before
            .keys()
            .chain(a.models_after.keys())
            .collect();
        let (rows_in_force, cheaper) = in_force(cx, &group_models);
        out.push(incident::record(
            cx.day.date,
            event,
            opened_at,
            (cx.day.start, cx.day.end),
            (
                incident::route_shares(&cx.routes.window, &group_models, cx.routes.window_days),
                incident::route_shares(&cx.routes.today, &group_models, 1),
            ),
            rows_in_force,
            traces,
            incident::suggestion(a, cheaper),
        ));
    }
    Ok(out)
}

/// The first 20 distinct traces of a group's evidence rows (cost order),
/// as the CSVs write their cells.
fn traces(rows: &[Evidence]) -> Vec<Trace> {
    let text = |s: &str| crate::report::guard_formula(s).into_owned();
    let mut seen = std::collections::BTreeSet::new();
    rows.iter()
        .map(|r| Trace {
            trace_id: text(&r.trace_id),
            ts: r
                .ts
                .map(|t| crate::report::format_timestamp(t.0))
                .unwrap_or_default(),
            provider: text(&r.provider),
            model: text(&r.model),
            cost_usd: r.cost_usd.map(|c| c.to_string()).unwrap_or_default(),
        })
        .filter(|t| seen.insert(t.trace_id.clone()))
        .take(20)
        .collect()
}

/// The price rows in force today for `models`, and a cheaper model of the
/// same provider if the price table has one.
fn in_force(
    cx: &Context<'_>,
    models: &std::collections::BTreeSet<&String>,
) -> (Vec<PriceRowView>, Option<(String, rust_decimal::Decimal)>) {
    let mut rows_in_force = Vec::new();
    let mut price_keys = Vec::new();
    for r in cx
        .resolutions
        .iter()
        .filter(|r| models.contains(&format!("{}/{}", r.provider, r.model)))
    {
        price_keys.push((r.price_provider.clone(), r.price_model.clone()));
        for p in cx.prices.versions(&r.price_provider, &r.price_model) {
            if r.price_ids.contains(&p.price_id) {
                rows_in_force.push(PriceRowView {
                    provider: p.provider.clone(),
                    model: p.model.clone(),
                    price_id: p.price_id.clone(),
                    input_usd_per_1k: p.input_usd_per_1k.map(|d| d.normalize().to_string()),
                    output_usd_per_1k: p.output_usd_per_1k.map(|d| d.normalize().to_string()),
                    valid_from: p.valid_from.to_rfc3339(),
                    valid_to: p.valid_to.map(|t| t.to_rfc3339()),
                });
            }
        }
    }
    let cheaper = price_keys.first().and_then(|(provider, _)| {
        let current: Vec<String> = price_keys
            .iter()
            .filter(|(p, _)| p == provider)
            .map(|(_, m)| m.clone())
            .collect();
        incident::cheapest(cx.prices, provider, &current, cx.day.start)
    });
    (rows_in_force, cheaper)
}

/// Write each incident record unless one exists (a rerun never files it
/// twice), then POST those not yet delivered to the webhook and record each
/// delivery. Returns whether a webhook call failed.
pub(super) async fn file_incidents(
    stores: &Stores,
    config: &Config,
    date: NaiveDate,
    incidents: &[Incident],
) -> Result<bool> {
    let dir = config.incidents.join(&partition_dir(date));
    let mut failed = false;
    let mut phase = config
        .webhook
        .as_ref()
        .map(|hook| crate::deliver::Phase::new("webhook", hook.budget));
    for inc in incidents {
        let record = dir.join(&format!("{}.json", inc.id));
        if !stores.exists(&record).await? {
            let json = serde_json::to_vec_pretty(inc)
                .map_err(|e| Error::Internal(format!("incident: {e}")))?;
            stores.put(&record, bytes::Bytes::from(json)).await?;
            info!(id = %inc.id, key = %inc.key, metric = %inc.metric, "incident opened");
        }
        let (Some(hook), Some(phase)) = (&config.webhook, phase.as_mut()) else {
            continue;
        };
        let sent = dir.join(&format!("{}.webhook.json", inc.id));
        if stores.exists(&sent).await? {
            continue;
        }
        if let Some(why) = phase.refusal() {
            tracing::warn!(id = %inc.id, error = %why, "incident webhook failed; a rerun sends it");
            failed = true;
            continue;
        }
        // The stored record is what is sent (a rerun sends the first version).
        let (_, body) = stores.get(&record).await?;
        match crate::deliver::webhook::post(hook, &inc.id, body.to_vec(), phase).await {
            Ok(status) => {
                let note = serde_json::json!({
                    "id": inc.id,
                    "status": status,
                    "sent_at": Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true),
                    "sha256": sha256(&body),
                });
                stores
                    .put(&sent, bytes::Bytes::from(note.to_string()))
                    .await?;
            }
            Err(e) => {
                tracing::warn!(id = %inc.id, error = %e.message, "incident webhook failed; a rerun sends it");
                if e.no_answer {
                    phase.mark_down(format!(
                        "{} did not answer for incident {}",
                        hook.url.host_str().unwrap_or("webhook"),
                        inc.id
                    ));
                }
                failed = true;
            }
        }
    }
    Ok(failed)
}
