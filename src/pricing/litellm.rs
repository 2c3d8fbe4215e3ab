//! `prices import --litellm`: LiteLLM's `model_prices_and_context_window.json`
//! (USD per token) into new versions of the price table.
//!
//! A model whose prices equal its open row's gets nothing; a changed model's
//! open row is closed at the import instant and a new row opens there; a new
//! model gets its first row. Nothing else in the table changes. Before any of
//! that, the file is checked against what is known: a price of a known model
//! going to 0, or moving 10x or more either way, is refused (the real history
//! has both: gemini-2.0-flash listed 1000x too high, a Bedrock Sonnet input
//! price 10x too high) unless forced. Pure: bytes in, plan and CSV out.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, SecondsFormat, Utc};
use rust_decimal::Decimal;
use serde_json::Value;

use crate::error::Problems;
use crate::tabular::{TextTable, parse_decimal};

/// The four prices of a row, USD per 1000 tokens: input, output, cache read,
/// cache write (`None`: not given).
pub type Prices = [Option<Decimal>; 4];

const PRICE_COLUMNS: [&str; 4] = [
    "input_usd_per_1k",
    "output_usd_per_1k",
    "cache_read_usd_per_1k",
    "cache_write_usd_per_1k",
];
const KINDS: [&str; 4] = ["input", "output", "cache read", "cache write"];
const JSON_FIELDS: [&str; 4] = [
    "input_cost_per_token",
    "output_cost_per_token",
    "cache_read_input_token_cost",
    "cache_creation_input_token_cost",
];

/// One model the import changes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    pub provider: String,
    pub model: String,
    /// The open row's prices and its index in the table; `None` for a new model.
    pub old: Option<(usize, Prices)>,
    pub new: Prices,
    pub mode: Option<String>,
}

/// What an import would do.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    pub changes: Vec<Change>,
    /// Models whose prices equal their open row's.
    pub unchanged: usize,
    /// Entries left out, by reason.
    pub skipped: BTreeMap<String, usize>,
    /// Changes refused without `--force` (each names the model and prices).
    pub refused: Vec<String>,
}

fn text(p: Option<Decimal>) -> String {
    p.map(|d| d.normalize().to_string()).unwrap_or_default()
}

fn per_1k(v: &Value) -> Option<Decimal> {
    let d = match v {
        Value::Number(n) => parse_decimal(&n.to_string()).ok()?,
        Value::String(s) => parse_decimal(s).ok()?,
        _ => return None,
    };
    d.checked_mul(Decimal::from(1000)).map(|d| d.normalize())
}

/// Plan the import of `json` into `table` (already a valid price table).
pub fn plan(table: &TextTable, json: &[u8], file: &str) -> Result<Plan, Problems> {
    let root: Value = serde_json::from_slice(json)
        .map_err(|e| Problems(vec![format!("{file}: not JSON: {e}")]))?;
    let Some(models) = root.as_object() else {
        return Err(Problems(vec![format!(
            "{file}: expected an object of models (LiteLLM's model_prices_and_context_window.json)"
        )]));
    };
    let col = |n: &str| table.column(n);
    let (Some(c_provider), Some(c_model), Some(c_to)) =
        (col("provider"), col("model"), col("valid_to"))
    else {
        return Err(Problems(vec![
            "the price table needs provider, model and valid_to columns to take versions".into(),
        ]));
    };
    let c_prices: Vec<Option<usize>> = PRICE_COLUMNS.iter().map(|c| col(c)).collect();
    let mut open: HashMap<(String, String), (usize, Prices)> = HashMap::new();
    for (i, (_, cells)) in table.rows.iter().enumerate() {
        let cell = |c: Option<usize>| c.and_then(|c| cells.get(c).cloned().flatten());
        if cell(Some(c_to)).is_some() {
            continue;
        }
        let prices: Prices = std::array::from_fn(|k| {
            cell(c_prices[k])
                .and_then(|t| parse_decimal(&t).ok())
                .map(|d| d.normalize())
        });
        let key = (
            cell(Some(c_provider)).unwrap_or_default(),
            cell(Some(c_model)).unwrap_or_default(),
        );
        open.insert(key, (i, prices));
    }

    let mut plan = Plan::default();
    for (name, entry) in models {
        if name == "sample_spec" {
            continue;
        }
        let Some(provider) = entry.get("litellm_provider").and_then(Value::as_str) else {
            *plan
                .skipped
                .entry("no litellm_provider".into())
                .or_default() += 1;
            continue;
        };
        let new: Prices = std::array::from_fn(|k| entry.get(JSON_FIELDS[k]).and_then(per_1k));
        if new[0].is_none() && new[1].is_none() {
            *plan
                .skipped
                .entry("no per-token price (images, audio seconds, ...)".into())
                .or_default() += 1;
            continue;
        }
        let key = (provider.to_string(), name.clone());
        let old = open.get(&key).cloned();
        if let Some((_, was)) = &old {
            if *was == new {
                plan.unchanged += 1;
                continue;
            }
            for k in 0..4 {
                let (Some(a), Some(b)) = (was[k], new[k]) else {
                    continue;
                };
                if a.is_zero() {
                    continue;
                }
                if b.is_zero() {
                    plan.refused.push(format!(
                        "{provider}/{name}: {} price would go to 0 (was {} per 1K)",
                        KINDS[k],
                        text(Some(a))
                    ));
                } else if crate::pricing::tenfold(a, b) {
                    plan.refused.push(format!(
                        "{provider}/{name}: {} price would change 10x or more ({} -> {} per 1K)",
                        KINDS[k],
                        text(Some(a)),
                        text(Some(b))
                    ));
                }
            }
        }
        plan.changes.push(Change {
            provider: key.0,
            model: key.1,
            old,
            new,
            mode: entry
                .get("mode")
                .and_then(Value::as_str)
                .map(str::to_string),
        });
    }
    plan.changes
        .sort_by(|a, b| (&a.provider, &a.model).cmp(&(&b.provider, &b.model)));
    Ok(plan)
}

/// The price table with the plan applied at `at`, as CSV: every row as it
/// was (changed models' open rows closed at `at`), then the new rows; lines
/// end as the original's did (`crlf`).
pub fn apply(
    table: &TextTable,
    plan: &Plan,
    at: DateTime<Utc>,
    source: &str,
    crlf: bool,
) -> Vec<u8> {
    let at_text = at.to_rfc3339_opts(SecondsFormat::Secs, true);
    let headers = table.headers();
    let idx = |n: &str| table.column(n);
    let closing: HashMap<usize, ()> = plan
        .changes
        .iter()
        .filter_map(|c| c.old.as_ref().map(|(i, _)| (*i, ())))
        .collect();
    let c_to = idx("valid_to");
    let mut w = csv::WriterBuilder::new()
        .terminator(if crlf {
            csv::Terminator::CRLF
        } else {
            csv::Terminator::Any(b'\n')
        })
        .from_writer(Vec::new());
    let _ = w.write_record(headers);
    for (i, (_, cells)) in table.rows.iter().enumerate() {
        let row: Vec<String> = (0..headers.len())
            .map(|c| {
                if closing.contains_key(&i) && Some(c) == c_to {
                    at_text.clone()
                } else {
                    cells.get(c).cloned().flatten().unwrap_or_default()
                }
            })
            .collect();
        let _ = w.write_record(&row);
    }
    for ch in &plan.changes {
        let row: Vec<String> = headers
            .iter()
            .map(|h| match h.trim().to_ascii_lowercase().as_str() {
                "provider" => ch.provider.clone(),
                "model" => ch.model.clone(),
                "input_usd_per_1k" => text(ch.new[0]),
                "output_usd_per_1k" => text(ch.new[1]),
                "cache_read_usd_per_1k" => text(ch.new[2]),
                "cache_write_usd_per_1k" => text(ch.new[3]),
                "valid_from" => at_text.clone(),
                "mode" => ch.mode.clone().unwrap_or_default(),
                "source" | "source_commit" => source.to_string(),
                _ => String::new(),
            })
            .collect();
        let _ = w.write_record(&row);
    }
    w.into_inner().unwrap_or_default()
}

/// A change for people: `new openai/gpt-5: input 0.00125, output 0.01 per 1K`.
pub fn describe(c: &Change) -> String {
    let prices = |p: &Prices| {
        (0..4)
            .filter_map(|k| p[k].map(|v| format!("{} {}", KINDS[k], text(Some(v)))))
            .collect::<Vec<_>>()
            .join(", ")
    };
    match &c.old {
        None => format!("new {}/{}: {} per 1K", c.provider, c.model, prices(&c.new)),
        Some((_, old)) => format!(
            "changed {}/{}: {} -> {} per 1K",
            c.provider,
            c.model,
            prices(old),
            prices(&c.new)
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: &str = "provider,model,input_usd_per_1k,output_usd_per_1k,cache_read_usd_per_1k,cache_write_usd_per_1k,valid_from,valid_to
openai,gpt-4o,0.0025,0.01,0.00125,,2025-01-01,
openai,gpt-4o-mini,0.00015,0.0006,,,2025-01-01,
gemini,gemini/gemini-2.0-flash,0.0001,0.0004,,,2025-01-01,
anthropic,claude-old,0.008,0.024,,,2024-01-01,2025-01-01
";

    fn at() -> DateTime<Utc> {
        "2026-07-25T00:00:00Z".parse().unwrap()
    }

    #[test]
    fn versions_only_what_changed_and_refuses_zero_and_tenfold() {
        let t = TextTable::from_csv(TABLE.as_bytes()).unwrap();
        let json = br#"{
            "sample_spec": {"input_cost_per_token": 0},
            "gpt-4o": {"litellm_provider": "openai", "mode": "chat", "input_cost_per_token": 2.5e-06, "output_cost_per_token": 1e-05, "cache_read_input_token_cost": 1.25e-06},
            "gpt-4o-mini": {"litellm_provider": "openai", "mode": "chat", "input_cost_per_token": 1.2e-07, "output_cost_per_token": 6e-07},
            "gemini/gemini-2.0-flash": {"litellm_provider": "gemini", "input_cost_per_token": 0.0001, "output_cost_per_token": 0.0},
            "gpt-5": {"litellm_provider": "openai", "mode": "chat", "input_cost_per_token": 1.25e-06, "output_cost_per_token": 1e-05},
            "dall-e-3": {"litellm_provider": "openai", "mode": "image_generation", "output_cost_per_image": 0.04}
        }"#;
        let p = plan(&t, json, "prices.json").unwrap();
        assert_eq!(p.unchanged, 1, "gpt-4o is as it was");
        assert_eq!(
            p.skipped.values().sum::<usize>(),
            1,
            "dall-e-3 has no token price"
        );
        let described: Vec<String> = p.changes.iter().map(describe).collect();
        assert_eq!(
            described,
            [
                "changed gemini/gemini/gemini-2.0-flash: input 0.0001, output 0.0004 -> input 0.1, output 0 per 1K",
                "changed openai/gpt-4o-mini: input 0.00015, output 0.0006 -> input 0.00012, output 0.0006 per 1K",
                "new openai/gpt-5: input 0.00125, output 0.01 per 1K",
            ]
        );
        assert_eq!(
            p.refused,
            [
                "gemini/gemini/gemini-2.0-flash: input price would change 10x or more (0.0001 -> 0.1 per 1K)",
                "gemini/gemini/gemini-2.0-flash: output price would go to 0 (was 0.0004 per 1K)",
            ]
        );

        let csv = String::from_utf8(apply(&t, &p, at(), "litellm:abc", false)).unwrap();
        assert_eq!(
            csv,
            "provider,model,input_usd_per_1k,output_usd_per_1k,cache_read_usd_per_1k,cache_write_usd_per_1k,valid_from,valid_to
openai,gpt-4o,0.0025,0.01,0.00125,,2025-01-01,
openai,gpt-4o-mini,0.00015,0.0006,,,2025-01-01,2026-07-25T00:00:00Z
gemini,gemini/gemini-2.0-flash,0.0001,0.0004,,,2025-01-01,2026-07-25T00:00:00Z
anthropic,claude-old,0.008,0.024,,,2024-01-01,2025-01-01
gemini,gemini/gemini-2.0-flash,0.1,0,,,2026-07-25T00:00:00Z,
openai,gpt-4o-mini,0.00012,0.0006,,,2026-07-25T00:00:00Z,
openai,gpt-5,0.00125,0.01,,,2026-07-25T00:00:00Z,
"
        );
        // The result is a valid price table: no overlaps.
        crate::pricing::PriceTable::parse(&TextTable::from_csv(csv.as_bytes()).unwrap()).unwrap();
    }
}
