//! The versioned price table (SPEC 1.2), model-name alias rules, and the
//! per-day price map the metric queries join on.
//!
//! [`PriceTable::parse`] validates every row (numbers, timestamps, overlapping
//! versions of one model) and reports every problem at once with its line.
//! [`AliasRules`] map a logged (provider, model) onto a price-table key by
//! explicit rules only (exact names or anchored regular expressions), never by
//! guesswork. [`PriceTable::price_map`] keeps the rows in force during the report
//! day for the models seen that day, as a small Arrow batch: the pricing itself
//! is a range join in SQL (`sql/priced.sql`). Pure logic: no I/O.

pub mod litellm;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanArray, Decimal128Array, RecordBatch, StringViewArray, TimestampNanosecondArray,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use chrono::{DateTime, Utc};
use regex::Regex;
use rust_decimal::Decimal;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::error::Problems;
use crate::money::{MAX_PRICE_DECIMALS, PRICE_SCALE, to_scaled};
use crate::tabular::{TextTable, parse_decimal, parse_instant};

/// One price version of one (provider, model).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PriceRow {
    /// Where it came from, for messages (`line 12`).
    pub label: String,
    pub provider: String,
    pub model: String,
    pub price_id: String,
    /// USD per 1000 tokens, as given; cache prices default to the input
    /// price. `None`: no per-token price for that kind (LiteLLM lists
    /// embedding models without an output price, image models without
    /// either); a request with tokens of that kind is unpriced.
    pub input_usd_per_1k: Option<Decimal>,
    pub output_usd_per_1k: Option<Decimal>,
    pub cache_read_usd_per_1k: Option<Decimal>,
    pub cache_write_usd_per_1k: Option<Decimal>,
    pub valid_from: DateTime<Utc>,
    pub valid_to: Option<DateTime<Utc>>,
}

impl PriceRow {
    /// Whether this price is in force at some instant of `[start, end)`.
    pub fn overlaps(&self, start: DateTime<Utc>, end: DateTime<Utc>) -> bool {
        self.valid_from < end && self.valid_to.is_none_or(|t| t > start)
    }

    /// Whether this price is in force at `t`.
    pub fn in_force_at(&self, t: DateTime<Utc>) -> bool {
        self.valid_from <= t && self.valid_to.is_none_or(|e| t < e)
    }
}

/// `[from, to)` or `[from, open)`, as problems print a validity.
fn span_text(from: DateTime<Utc>, to: Option<DateTime<Utc>>) -> String {
    match to {
        Some(t) => format!("[{}, {})", from.to_rfc3339(), t.to_rfc3339()),
        None => format!("[{}, open)", from.to_rfc3339()),
    }
}

/// The key and validity of one table row, kept for the overlap and id
/// checks even when the row's prices have problems.
struct Span {
    label: String,
    key: (String, String),
    price_id: Option<String>,
    valid_from: DateTime<Utc>,
    valid_to: Option<DateTime<Utc>>,
}

/// Whether a price moving from `a` to `b` moves 10x or more either way
/// (a zero on either side is no such move: free tiers exist).
pub fn tenfold(a: Decimal, b: Decimal) -> bool {
    let ten = Decimal::from(10);
    !a.is_zero() && !b.is_zero() && (b >= a * ten || a >= b * ten)
}

/// A 10x move between consecutive versions of a model's price.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Jump {
    pub provider: String,
    pub model: String,
    /// `input` or `output`.
    pub kind: &'static str,
    /// USD per 1K tokens, before and after.
    pub from: String,
    pub to: String,
    /// When the new price starts.
    pub at: String,
    /// The two price-table lines and their price ids.
    pub lines: String,
    pub price_ids: [String; 2],
}

impl fmt::Display for Jump {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{}: {} price {} -> {} per 1K at {} ({})",
            self.provider, self.model, self.kind, self.from, self.to, self.at, self.lines
        )
    }
}

/// A validated price table.
#[derive(Clone, Debug, Default)]
pub struct PriceTable {
    rows: Vec<PriceRow>,
    /// Row indexes per (provider, model), ordered by `valid_from`.
    by_key: HashMap<(String, String), Vec<usize>>,
}

const REQUIRED: [&str; 5] = [
    "provider",
    "model",
    "input_usd_per_1k",
    "output_usd_per_1k",
    "valid_from",
];

/// The rows of each (provider, model), in order of validity.
fn index_by_key(rows: &[PriceRow]) -> HashMap<(String, String), Vec<usize>> {
    let mut by_key: HashMap<(String, String), Vec<usize>> = HashMap::new();
    for (i, r) in rows.iter().enumerate() {
        by_key
            .entry((r.provider.clone(), r.model.clone()))
            .or_default()
            .push(i);
    }
    for idx in by_key.values_mut() {
        idx.sort_by_key(|&i| (rows[i].valid_from, rows[i].label.clone()));
    }
    by_key
}

/// Versions of a (provider, model) that overlap, and a `price_id` used
/// twice: each pair named by its rows.
fn check_spans(spans: &[Span], problems: &mut Problems) {
    let mut span_keys: BTreeMap<&(String, String), Vec<&Span>> = BTreeMap::new();
    for s in spans {
        span_keys.entry(&s.key).or_default().push(s);
    }
    for (key, versions) in &mut span_keys {
        versions.sort_by_key(|s| (s.valid_from, s.label.clone()));
        for w in versions.windows(2) {
            let (a, b) = (w[0], w[1]);
            if a.valid_to.is_none_or(|t| t > b.valid_from) {
                problems.push(format!(
                    "{} and {}: prices of {}/{} overlap: {} and {}",
                    a.label,
                    b.label,
                    key.0,
                    key.1,
                    span_text(a.valid_from, a.valid_to),
                    span_text(b.valid_from, b.valid_to)
                ));
            }
        }
    }
    let mut ids: BTreeMap<&str, &str> = BTreeMap::new();
    for s in spans {
        // Rows with problems and no explicit id have no id to compare.
        let Some(id) = s.price_id.as_deref() else {
            continue;
        };
        if let Some(first) = ids.insert(id, &s.label) {
            problems.push(format!(
                "{first} and {}: price_id `{id}` is used twice",
                s.label
            ));
        }
    }
}

impl PriceTable {
    /// Validate a price table read as text; every problem is reported.
    pub fn parse(table: &TextTable) -> Result<PriceTable, Problems> {
        let mut problems = Problems::new();
        let missing: Vec<&str> = REQUIRED
            .iter()
            .copied()
            .filter(|c| table.column(c).is_none())
            .collect();
        if !missing.is_empty() {
            problems.push(format!(
                "missing column(s) {}; found {}",
                missing.join(", "),
                table.headers().join(", ")
            ));
            return Err(problems);
        }
        let col = |name: &str| table.column(name);
        let (c_provider, c_model) = (
            col("provider").expect("checked"),
            col("model").expect("checked"),
        );
        let (c_in, c_out) = (
            col("input_usd_per_1k").expect("checked"),
            col("output_usd_per_1k").expect("checked"),
        );
        let (c_cr, c_cw, c_id) = (
            col("cache_read_usd_per_1k"),
            col("cache_write_usd_per_1k"),
            col("price_id"),
        );
        let (c_from, c_to) = (col("valid_from").expect("checked"), col("valid_to"));

        let mut rows = Vec::with_capacity(table.rows.len());
        let mut spans: Vec<Span> = Vec::with_capacity(table.rows.len());
        for (label, cells) in &table.rows {
            let cell = |i: Option<usize>| i.and_then(|i| cells.get(i).cloned().flatten());
            let mut row_problems = Vec::new();
            let text = |i: usize, name: &str, problems: &mut Vec<String>| match cell(Some(i)) {
                Some(v) if !v.trim().is_empty() => v.trim().to_string(),
                _ => {
                    problems.push(format!("{label}: `{name}` is empty"));
                    String::new()
                }
            };
            let provider = text(c_provider, "provider", &mut row_problems);
            let model = text(c_model, "model", &mut row_problems);
            let price =
                |i: Option<usize>, name: &str, problems: &mut Vec<String>| -> Option<Decimal> {
                    let raw = cell(i)?;
                    match parse_decimal(&raw) {
                        Ok(d) if d.is_sign_negative() && !d.is_zero() => {
                            problems.push(format!(
                                "{label}: `{name}` is negative ({raw}); prices must be >= 0"
                            ));
                            None
                        }
                        Ok(d) if to_scaled(d, MAX_PRICE_DECIMALS).is_none() => {
                            problems.push(format!(
                            "{label}: `{name}` = {raw} has more than {MAX_PRICE_DECIMALS} decimals"
                        ));
                            None
                        }
                        Ok(d) => Some(d.normalize()),
                        Err(e) => {
                            problems.push(format!("{label}: `{name}`: {e}"));
                            None
                        }
                    }
                };
            let input = price(Some(c_in), "input_usd_per_1k", &mut row_problems);
            let output = price(Some(c_out), "output_usd_per_1k", &mut row_problems);
            let cache_read = price(c_cr, "cache_read_usd_per_1k", &mut row_problems);
            let cache_write = price(c_cw, "cache_write_usd_per_1k", &mut row_problems);
            let instant = |i: Option<usize>, name: &str, problems: &mut Vec<String>| {
                let raw = cell(i)?;
                parse_instant(&raw)
                    .map_err(|e| problems.push(format!("{label}: `{name}`: {e}")))
                    .ok()
            };
            let valid_from = instant(Some(c_from), "valid_from", &mut row_problems);
            if cell(Some(c_from)).is_none() {
                row_problems.push(format!("{label}: `valid_from` is empty"));
            }
            let valid_to = instant(c_to, "valid_to", &mut row_problems);
            if let (Some(f), Some(t)) = (valid_from, valid_to)
                && t <= f
            {
                row_problems.push(format!(
                    "{label}: `valid_to` {} is not after `valid_from` {}",
                    t.to_rfc3339(),
                    f.to_rfc3339()
                ));
            }
            // A row with other problems still takes part in the overlap and
            // id checks when its key and validity parse: every problem of the
            // table is reported in one go, not one fix at a time.
            let valid_to_ok = valid_to.is_some() || cell(c_to).is_none_or(|v| v.trim().is_empty());
            if let Some(from) = valid_from
                && !provider.is_empty()
                && !model.is_empty()
                && valid_to_ok
                && valid_to.is_none_or(|t| t > from)
            {
                let id = cell(c_id).map(|s| s.trim().to_string()).unwrap_or_default();
                spans.push(Span {
                    label: label.clone(),
                    key: (provider.clone(), model.clone()),
                    price_id: (!id.is_empty()).then_some(id),
                    valid_from: from,
                    valid_to,
                });
            }
            if !row_problems.is_empty() {
                row_problems.into_iter().for_each(|p| problems.push(p));
                continue;
            }
            let Some(valid_from) = valid_from else {
                continue;
            };
            let mut row = PriceRow {
                label: label.clone(),
                provider,
                model,
                price_id: cell(c_id).map(|s| s.trim().to_string()).unwrap_or_default(),
                input_usd_per_1k: input,
                output_usd_per_1k: output,
                cache_read_usd_per_1k: cache_read.or(input),
                cache_write_usd_per_1k: cache_write.or(input),
                valid_from,
                valid_to,
            };
            if row.price_id.is_empty() {
                row.price_id = default_price_id(&row);
            }
            // A valid row always has its span (pushed above): give it the id.
            if let Some(span) = spans.last_mut()
                && span.label == row.label
            {
                span.price_id = Some(row.price_id.clone());
            }
            rows.push(row);
        }

        let by_key = index_by_key(&rows);
        check_spans(&spans, &mut problems);
        if problems.is_empty() {
            Ok(PriceTable { rows, by_key })
        } else {
            Err(problems)
        }
    }

    pub fn rows(&self) -> &[PriceRow] {
        &self.rows
    }

    pub fn has_key(&self, provider: &str, model: &str) -> bool {
        self.by_key
            .contains_key(&(provider.to_string(), model.to_string()))
    }

    /// Consecutive versions of a model whose input or output price moves 10x
    /// or more (either way): almost always a typo in the source (LiteLLM's
    /// history lists gemini-2.0-flash 1500x too high for five hours). Sorted
    /// by provider, model and time.
    pub fn jumps(&self) -> Vec<Jump> {
        let mut keys: Vec<&(String, String)> = self.by_key.keys().collect();
        keys.sort();
        let mut out = Vec::new();
        for key in keys {
            let versions = &self.by_key[key];
            for pair in versions.windows(2) {
                let (a, b) = (&self.rows[pair[0]], &self.rows[pair[1]]);
                for (kind, x, y) in [
                    ("input", a.input_usd_per_1k, b.input_usd_per_1k),
                    ("output", a.output_usd_per_1k, b.output_usd_per_1k),
                ] {
                    let (Some(x), Some(y)) = (x, y) else { continue };
                    if tenfold(x, y) {
                        out.push(Jump {
                            provider: key.0.clone(),
                            model: key.1.clone(),
                            kind,
                            from: x.normalize().to_string(),
                            to: y.normalize().to_string(),
                            at: b.valid_from.to_rfc3339(),
                            lines: format!("{} -> {}", a.label, b.label),
                            price_ids: [a.price_id.clone(), b.price_id.clone()],
                        });
                    }
                }
            }
        }
        out
    }

    /// The instants (nanoseconds since the epoch, sorted, distinct) where a
    /// price row in force during `[start, end)` begins or ends, for any
    /// pair: `price_map` rows are among these rows, so between two
    /// consecutive cuts every price-map row is in force throughout or not
    /// at all (`sql/cube.sql` prices a group of requests by any one of its
    /// instants because of this). An open end is no cut.
    pub fn cuts(&self, start: DateTime<Utc>, end: DateTime<Utc>) -> Vec<i64> {
        let mut cuts: Vec<i64> = self
            .rows
            .iter()
            .filter(|r| r.overlaps(start, end))
            .flat_map(|r| std::iter::once(nanos(r.valid_from)).chain(r.valid_to.map(nanos)))
            .collect();
        cuts.sort_unstable();
        cuts.dedup();
        cuts
    }

    /// Versions of one (provider, model), oldest first.
    pub fn versions(&self, provider: &str, model: &str) -> Vec<&PriceRow> {
        self.by_key
            .get(&(provider.to_string(), model.to_string()))
            .map(|v| v.iter().map(|&i| &self.rows[i]).collect())
            .unwrap_or_default()
    }

    /// The price rows in force during `[start, end)` for each logged pair, as
    /// the `price_map` table (see [`price_map_schema`]), and how each pair was
    /// resolved.
    pub fn price_map(
        &self,
        rules: &AliasRules,
        pairs: &[(String, String)],
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    ) -> (RecordBatch, Vec<Resolution>) {
        let mut b = PriceMapBuilder::default();
        let mut resolutions = Vec::with_capacity(pairs.len());
        for (provider, model) in pairs {
            let target = rules.resolve(provider, model);
            let rows: Vec<&PriceRow> = self
                .versions(&target.provider, &target.model)
                .into_iter()
                .filter(|r| r.overlaps(start, end))
                .collect();
            for r in &rows {
                b.push(provider, model, r);
            }
            resolutions.push(Resolution {
                provider: provider.clone(),
                model: model.clone(),
                price_provider: target.provider,
                price_model: target.model,
                rule: target.rule,
                price_ids: rows.iter().map(|r| r.price_id.clone()).collect(),
            });
        }
        (b.finish(), resolutions)
    }
}

/// A stable id for a price row without one: a digest of its content.
fn default_price_id(r: &PriceRow) -> String {
    let text = |d: Option<Decimal>| d.map(|d| d.to_string()).unwrap_or_default();
    let mut h = Sha256::new();
    for part in [
        r.provider.as_str(),
        r.model.as_str(),
        &text(r.input_usd_per_1k),
        &text(r.output_usd_per_1k),
        &text(r.cache_read_usd_per_1k),
        &text(r.cache_write_usd_per_1k),
        &r.valid_from.to_rfc3339(),
        &r.valid_to.map(|t| t.to_rfc3339()).unwrap_or_default(),
    ] {
        h.update(part.as_bytes());
        h.update([0x1f]);
    }
    format!("p-{}", &hex::encode(h.finalize())[..16])
}

/// How a logged (provider, model) found its prices.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Resolution {
    pub provider: String,
    pub model: String,
    pub price_provider: String,
    pub price_model: String,
    /// Index of the alias rule that applied, if any.
    pub rule: Option<usize>,
    /// Price rows in force during the day (empty: unpriced).
    pub price_ids: Vec<String>,
}

/// Schema of the `price_map` table: per-token prices at [`PRICE_SCALE`].
pub fn price_map_schema() -> SchemaRef {
    let money = DataType::Decimal128(38, PRICE_SCALE);
    let ts = DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into()));
    Arc::new(Schema::new(vec![
        Field::new("provider", DataType::Utf8View, false),
        Field::new("model", DataType::Utf8View, false),
        Field::new("price_id", DataType::Utf8View, false),
        Field::new("valid_from", ts.clone(), false),
        Field::new("valid_to", ts, false),
        Field::new("input_usd_per_token", money.clone(), true),
        Field::new("output_usd_per_token", money.clone(), true),
        Field::new("cache_read_usd_per_token", money.clone(), true),
        Field::new("cache_write_usd_per_token", money, true),
        // All four prices present: most rows, so priced.sql checks the
        // per-kind flags only for the others.
        Field::new("complete", DataType::Boolean, false),
        Field::new("has_input", DataType::Boolean, false),
        Field::new("has_output", DataType::Boolean, false),
        Field::new("has_cache_read", DataType::Boolean, false),
        Field::new("has_cache_write", DataType::Boolean, false),
    ]))
}

#[derive(Default)]
struct PriceMapBuilder {
    provider: Vec<String>,
    model: Vec<String>,
    price_id: Vec<String>,
    from: Vec<i64>,
    to: Vec<i64>,
    prices: [Vec<Option<i128>>; 4],
}

fn per_token(d: Decimal) -> i128 {
    // Validated to have at most MAX_PRICE_DECIMALS decimals: exact at scale 20,
    // and per token (/1000) exact at scale 23.
    to_scaled(d, MAX_PRICE_DECIMALS).expect("validated price")
}

fn nanos(t: DateTime<Utc>) -> i64 {
    t.timestamp_nanos_opt().unwrap_or(if t.timestamp() < 0 {
        i64::MIN
    } else {
        i64::MAX
    })
}

impl PriceMapBuilder {
    fn push(&mut self, provider: &str, model: &str, r: &PriceRow) {
        self.provider.push(provider.to_string());
        self.model.push(model.to_string());
        self.price_id.push(r.price_id.clone());
        self.from.push(nanos(r.valid_from));
        self.to.push(r.valid_to.map(nanos).unwrap_or(i64::MAX));
        for (v, d) in self.prices.iter_mut().zip([
            r.input_usd_per_1k,
            r.output_usd_per_1k,
            r.cache_read_usd_per_1k,
            r.cache_write_usd_per_1k,
        ]) {
            v.push(d.map(per_token));
        }
    }

    fn finish(self) -> RecordBatch {
        let rows = self.provider.len();
        let text = |v: Vec<String>| Arc::new(StringViewArray::from_iter_values(v)) as ArrayRef;
        let ts = |v: Vec<i64>| {
            Arc::new(TimestampNanosecondArray::from(v).with_timezone("UTC")) as ArrayRef
        };
        let mut cols = vec![
            text(self.provider),
            text(self.model),
            text(self.price_id),
            ts(self.from),
            ts(self.to),
        ];
        let has: Vec<Vec<bool>> = self
            .prices
            .iter()
            .map(|v| v.iter().map(Option::is_some).collect())
            .collect();
        let complete: Vec<bool> = (0..rows).map(|i| has.iter().all(|h| h[i])).collect();
        for v in self.prices {
            let a = Decimal128Array::from(v)
                .with_precision_and_scale(38, PRICE_SCALE)
                .expect("valid decimal type");
            cols.push(Arc::new(a));
        }
        cols.push(Arc::new(BooleanArray::from(complete)));
        for h in has {
            cols.push(Arc::new(BooleanArray::from(h)));
        }
        RecordBatch::try_new(price_map_schema(), cols).expect("price map columns match schema")
    }
}

/// How an alias rule matches logged model names.
#[derive(Clone, Debug)]
pub enum ModelPattern {
    Exact(String),
    /// Anchored: must match the whole name.
    Regex(Regex),
}

impl ModelPattern {
    /// `model` or `model_regex` (anchored), exactly one; problems go to `p`.
    pub fn validate(
        at: &str,
        exact: &Option<String>,
        regex: &Option<String>,
        p: &mut Problems,
    ) -> Option<ModelPattern> {
        match (exact, regex) {
            (Some(m), None) => Some(ModelPattern::Exact(m.clone())),
            (None, Some(re)) => match Regex::new(&format!("^(?:{re})$")) {
                Ok(r) => Some(ModelPattern::Regex(r)),
                Err(e) => {
                    p.push(format!("{at}.model_regex: {e}"));
                    None
                }
            },
            _ => {
                p.push(format!(
                    "{at}: give exactly one of `model` or `model_regex`"
                ));
                None
            }
        }
    }
}

/// One explicit mapping from logged names to a price-table key.
#[derive(Clone, Debug)]
pub struct AliasRule {
    /// Logged provider this rule applies to (any when `None`).
    pub provider: Option<String>,
    pub model: ModelPattern,
    /// Price-table provider (the logged provider when `None`).
    pub price_provider: Option<String>,
    /// Price-table model; for a regex rule it may use `$1` or `${name}`.
    pub price_model: String,
}

/// Alias rules in order; the first that matches applies.
#[derive(Clone, Debug, Default)]
pub struct AliasRules(pub Vec<AliasRule>);

/// The price-table key a logged name resolves to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub provider: String,
    pub model: String,
    pub rule: Option<usize>,
}

impl AliasRules {
    /// Resolve a logged (provider, model): the first matching rule, else the
    /// logged names themselves.
    pub fn resolve(&self, provider: &str, model: &str) -> Target {
        for (i, rule) in self.0.iter().enumerate() {
            if rule.provider.as_deref().is_some_and(|p| p != provider) {
                continue;
            }
            let price_model = match &rule.model {
                ModelPattern::Exact(m) if m == model => rule.price_model.clone(),
                ModelPattern::Regex(re) => match re.captures(model) {
                    Some(caps) => {
                        let mut out = String::new();
                        caps.expand(&rule.price_model, &mut out);
                        out
                    }
                    None => continue,
                },
                ModelPattern::Exact(_) => continue,
            };
            return Target {
                provider: rule
                    .price_provider
                    .clone()
                    .unwrap_or_else(|| provider.to_string()),
                model: price_model,
                rule: Some(i),
            };
        }
        Target {
            provider: provider.to_string(),
            model: model.to_string(),
            rule: None,
        }
    }

    /// Problems with rules whose target is fixed (no regex captures) and does
    /// not exist in the price table: almost always a typo.
    pub fn check_targets(&self, prices: &PriceTable) -> Problems {
        let mut problems = Problems::new();
        for (i, rule) in self.0.iter().enumerate() {
            if matches!(rule.model, ModelPattern::Regex(_)) && rule.price_model.contains('$') {
                continue;
            }
            if let Some(provider) = &rule.price_provider
                && !prices.has_key(provider, &rule.price_model)
            {
                problems.push(format!(
                    "pricing.aliases[{i}]: target {provider}/{} is not in the price table",
                    rule.price_model
                ));
            }
        }
        problems
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.provider, self.model)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(csv: &str) -> Result<PriceTable, Problems> {
        PriceTable::parse(&TextTable::from_csv(csv.as_bytes()).unwrap())
    }

    #[test]
    fn cache_prices_default_to_input_and_ids_are_stable() {
        let t = table(
            "provider,model,input_usd_per_1k,output_usd_per_1k,cache_read_usd_per_1k,cache_write_usd_per_1k,valid_from,valid_to\n\
             openai,gpt-4o,0.0025,0.01,0.00125,,2024-01-01,\n",
        )
        .unwrap();
        let r = &t.rows()[0];
        assert_eq!(r.cache_read_usd_per_1k.unwrap().to_string(), "0.00125");
        assert_eq!(r.cache_write_usd_per_1k.unwrap().to_string(), "0.0025");
        assert!(r.price_id.starts_with("p-") && r.price_id.len() == 18);
        let again = table(
            "provider,model,input_usd_per_1k,output_usd_per_1k,cache_read_usd_per_1k,cache_write_usd_per_1k,valid_from,valid_to\n\
             openai,gpt-4o,0.00250,0.010,0.00125,,2024-01-01T00:00:00Z,\n",
        )
        .unwrap();
        assert_eq!(
            again.rows()[0].price_id,
            r.price_id,
            "formatting does not change the id"
        );
    }

    #[test]
    fn every_problem_is_reported_with_its_line() {
        let err = table(
            "provider,model,input_usd_per_1k,output_usd_per_1k,valid_from,valid_to\n\
             openai,gpt-4o,0.0025,0.01,2024-01-01,2024-06-01\n\
             openai,gpt-4o,0.002,0.008,2024-05-01,\n\
             openai,gpt-4o-mini,-0.1,0.0006,2024-01-01,\n\
             openai,o1,abc,0.06,2024-13-01,\n\
             openai,o3,0.01,0.04,2024-02-01,2024-01-01\n",
        )
        .unwrap_err();
        let all = err.to_string();
        assert!(
            all.contains("line 2 and line 3: prices of openai/gpt-4o overlap"),
            "{all}"
        );
        assert!(
            all.contains("line 4: `input_usd_per_1k` is negative (-0.1)"),
            "{all}"
        );
        assert!(
            all.contains("line 5: `input_usd_per_1k`: `abc` is not a decimal number"),
            "{all}"
        );
        assert!(
            all.contains("line 5: `valid_from`: `2024-13-01` is not a timestamp"),
            "{all}"
        );
        assert!(
            all.contains("line 6: `valid_to` 2024-01-01T00:00:00+00:00 is not after"),
            "{all}"
        );
        assert_eq!(err.len(), 5, "{all}");
    }

    #[test]
    fn a_row_with_a_bad_price_is_still_checked_for_overlap_and_ids() {
        // Line 3's price is not a number and it overlaps line 2; line 5 has a
        // bad output price and reuses line 4's id. All four problems at once.
        let err = table(
            "provider,model,input_usd_per_1k,output_usd_per_1k,valid_from,valid_to,price_id\n\
             openai,gpt-4o,0.0025,0.01,2024-01-01,2024-06-01,\n\
             openai,gpt-4o,0.0o2,0.008,2024-05-01,,\n\
             openai,o1,0.015,0.06,2024-01-01,,p-o1\n\
             openai,o3,0.01,-1,2024-01-01,,p-o1\n",
        )
        .unwrap_err();
        let all = err.to_string();
        assert!(all.contains("line 3: `input_usd_per_1k`: `0.0o2`"), "{all}");
        assert!(
            all.contains("line 2 and line 3: prices of openai/gpt-4o overlap"),
            "{all}"
        );
        assert!(
            all.contains("line 5: `output_usd_per_1k` is negative"),
            "{all}"
        );
        assert!(
            all.contains("line 4 and line 5: price_id `p-o1` is used twice"),
            "{all}"
        );
        assert_eq!(err.len(), 4, "{all}");
    }

    #[test]
    fn missing_columns_are_named() {
        let err = table("provider,model,price\nopenai,x,1\n").unwrap_err();
        assert!(
            err.to_string()
                .contains("missing column(s) input_usd_per_1k, output_usd_per_1k, valid_from")
        );
    }

    #[test]
    fn aliases_resolve_by_explicit_rules_only() {
        let rules = AliasRules(vec![
            AliasRule {
                provider: Some("azure_openai".into()),
                model: ModelPattern::Exact("azure/gpt-4o".into()),
                price_provider: Some("openai".into()),
                price_model: "gpt-4o".into(),
            },
            AliasRule {
                provider: None,
                model: ModelPattern::Regex(
                    Regex::new(r"^(?:(gpt-4o-mini))-\d{4}-\d{2}-\d{2}$").unwrap(),
                ),
                price_provider: None,
                price_model: "$1".into(),
            },
        ]);
        assert_eq!(
            rules.resolve("azure_openai", "azure/gpt-4o").to_string(),
            "openai/gpt-4o"
        );
        assert_eq!(rules.resolve("azure_openai", "azure/gpt-4o").rule, Some(0));
        assert_eq!(
            rules.resolve("openai", "azure/gpt-4o").to_string(),
            "openai/azure/gpt-4o"
        );
        assert_eq!(
            rules
                .resolve("openai", "gpt-4o-mini-2024-07-18")
                .to_string(),
            "openai/gpt-4o-mini"
        );
        // No rule: the logged names, exactly; a dated snapshot is not guessed.
        assert_eq!(
            rules.resolve("openai", "gpt-4o-2024-08-06").to_string(),
            "openai/gpt-4o-2024-08-06"
        );
    }

    #[test]
    fn price_map_keeps_rows_in_force_during_the_day() {
        let t = table(
            "provider,model,input_usd_per_1k,output_usd_per_1k,valid_from,valid_to\n\
             openai,gpt-4o,0.005,0.015,2024-01-01,2024-03-01T12:00:00Z\n\
             openai,gpt-4o,0.0025,0.01,2024-03-01T12:00:00Z,\n\
             openai,old,1,1,2020-01-01,2021-01-01\n",
        )
        .unwrap();
        let day = |s: &str| parse_instant(s).unwrap();
        let pairs = vec![
            ("openai".to_string(), "gpt-4o".to_string()),
            ("openai".to_string(), "old".to_string()),
            ("x".to_string(), "y".to_string()),
        ];
        let (batch, res) = t.price_map(
            &AliasRules::default(),
            &pairs,
            day("2024-03-01"),
            day("2024-03-02"),
        );
        assert_eq!(batch.num_rows(), 2);
        assert_eq!(res[0].price_ids.len(), 2);
        assert!(res[1].price_ids.is_empty() && res[2].price_ids.is_empty());
        let price = batch
            .column(5)
            .as_any()
            .downcast_ref::<Decimal128Array>()
            .unwrap();
        // 0.005 per 1k = 0.000005 per token = 5 * 10^-6, at scale 23.
        assert_eq!(price.value(0), 5 * 10i128.pow(17));
    }

    #[test]
    fn cuts_are_the_bounds_of_every_row_in_force_during_the_day() {
        let t = table(
            "provider,model,input_usd_per_1k,output_usd_per_1k,valid_from,valid_to\n\
             openai,gpt-4o,0.005,0.015,2024-01-01,2024-03-01T12:00:00Z\n\
             openai,gpt-4o,0.0025,0.01,2024-03-01T12:00:00Z,\n\
             anthropic,claude,0.003,0.015,2024-03-01T06:30:00Z,2024-03-05\n\
             openai,old,1,1,2020-01-01,2021-01-01\n\
             openai,later,1,1,2024-03-02,\n",
        )
        .unwrap();
        let at = |s: &str| nanos(parse_instant(s).unwrap());
        let cuts = t.cuts(at_instant("2024-03-01"), at_instant("2024-03-02"));
        // Bounds outside the day stay (a row's whole span), open ends are
        // none, rows not in force (`old`; `later` starts as the day ends)
        // add nothing, a shared bound is one cut.
        assert_eq!(
            cuts,
            vec![
                at("2024-01-01"),
                at("2024-03-01T06:30:00Z"),
                at("2024-03-01T12:00:00Z"),
                at("2024-03-05"),
            ]
        );
    }

    fn at_instant(s: &str) -> DateTime<Utc> {
        parse_instant(s).unwrap()
    }
}
