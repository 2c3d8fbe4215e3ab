//! Invoice adapters: real provider exports to SPEC 1.4's normalized lines.
//!
//! Each adapter reads one object's bytes (the pipeline fetches them) and
//! returns [`InvoiceLine`]s, or every problem it found, each naming the object
//! and the line, row or JSON path. Amounts are parsed as exact decimals (JSON
//! numbers through their shortest text, which is the decimal the exporter
//! wrote). Lines that are not usage (taxes, purchases, other cloud services)
//! are left out and counted by reason, so a reader can see what was skipped.
//! Pure: bytes in, lines out; no I/O, no FX, no model rules (those belong to
//! [`super::reconcile`]).

use std::collections::BTreeMap;

use bytes::Bytes;
use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;
use serde_json::Value;

use super::{Charge, InvoiceLine, SCALE, TokenType};
use crate::error::Problems;
use crate::fx::{normalize_currency, parse_iso_date};
use crate::tabular::{TextTable, parse_decimal, parse_instant};

/// Which format an invoice source is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Format {
    /// SPEC 1.4's CSV: `provider, date, model, amount, currency` (plus the
    /// optional `token_type` and `charge` columns).
    Normalized,
    /// OpenAI `GET /v1/organization/costs` pages (JSON).
    OpenAiCosts,
    /// Anthropic `GET /v1/organizations/cost_report` pages (JSON; cents).
    AnthropicCostReport,
    /// AWS Cost and Usage Report 2.0 (CSV or Parquet), Bedrock line items.
    AwsCur,
    /// FinOps FOCUS 1.x CSV.
    Focus,
}

impl Format {
    pub const ALL: [(&'static str, Format); 5] = [
        ("normalized", Format::Normalized),
        ("openai_costs", Format::OpenAiCosts),
        ("anthropic_cost_report", Format::AnthropicCostReport),
        ("aws_cur", Format::AwsCur),
        ("focus", Format::Focus),
    ];

    pub fn parse(s: &str) -> Option<Format> {
        Format::ALL.iter().find(|(n, _)| *n == s).map(|(_, f)| *f)
    }

    pub fn name(self) -> &'static str {
        Format::ALL
            .iter()
            .find(|(_, f)| *f == self)
            .map(|(n, _)| *n)
            .expect("every format is listed")
    }

    /// The provider its lines belong to when the config names none.
    pub fn default_provider(self) -> Option<&'static str> {
        match self {
            Format::OpenAiCosts => Some("openai"),
            Format::AnthropicCostReport => Some("anthropic"),
            Format::AwsCur => Some("bedrock"),
            Format::Normalized | Format::Focus => None,
        }
    }
}

/// How to read one invoice source.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Adapter {
    pub format: Format,
    /// Our provider name for every line (required where the format has no
    /// provider of ours; for FOCUS it replaces `ProviderName`).
    pub provider: Option<String>,
    /// FOCUS: keep only rows with this `ProviderName` / `ServiceName`.
    pub provider_name: Option<String>,
    pub service_name: Option<String>,
    /// FOCUS: the column naming the model (e.g. `SkuId`, `x_Model`); without
    /// one a FOCUS source is reconciled per provider.
    pub model_column: Option<String>,
    /// CUR: keep only line items of this product code (default `AmazonBedrock`).
    pub product_code: Option<String>,
}

impl Adapter {
    pub fn new(format: Format) -> Adapter {
        Adapter {
            format,
            provider: None,
            provider_name: None,
            service_name: None,
            model_column: None,
            product_code: None,
        }
    }

    fn provider(&self) -> Option<String> {
        self.provider
            .clone()
            .or_else(|| self.format.default_provider().map(str::to_string))
    }
}

/// What an adapter made of one object.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Parsed {
    pub lines: Vec<InvoiceLine>,
    /// Rows left out, by reason (e.g. `ChargeCategory Tax`).
    pub skipped: BTreeMap<String, u64>,
}

impl Parsed {
    fn skip(&mut self, reason: String) {
        *self.skipped.entry(reason).or_default() += 1;
    }
}

/// The lines, or every problem found.
fn done(parsed: Parsed, problems: Problems) -> Result<Parsed, Problems> {
    if problems.is_empty() {
        Ok(parsed)
    } else {
        Err(problems)
    }
}

/// Parse one object's bytes. `key` names the object in every problem.
pub fn parse(adapter: &Adapter, key: &str, bytes: Bytes) -> Result<Parsed, Problems> {
    match adapter.format {
        Format::Normalized => normalized(key, &bytes),
        Format::OpenAiCosts => openai(adapter, key, &bytes),
        Format::AnthropicCostReport => anthropic(adapter, key, &bytes),
        Format::AwsCur => cur(adapter, key, bytes),
        Format::Focus => focus(adapter, key, &bytes),
    }
}

/// An exact amount at [`SCALE`] decimals, half to even beyond (no invoice
/// has 23 decimals; Anthropic's cents divided by 100 have a few more than given).
fn scaled(d: Decimal) -> i128 {
    crate::money::rescale(d.mantissa(), d.scale() as i8, SCALE)
}

fn amount(text: &str) -> Result<i128, String> {
    parse_decimal(text).map(scaled)
}

/// A JSON number or string as an exact decimal (numbers through their
/// shortest text: `0.06` stays 0.06, never 0.059999…).
fn json_decimal(v: &Value) -> Option<Decimal> {
    match v {
        Value::Number(n) => parse_decimal(&n.to_string()).ok(),
        Value::String(s) => parse_decimal(s).ok(),
        _ => None,
    }
}

fn cell(cells: &[Option<String>], i: Option<usize>) -> Option<&str> {
    let v = cells.get(i?)?.as_deref()?;
    // FOCUS exports write NULL for empty cells.
    (v != "NULL").then_some(v)
}

fn table(key: &str, bytes: Bytes, name: &str) -> Result<TextTable, Problems> {
    TextTable::from_bytes(name, bytes).map_err(|e| Problems(vec![format!("{key}: {e}")]))
}

fn require(key: &str, t: &TextTable, names: &[&str]) -> Result<Vec<usize>, Problems> {
    let missing: Vec<&str> = names
        .iter()
        .copied()
        .filter(|n| t.column(n).is_none())
        .collect();
    if missing.is_empty() {
        Ok(names
            .iter()
            .map(|n| t.column(n).expect("checked"))
            .collect())
    } else {
        Err(Problems(vec![format!(
            "{key}: missing column(s) {}; found {}",
            missing.join(", "),
            t.headers().join(", ")
        )]))
    }
}

fn currency(code: &str) -> Result<String, String> {
    let c = normalize_currency(code);
    if c.len() == 3 && c.bytes().all(|b| b.is_ascii_uppercase()) {
        Ok(c)
    } else {
        Err(format!("currency `{code}` is not a 3-letter ISO 4217 code"))
    }
}

fn normalized(key: &str, bytes: &[u8]) -> Result<Parsed, Problems> {
    let t = TextTable::from_csv(bytes).map_err(|e| Problems(vec![format!("{key}: {e}")]))?;
    let cols = require(key, &t, &["provider", "date", "amount", "currency"])?;
    let (c_model, c_type, c_charge) = (
        t.column("model"),
        t.column("token_type"),
        t.column("charge"),
    );
    let mut problems = Problems::new();
    let mut lines = Vec::new();
    for (label, cells) in &t.rows {
        let at = format!("{key} {label}");
        let get = |i: usize| cells.get(i).cloned().flatten().unwrap_or_default();
        let provider = get(cols[0]);
        if provider.is_empty() {
            problems.push(format!("{at}: provider is empty"));
        }
        let date = parse_iso_date(&get(cols[1]));
        if date.is_none() {
            problems.push(format!("{at}: date `{}` is not YYYY-MM-DD", get(cols[1])));
        }
        let value = amount(&get(cols[2])).map_err(|e| problems.push(format!("{at}: amount: {e}")));
        let cur = currency(&get(cols[3])).map_err(|e| problems.push(format!("{at}: {e}")));
        let token_type = match cell(cells, c_type) {
            None => Ok(None),
            Some(s) => TokenType::parse(s).map(Some).ok_or_else(|| {
                problems.push(format!(
                    "{at}: token_type `{s}` is not one of uncached_input, cache_read, cache_write, output, other"
                ))
            }),
        };
        let charge = match cell(cells, c_charge) {
            None => Ok(Charge::Usage),
            Some(s) => Charge::parse(s).ok_or_else(|| {
                problems.push(format!(
                    "{at}: charge `{s}` is not one of usage, credit, adjustment"
                ))
            }),
        };
        if let (Some(date), Ok(amount), Ok(currency), Ok(token_type), Ok(charge), false) =
            (date, value, cur, token_type, charge, provider.is_empty())
        {
            lines.push(InvoiceLine {
                provider,
                date,
                model: cell(cells, c_model).map(str::to_string),
                token_type,
                charge,
                amount,
                currency,
                source: at,
            });
        }
    }
    done(
        Parsed {
            lines,
            skipped: BTreeMap::new(),
        },
        problems,
    )
}

/// JSON pages: one page object, an array of pages, or one page per line.
fn pages(key: &str, bytes: &[u8]) -> Result<Vec<Value>, Problems> {
    let bad = |e: String| Problems(vec![format!("{key}: not JSON: {e}")]);
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Array(pages)) => Ok(pages),
        Ok(page) => Ok(vec![page]),
        Err(first) => {
            let text = std::str::from_utf8(bytes).map_err(|e| bad(e.to_string()))?;
            let mut out = Vec::new();
            for (i, line) in text
                .lines()
                .enumerate()
                .filter(|(_, l)| !l.trim().is_empty())
            {
                out.push(serde_json::from_str(line).map_err(|e| {
                    bad(if i == 0 {
                        first.to_string()
                    } else {
                        format!("line {}: {e}", i + 1)
                    })
                })?);
            }
            Ok(out)
        }
    }
}

/// The buckets of every page, with their JSON paths.
fn buckets<'a>(key: &str, pages: &'a [Value], problems: &mut Problems) -> Vec<(String, &'a Value)> {
    let mut out = Vec::new();
    for (p, page) in pages.iter().enumerate() {
        match page.get("data").and_then(Value::as_array) {
            Some(data) => out.extend(
                data.iter()
                    .enumerate()
                    .map(|(b, v)| (format!("{key} page {} data[{b}]", p + 1), v)),
            ),
            None => problems.push(format!(
                "{key} page {}: no `data` array (expected a cost page)",
                p + 1
            )),
        }
    }
    out
}

fn utc_date(t: DateTime<Utc>) -> NaiveDate {
    t.date_naive()
}

/// OpenAI costs: `data[].results[].amount.value` (dollars, a JSON number),
/// `amount.currency` (lower case), `line_item` (`"gpt-4o-2024-08-06, input"`),
/// day buckets by unix `start_time`. The usage day is the bucket's UTC date.
fn openai(adapter: &Adapter, key: &str, bytes: &[u8]) -> Result<Parsed, Problems> {
    let provider = adapter.provider().expect("openai has a default provider");
    let pages = pages(key, bytes)?;
    let mut problems = Problems::new();
    let mut lines = Vec::new();
    for (at, bucket) in buckets(key, &pages, &mut problems) {
        let start = bucket.get("start_time").and_then(Value::as_i64);
        let Some(date) = start
            .and_then(|s| DateTime::from_timestamp(s, 0))
            .map(utc_date)
        else {
            problems.push(format!(
                "{at}: start_time is not a unix timestamp in seconds"
            ));
            continue;
        };
        let Some(results) = bucket.get("results").and_then(Value::as_array) else {
            problems.push(format!("{at}: no `results` array"));
            continue;
        };
        for (i, r) in results.iter().enumerate() {
            let at = format!("{at}.results[{i}]");
            let value = r.pointer("/amount/value").and_then(json_decimal);
            let cur = r
                .pointer("/amount/currency")
                .and_then(Value::as_str)
                .map(currency);
            let (Some(value), Some(Ok(cur))) = (value, cur) else {
                problems.push(format!(
                    "{at}: expected amount.value (a number of dollars) and amount.currency (e.g. \"usd\")"
                ));
                continue;
            };
            let (model, token_type) = match r.get("line_item").and_then(Value::as_str) {
                None => (None, None),
                Some(item) => match item.rsplit_once(", ") {
                    Some((model, kind)) => (
                        Some(model.trim().to_string()),
                        Some(match kind.trim() {
                            "input" => TokenType::UncachedInput,
                            "cached input" => TokenType::CacheRead,
                            "output" => TokenType::Output,
                            _ => TokenType::Other,
                        }),
                    ),
                    None => (Some(item.trim().to_string()), None),
                },
            };
            lines.push(InvoiceLine {
                provider: provider.clone(),
                date,
                model,
                token_type,
                charge: Charge::Usage,
                amount: scaled(value),
                currency: cur,
                source: at,
            });
        }
    }
    done(
        Parsed {
            lines,
            skipped: BTreeMap::new(),
        },
        problems,
    )
}

/// Anthropic cost report: `amount` is a decimal string in **cents**
/// (`"123.45"` is $1.2345); `token_type` says which tokens; buckets start at
/// RFC 3339 `starting_at`. Costs that are not tokens (web search, code
/// execution) have no token type and reconcile as `other`.
fn anthropic(adapter: &Adapter, key: &str, bytes: &[u8]) -> Result<Parsed, Problems> {
    let provider = adapter
        .provider()
        .expect("anthropic has a default provider");
    let pages = pages(key, bytes)?;
    let mut problems = Problems::new();
    let mut lines = Vec::new();
    let hundred = Decimal::from(100);
    for (at, bucket) in buckets(key, &pages, &mut problems) {
        let start = bucket
            .get("starting_at")
            .and_then(Value::as_str)
            .map(parse_instant);
        let date = match start {
            Some(Ok(t)) => utc_date(t),
            _ => {
                problems.push(format!("{at}: starting_at is not an RFC 3339 timestamp"));
                continue;
            }
        };
        let Some(results) = bucket.get("results").and_then(Value::as_array) else {
            problems.push(format!("{at}: no `results` array"));
            continue;
        };
        for (i, r) in results.iter().enumerate() {
            let at = format!("{at}.results[{i}]");
            let cents = match r.get("amount") {
                Some(Value::String(s)) => parse_decimal(s).ok(),
                _ => None,
            };
            let Some(cents) = cents else {
                problems.push(format!(
                    "{at}: amount must be a decimal string in cents (e.g. \"123.45\"), found {}",
                    r.get("amount")
                        .map_or("nothing".to_string(), Value::to_string)
                ));
                continue;
            };
            let cur = match r.get("currency").and_then(Value::as_str).map(currency) {
                Some(Ok(c)) => c,
                _ => {
                    problems.push(format!("{at}: currency is missing or not an ISO 4217 code"));
                    continue;
                }
            };
            let token_type = r
                .get("token_type")
                .and_then(Value::as_str)
                .map(|t| match t {
                    "uncached_input_tokens" => TokenType::UncachedInput,
                    "output_tokens" => TokenType::Output,
                    "cache_read_input_tokens" => TokenType::CacheRead,
                    t if t.starts_with("cache_creation") => TokenType::CacheWrite,
                    _ => TokenType::Other,
                });
            let token_type = match (token_type, r.get("cost_type").and_then(Value::as_str)) {
                (None, Some(kind)) if kind != "tokens" => Some(TokenType::Other),
                (t, _) => t,
            };
            lines.push(InvoiceLine {
                provider: provider.clone(),
                date,
                model: r.get("model").and_then(Value::as_str).map(str::to_string),
                token_type,
                charge: Charge::Usage,
                amount: scaled(cents / hundred),
                currency: cur,
                source: at,
            });
        }
    }
    done(
        Parsed {
            lines,
            skipped: BTreeMap::new(),
        },
        problems,
    )
}

/// A Bedrock usage type (`USE1-Claude3.5Sonnet-cache-read-input-token-count`)
/// as a model name and a token type. The region prefix is dropped.
pub fn bedrock_usage_type(usage_type: &str) -> (String, TokenType) {
    let rest = match usage_type.split_once('-') {
        Some((region, rest))
            if !region.is_empty()
                && region.len() <= 6
                && region
                    .bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit()) =>
        {
            rest
        }
        _ => usage_type,
    };
    let lower = rest.to_ascii_lowercase();
    const MARKERS: [(&str, TokenType); 8] = [
        ("-cache-read-input-token", TokenType::CacheRead),
        ("-cache-write-input-token", TokenType::CacheWrite),
        ("-cache-read", TokenType::CacheRead),
        ("-cache-write", TokenType::CacheWrite),
        ("-input-token", TokenType::UncachedInput),
        ("-output-token", TokenType::Output),
        ("-inputtoken", TokenType::UncachedInput),
        ("-outputtoken", TokenType::Output),
    ];
    for (marker, t) in MARKERS {
        if let Some(i) = lower.find(marker) {
            return (rest[..i].to_string(), t);
        }
    }
    (rest.to_string(), TokenType::Other)
}

/// AWS CUR 2.0: one line item per usage type and hour or day;
/// `line_item_unblended_cost` in `line_item_currency_code`; Bedrock usage
/// types name the model and the token type (input, output, cache read,
/// cache write). Taxes and upfront fees are left out; credits, refunds and
/// discounts are kept as negative amounts against usage.
fn cur(adapter: &Adapter, key: &str, bytes: Bytes) -> Result<Parsed, Problems> {
    let provider = adapter.provider().expect("aws_cur has a default provider");
    let t = table(key, bytes, key)?;
    let cols = require(
        key,
        &t,
        &[
            "line_item_usage_start_date",
            "line_item_usage_type",
            "line_item_unblended_cost",
            "line_item_currency_code",
        ],
    )?;
    let c_kind = t.column("line_item_line_item_type");
    let c_product = t.column("line_item_product_code");
    let product = adapter.product_code.as_deref().unwrap_or("AmazonBedrock");
    let mut problems = Problems::new();
    let mut parsed = Parsed::default();
    for (label, cells) in &t.rows {
        let at = format!("{key} {label}");
        if let Some(p) = cell(cells, c_product)
            && p != product
        {
            parsed.skip(format!("product {p}"));
            continue;
        }
        let kind = cell(cells, c_kind).unwrap_or("Usage");
        let charge = match kind {
            "Usage" | "DiscountedUsage" | "SavingsPlanCoveredUsage" => Charge::Usage,
            "Credit" | "Refund" => Charge::Credit,
            k if k.contains("Discount") => Charge::Adjustment,
            k => {
                parsed.skip(format!("line item type {k}"));
                continue;
            }
        };
        let date = cell(cells, Some(cols[0])).map(parse_instant);
        let value = cell(cells, Some(cols[2])).map(amount);
        let cur = cell(cells, Some(cols[3])).map(currency);
        let (Some(Ok(start)), Some(Ok(value)), Some(Ok(cur))) = (date, value, cur) else {
            problems.push(format!(
                "{at}: expected a timestamp in line_item_usage_start_date, a decimal in line_item_unblended_cost and an ISO 4217 code in line_item_currency_code"
            ));
            continue;
        };
        let (model, token_type) = cell(cells, Some(cols[1]))
            .map(bedrock_usage_type)
            .map_or((None, None), |(m, t)| (Some(m), Some(t)));
        parsed.lines.push(InvoiceLine {
            provider: provider.clone(),
            date: utc_date(start),
            model,
            token_type,
            charge,
            amount: value,
            currency: cur,
            source: at,
        });
    }
    done(parsed, problems)
}

/// FOCUS 1.x: `BilledCost` in `BillingCurrency` per `ChargePeriodStart`;
/// `ChargeCategory` Usage, Credit and Adjustment count (credits and
/// adjustments are negative rows), Tax and Purchase are left out. Our
/// provider is the configured one, else `ProviderName` as written. A
/// `SkuMeter` naming a token type (as tokenledger's own FOCUS export writes)
/// splits the line by token type.
fn focus(adapter: &Adapter, key: &str, bytes: &[u8]) -> Result<Parsed, Problems> {
    let t = TextTable::from_csv(bytes).map_err(|e| Problems(vec![format!("{key}: {e}")]))?;
    // TextTable looks column names up in lower case.
    let cols = require(
        key,
        &t,
        &[
            "billedcost",
            "billingcurrency",
            "chargeperiodstart",
            "chargecategory",
            "providername",
        ],
    )?;
    let c_service = t.column("servicename");
    let c_meter = t.column("skumeter");
    let c_model = match &adapter.model_column {
        Some(name) => match t.column(&name.to_ascii_lowercase()) {
            Some(c) => Some(c),
            None => {
                return Err(Problems(vec![format!(
                    "{key}: model_column `{name}` is not a column; found {}",
                    t.headers().join(", ")
                )]));
            }
        },
        None => None,
    };
    let mut problems = Problems::new();
    let mut parsed = Parsed::default();
    for (label, cells) in &t.rows {
        let at = format!("{key} {label}");
        let provider_name = cell(cells, Some(cols[4])).unwrap_or_default();
        if adapter
            .provider_name
            .as_deref()
            .is_some_and(|p| p != provider_name)
        {
            parsed.skip(format!("ProviderName {provider_name}"));
            continue;
        }
        let service = cell(cells, c_service).unwrap_or_default();
        if adapter
            .service_name
            .as_deref()
            .is_some_and(|s| s != service)
        {
            parsed.skip(format!("ServiceName {service}"));
            continue;
        }
        let category = cell(cells, Some(cols[3])).unwrap_or_default();
        let charge = match category {
            "Usage" => Charge::Usage,
            "Credit" => Charge::Credit,
            "Adjustment" => Charge::Adjustment,
            other => {
                parsed.skip(format!("ChargeCategory {other}"));
                continue;
            }
        };
        let value = cell(cells, Some(cols[0])).map(amount);
        let cur = cell(cells, Some(cols[1])).map(currency);
        let start = cell(cells, Some(cols[2])).map(parse_instant);
        let (Some(Ok(value)), Some(Ok(cur)), Some(Ok(start))) = (&value, &cur, &start) else {
            // Name each bad cell with what it holds.
            let show = |i: usize, name: &str, ok: bool, expected: &str| {
                (!ok).then(|| {
                    let text = cell(cells, Some(cols[i])).unwrap_or("");
                    format!("{name} `{text}` is not {expected}")
                })
            };
            let bad: Vec<String> = [
                show(0, "BilledCost", matches!(value, Some(Ok(_))), "a decimal"),
                show(
                    1,
                    "BillingCurrency",
                    matches!(cur, Some(Ok(_))),
                    "an ISO 4217 code",
                ),
                show(
                    2,
                    "ChargePeriodStart",
                    matches!(start, Some(Ok(_))),
                    "a timestamp",
                ),
            ]
            .into_iter()
            .flatten()
            .collect();
            problems.push(format!("{at}: {}", bad.join("; ")));
            continue;
        };
        let (value, cur, start) = (*value, cur.clone(), *start);
        let provider = match (&adapter.provider, provider_name) {
            (Some(p), _) => p.clone(),
            (None, "") => {
                problems.push(format!(
                    "{at}: ProviderName is empty and the source names no provider"
                ));
                continue;
            }
            (None, p) => p.to_string(),
        };
        parsed.lines.push(InvoiceLine {
            provider,
            date: utc_date(start),
            model: cell(cells, c_model).map(str::to_string),
            token_type: cell(cells, c_meter).and_then(TokenType::parse),
            charge,
            amount: value,
            currency: cur,
            source: at,
        });
    }
    done(parsed, problems)
}

#[cfg(test)]
mod tests {
    //! Each adapter on a fixture in its real format; totals worked out by hand
    //! (the FOCUS sample's by Python's `decimal`, a second engine).
    use super::*;

    const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/invoices/");

    fn fixture(name: &str) -> Bytes {
        Bytes::from(std::fs::read(format!("{DIR}{name}")).unwrap())
    }

    fn usd(s: &str) -> i128 {
        scaled(parse_decimal(s).unwrap())
    }

    fn total(lines: &[InvoiceLine], date: &str) -> i128 {
        lines
            .iter()
            .filter(|l| l.date.to_string() == date)
            .map(|l| l.amount)
            .sum()
    }

    #[test]
    fn openai_costs_pages() {
        let p = parse(
            &Adapter::new(Format::OpenAiCosts),
            "invoices/openai/2026-03.json",
            fixture("openai_costs.json"),
        )
        .unwrap();
        let got: Vec<(String, Option<&str>, Option<TokenType>, i128)> = p
            .lines
            .iter()
            .map(|l| {
                (
                    l.date.to_string(),
                    l.model.as_deref(),
                    l.token_type,
                    l.amount,
                )
            })
            .collect();
        let day = "2026-03-07".to_string();
        assert_eq!(
            got,
            vec![
                (
                    day.clone(),
                    Some("gpt-4o-2024-08-06"),
                    Some(TokenType::UncachedInput),
                    usd("12.0375")
                ),
                (
                    day.clone(),
                    Some("gpt-4o-2024-08-06"),
                    Some(TokenType::Output),
                    usd("30.5")
                ),
                (
                    day.clone(),
                    Some("gpt-4o-mini-2024-07-18"),
                    Some(TokenType::CacheRead),
                    usd("0.06")
                ),
                // 1.1e-5 is read exactly, not as 0.0000110000000000000001
                (
                    day.clone(),
                    Some("gpt-4o-mini-2024-07-18"),
                    Some(TokenType::UncachedInput),
                    usd("0.000011")
                ),
                (day.clone(), Some("web search tool calls"), None, usd("2.5")),
                ("2026-03-08".to_string(), None, None, usd("7")),
            ]
        );
        assert!(
            p.lines
                .iter()
                .all(|l| l.provider == "openai" && l.currency == "USD")
        );
        // 12.0375 + 30.5 + 0.06 + 0.000011 + 2.5
        assert_eq!(total(&p.lines, "2026-03-07"), usd("45.097511"));
        assert_eq!(
            p.lines[0].source,
            "invoices/openai/2026-03.json page 1 data[0].results[0]"
        );
    }

    #[test]
    fn anthropic_cost_report_amounts_are_cents() {
        let p = parse(
            &Adapter::new(Format::AnthropicCostReport),
            "a.json",
            fixture("anthropic_cost_report.json"),
        )
        .unwrap();
        let got: Vec<(Option<TokenType>, i128)> =
            p.lines.iter().map(|l| (l.token_type, l.amount)).collect();
        assert_eq!(
            got,
            vec![
                (Some(TokenType::UncachedInput), usd("1.2345")),
                (Some(TokenType::Output), usd("9.876")),
                (Some(TokenType::CacheRead), usd("0.04005")),
                (Some(TokenType::CacheWrite), usd("0.5")),
                (Some(TokenType::CacheWrite), usd("0.255")),
                (Some(TokenType::Other), usd("1")),
            ]
        );
        // 1.2345 + 9.876 + 0.04005 + 0.5 + 0.255 + 1.00
        assert_eq!(total(&p.lines, "2026-03-07"), usd("12.90555"));
        assert!(
            p.lines
                .iter()
                .all(|l| l.model.as_deref() == Some("claude-sonnet-4-20250514"))
        );
        // A number where cents as a string belong is refused, not guessed.
        let bad = br#"{"data":[{"starting_at":"2026-03-07T00:00:00Z","results":[{"currency":"USD","amount":123.45}]}]}"#;
        let err = parse(
            &Adapter::new(Format::AnthropicCostReport),
            "b.json",
            Bytes::from_static(bad),
        )
        .unwrap_err();
        assert_eq!(
            err.0,
            vec![
                "b.json page 1 data[0].results[0]: amount must be a decimal string in cents (e.g. \"123.45\"), found 123.45"
            ]
        );
    }

    #[test]
    fn bedrock_usage_types() {
        assert_eq!(
            bedrock_usage_type("USE1-Claude3.5Sonnet-input-tokens"),
            ("Claude3.5Sonnet".into(), TokenType::UncachedInput)
        );
        assert_eq!(
            bedrock_usage_type("USE1-Claude3.7Sonnet-cache-read-input-token-count"),
            ("Claude3.7Sonnet".into(), TokenType::CacheRead)
        );
        assert_eq!(
            bedrock_usage_type("EUC1-Claude4Sonnet-cache-write-input-token-count"),
            ("Claude4Sonnet".into(), TokenType::CacheWrite)
        );
        assert_eq!(
            bedrock_usage_type("USW2-Llama3-70B-output-tokens"),
            ("Llama3-70B".into(), TokenType::Output)
        );
        assert_eq!(
            bedrock_usage_type("Provisioned-Throughput"),
            ("Provisioned-Throughput".into(), TokenType::Other)
        );
    }

    fn check_cur(p: &Parsed) {
        let claude: Vec<(Option<TokenType>, Charge, i128)> = p
            .lines
            .iter()
            .filter(|l| l.date.to_string() == "2026-03-07")
            .map(|l| {
                assert_eq!(l.model.as_deref(), Some("Claude3.5Sonnet"));
                (l.token_type, l.charge, l.amount)
            })
            .collect();
        assert_eq!(
            claude,
            vec![
                (Some(TokenType::UncachedInput), Charge::Usage, usd("0.0036")),
                (Some(TokenType::UncachedInput), Charge::Usage, usd("0.0075")),
                (Some(TokenType::Output), Charge::Usage, usd("0.012")),
                (Some(TokenType::CacheRead), Charge::Usage, usd("0.003")),
                (Some(TokenType::CacheWrite), Charge::Usage, usd("0.0075")),
                (
                    Some(TokenType::UncachedInput),
                    Charge::Credit,
                    usd("-0.001")
                ),
            ]
        );
        // 0.0036 + 0.0075 + 0.012 + 0.003 + 0.0075 - 0.001; the tax and the
        // EC2 line are left out and counted.
        assert_eq!(total(&p.lines, "2026-03-07"), usd("0.0326"));
        assert_eq!(total(&p.lines, "2026-03-08"), usd("0.00265"));
        assert_eq!(
            p.skipped,
            BTreeMap::from([
                ("line item type Tax".to_string(), 1),
                ("product AmazonEC2".to_string(), 1)
            ])
        );
    }

    #[test]
    fn aws_cur_csv_and_parquet() {
        let csv = parse(
            &Adapter::new(Format::AwsCur),
            "cur.csv",
            fixture("aws_cur.csv"),
        )
        .unwrap();
        check_cur(&csv);
        assert!(csv.lines.iter().all(|l| l.provider == "bedrock"));

        // The same line items as CUR's Parquet delivers them: timestamps and
        // doubles, not text.
        use arrow::array::{
            ArrayRef, Float64Array, RecordBatch, StringArray, TimestampMillisecondArray,
        };
        use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
        use std::sync::Arc;
        let t = TextTable::from_csv(&fixture("aws_cur.csv")).unwrap();
        let col = |name: &str| -> Vec<Option<String>> {
            let i = t.column(name).unwrap();
            t.rows.iter().map(|(_, c)| c[i].clone()).collect()
        };
        let ts: Vec<Option<i64>> = col("line_item_usage_start_date")
            .iter()
            .map(|s| {
                s.as_deref()
                    .map(|s| parse_instant(s).unwrap().timestamp_millis())
            })
            .collect();
        let cost: Vec<Option<f64>> = col("line_item_unblended_cost")
            .iter()
            .map(|s| s.as_deref().map(|s| s.parse().unwrap()))
            .collect();
        let text = |name: &str| Arc::new(StringArray::from(col(name))) as ArrayRef;
        let schema = Arc::new(Schema::new(vec![
            Field::new(
                "line_item_usage_start_date",
                DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
                true,
            ),
            Field::new("line_item_product_code", DataType::Utf8, true),
            Field::new("line_item_usage_type", DataType::Utf8, true),
            Field::new("line_item_line_item_type", DataType::Utf8, true),
            Field::new("line_item_unblended_cost", DataType::Float64, true),
            Field::new("line_item_currency_code", DataType::Utf8, true),
        ]));
        let batch = RecordBatch::try_new(
            Arc::clone(&schema),
            vec![
                Arc::new(TimestampMillisecondArray::from(ts).with_timezone("UTC")),
                text("line_item_product_code"),
                text("line_item_usage_type"),
                text("line_item_line_item_type"),
                Arc::new(Float64Array::from(cost)),
                text("line_item_currency_code"),
            ],
        )
        .unwrap();
        let bytes = crate::report::parquet_bytes(&schema, &[batch]).unwrap();
        let pq = parse(
            &Adapter::new(Format::AwsCur),
            "cur-00001.snappy.parquet",
            Bytes::from(bytes),
        )
        .unwrap();
        check_cur(&pq);
    }

    #[test]
    fn the_real_focus_sample_parses_with_its_credits() {
        let p = parse(
            &Adapter::new(Format::Focus),
            "focus.csv",
            fixture("focus_1.0_sample.csv"),
        )
        .unwrap();
        // 997 usage rows, 2 adjustments, 1 credit; NULL cells are empty.
        assert_eq!(p.lines.len(), 1000);
        assert!(p.skipped.is_empty());
        let by = |provider: &str| -> i128 {
            p.lines
                .iter()
                .filter(|l| l.provider == provider)
                .map(|l| l.amount)
                .sum()
        };
        // Sums of BilledCost by ProviderName, from Python's decimal module.
        assert_eq!(by("AWS"), usd("18.00663861840"));
        assert_eq!(by("Oracle"), usd("0.53707392473"));
        assert_eq!(by("Microsoft"), usd("1.97651418586"));
        let credit = p.lines.iter().find(|l| l.charge == Charge::Credit).unwrap();
        assert_eq!(
            (credit.amount, credit.date.to_string()),
            (usd("-2.6137"), "2024-09-24".to_string())
        );

        // Filters and our provider name.
        let a = Adapter {
            provider: Some("oracle_genai".into()),
            provider_name: Some("Oracle".into()),
            ..Adapter::new(Format::Focus)
        };
        let p = parse(&a, "focus.csv", fixture("focus_1.0_sample.csv")).unwrap();
        assert_eq!(p.lines.len(), 7);
        assert!(p.lines.iter().all(|l| l.provider == "oracle_genai"));
        assert_eq!(p.skipped.values().sum::<u64>(), 993);
    }

    #[test]
    fn normalized_csv_reports_every_bad_line() {
        let ok = b"provider,date,model,amount,currency,token_type,charge\n\
                   openai,2026-03-07,gpt-4o,1.50,usd,,\n\
                   openai,2026-03-07,,-0.25,USD,,credit\n";
        let p = parse(
            &Adapter::new(Format::Normalized),
            "n.csv",
            Bytes::from_static(ok),
        )
        .unwrap();
        assert_eq!(p.lines.len(), 2);
        assert_eq!(
            (p.lines[0].currency.as_str(), p.lines[0].amount),
            ("USD", usd("1.5"))
        );
        assert_eq!(
            (p.lines[1].model.as_deref(), p.lines[1].charge),
            (None, Charge::Credit)
        );
        let bad = b"provider,date,model,amount,currency,token_type\n\
                    openai,2026-3-7,gpt-4o,1.50,USD,\n\
                    ,2026-03-07,gpt-4o,ten,EURO,input\n";
        let err = parse(
            &Adapter::new(Format::Normalized),
            "n.csv",
            Bytes::from_static(bad),
        )
        .unwrap_err();
        assert_eq!(
            err.0,
            vec![
                "n.csv line 2: date `2026-3-7` is not YYYY-MM-DD",
                "n.csv line 3: provider is empty",
                "n.csv line 3: amount: `ten` is not a decimal number",
                "n.csv line 3: currency `EURO` is not a 3-letter ISO 4217 code",
                "n.csv line 3: token_type `input` is not one of uncached_input, cache_read, cache_write, output, other",
            ]
        );
        let err = parse(
            &Adapter::new(Format::Normalized),
            "n.csv",
            Bytes::from_static(b"provider,day,amount\n"),
        )
        .unwrap_err();
        assert_eq!(
            err.0,
            vec!["n.csv: missing column(s) date, currency; found provider, day, amount"]
        );
    }
}
