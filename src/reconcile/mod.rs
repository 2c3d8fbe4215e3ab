//! Reconciliation (SPEC 2 and 3): what tokenledger computed against what the
//! providers bill, and against what the gateway logged.
//!
//! Pure logic over small inputs: the usage of each logged (provider, model) per
//! day, read from daily rollups (today's from the run, earlier days' from
//! storage, never from raw logs), and the invoice lines the adapters of
//! [`invoices`] turned into SPEC 1.4's normalized form. It produces the lines
//! of `reconciliation.csv` (the report day), `reconciliation_mtd.csv` (month to
//! date), `reconciliation_by_token_type.csv` and `logged_vs_computed.csv`.
//!
//! Money stays exact (USD as `i128` at [`SCALE`] decimals) until each output
//! cell is rounded once, half to even, to 6 decimals. Statuses are decided on
//! the rounded figures a reader sees, so every status can be checked from the
//! CSV alone. This module does no I/O and knows nothing of storage or SQL.

pub mod invoices;
pub mod settings;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use arrow::array::{
    ArrayRef, Date32Array, Decimal128Array, Float64Array, Int64Array, RecordBatch, StringArray,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use chrono::{Datelike, NaiveDate};
use rust_decimal::Decimal;
use serde::Serialize;

use crate::error::{Error, Problems, Result};
use crate::fx::FxTable;
use crate::money::{AMOUNT_SCALE, OUT_SCALE, PRICE_SCALE, div_half_even, format_scaled, rescale};
use crate::pricing::ModelPattern;
use crate::queries::rows::{Dec, Evidence, RollupDaily};

/// Decimals of exact money in this module (the rollups' scale).
pub const SCALE: i8 = PRICE_SCALE;

/// The kinds of tokens providers bill separately.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenType {
    UncachedInput,
    CacheRead,
    CacheWrite,
    Output,
    /// A charge on the invoice not tied to a kind of token (web search, fees).
    Other,
}

impl TokenType {
    /// The token types both sides can have, in the order of [`Usage::by_type`].
    pub const PRICED: [TokenType; 4] = [
        TokenType::UncachedInput,
        TokenType::CacheRead,
        TokenType::CacheWrite,
        TokenType::Output,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TokenType::UncachedInput => "uncached_input",
            TokenType::CacheRead => "cache_read",
            TokenType::CacheWrite => "cache_write",
            TokenType::Output => "output",
            TokenType::Other => "other",
        }
    }

    /// The normalized names (`token_type` column of SPEC 1.4's CSV).
    pub fn parse(s: &str) -> Option<TokenType> {
        Some(match s.trim() {
            "uncached_input" => TokenType::UncachedInput,
            "cache_read" => TokenType::CacheRead,
            "cache_write" => TokenType::CacheWrite,
            "output" => TokenType::Output,
            "other" => TokenType::Other,
            _ => return None,
        })
    }

    fn phrase(self) -> &'static str {
        match self {
            TokenType::UncachedInput => "uncached input",
            TokenType::CacheRead => "cache-read",
            TokenType::CacheWrite => "cache-write",
            TokenType::Output => "output",
            TokenType::Other => "other",
        }
    }

    fn index(self) -> Option<usize> {
        TokenType::PRICED.iter().position(|t| *t == self)
    }
}

/// What an invoice line charges for (FOCUS `ChargeCategory`). Taxes and
/// purchases (commitments) are not usage and never reach reconciliation; the
/// adapters leave them out and count them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Charge {
    Usage,
    /// Credits and refunds: negative amounts against usage.
    Credit,
    /// Corrections of earlier charges.
    Adjustment,
}

impl Charge {
    pub fn as_str(self) -> &'static str {
        match self {
            Charge::Usage => "usage",
            Charge::Credit => "credit",
            Charge::Adjustment => "adjustment",
        }
    }

    pub fn parse(s: &str) -> Option<Charge> {
        Some(match s.trim().to_ascii_lowercase().as_str() {
            "" | "usage" => Charge::Usage,
            "credit" | "refund" => Charge::Credit,
            "adjustment" => Charge::Adjustment,
            _ => return None,
        })
    }
}

/// One invoice line in SPEC 1.4's normalized form.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvoiceLine {
    /// Our provider name (as logged).
    pub provider: String,
    /// The usage day.
    pub date: NaiveDate,
    /// The model as the invoice names it; `None` when the line has none.
    pub model: Option<String>,
    pub token_type: Option<TokenType>,
    pub charge: Charge,
    /// In `currency`, at [`SCALE`] decimals.
    pub amount: i128,
    /// ISO 4217, upper case.
    pub currency: String,
    /// Where the line came from (object key and line), for messages and evidence.
    pub source: String,
}

/// An invoice line converted to USD.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UsdLine {
    pub line: InvoiceLine,
    /// USD at [`SCALE`].
    pub usd: i128,
    /// When the line's object is byte-identical to an earlier one: (this
    /// object's key, the earlier one's). The line still counts (an invoice
    /// is never dropped silently); every reconciliation line it feeds says so.
    pub duplicate_of: Option<(String, String)>,
}

/// Convert invoice lines to USD by the rate of each line's date (the latest
/// earlier rate, SPEC 1.3). A currency without a rate is a problem naming the
/// line: an invoice that cannot be converted cannot be reconciled.
pub fn to_usd(
    lines: Vec<InvoiceLine>,
    fx: &FxTable,
) -> std::result::Result<Vec<UsdLine>, Problems> {
    let mut problems = Problems::new();
    let mut out = Vec::with_capacity(lines.len());
    for line in lines {
        match fx.rate(&line.currency, line.date) {
            Some((_, rate)) => {
                let usd =
                    div_half_even(line.amount * rate, crate::money::pow10(AMOUNT_SCALE as u32));
                out.push(UsdLine {
                    line,
                    usd,
                    duplicate_of: None,
                });
            }
            None => problems.push(format!(
                "{}: currency {} has no FX rate on or before {} (fx.csv)",
                line.source, line.currency, line.date
            )),
        }
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(problems)
    }
}

/// Our usage of one logged (provider, model) on one day, from a daily rollup.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    pub requests: i64,
    /// Requests that reached the provider (not gateway cache hits).
    pub billable_requests: i64,
    pub unpriced_requests: i64,
    /// Cost of the priced requests, USD at [`SCALE`].
    pub cost: i128,
    /// Cost by token type in [`TokenType::PRICED`] order; `None` for rollups
    /// written before the split existed.
    pub by_type: Option<[i128; 4]>,
    /// Requests with a logged cost in a convertible currency that were priced,
    /// their logged cost in USD and our cost of the same requests.
    pub logged_requests: i64,
    pub logged_usd: i128,
    pub logged_computed_usd: i128,
}

impl Usage {
    fn add(&mut self, o: &Usage) {
        self.requests += o.requests;
        self.billable_requests += o.billable_requests;
        self.unpriced_requests += o.unpriced_requests;
        self.cost += o.cost;
        self.by_type = match (self.by_type, o.by_type) {
            (Some(a), Some(b)) => Some(std::array::from_fn(|i| a[i] + b[i])),
            _ => None,
        };
        self.logged_requests += o.logged_requests;
        self.logged_usd += o.logged_usd;
        self.logged_computed_usd += o.logged_computed_usd;
    }

    fn empty() -> Usage {
        Usage {
            by_type: Some([0; 4]),
            ..Usage::default()
        }
    }
}

/// Usage of one day by logged (provider, model).
pub type DayUsage = BTreeMap<(String, String), Usage>;

/// The usage by (provider, model) in a day's `rollup_daily` rows. Rollups
/// written before the token-type split or the logged-cost comparison simply
/// lack those figures.
pub fn usage_of(rows: &[RollupDaily]) -> DayUsage {
    let mut out = DayUsage::new();
    let money = |d: Option<Dec>| d.map_or(0, |d| d.at(SCALE));
    for r in rows {
        let types = [
            &r.cost_uncached_input_usd,
            &r.cost_cache_read_usd,
            &r.cost_cache_write_usd,
            &r.cost_output_usd,
        ];
        let requests = r.requests.unwrap_or(0);
        let u = Usage {
            requests,
            billable_requests: requests - r.cache_hits.unwrap_or(0),
            unpriced_requests: r.unpriced_requests.unwrap_or(0),
            cost: money(r.cost_usd),
            by_type: types
                .iter()
                .map(|t| t.0.map(money))
                .collect::<Option<Vec<i128>>>()
                .map(|v| std::array::from_fn(|t| v[t])),
            logged_requests: r.logged_compared_requests.0.flatten().unwrap_or(0),
            logged_usd: r.logged_compared_usd.0.flatten().map_or(0, |d| d.at(SCALE)),
            logged_computed_usd: r
                .computed_compared_usd
                .0
                .flatten()
                .map_or(0, |d| d.at(SCALE)),
        };
        out.entry((r.provider.clone(), r.model.clone()))
            .or_insert_with(Usage::empty)
            .add(&u);
    }
    out
}

/// One explicit rule naming models for reconciliation: invoices and logs name
/// models their own way (`us.anthropic.claude-…-v1:0`, `Claude3.5Sonnet`,
/// `gpt-4o-2024-08-06`). A rule applies to invoice and logged names alike.
#[derive(Clone, Debug)]
pub struct ModelRule {
    /// Our provider the rule applies to (any when `None`).
    pub provider: Option<String>,
    pub pattern: ModelPattern,
    /// The reconciliation name; a regex rule may use `$1` or `${name}`.
    pub model: String,
}

/// Rules in order; the first that matches applies; without one a name stays as it is.
#[derive(Clone, Debug, Default)]
pub struct ModelRules(pub Vec<ModelRule>);

impl ModelRules {
    pub fn name(&self, provider: &str, model: &str) -> String {
        for rule in &self.0 {
            if rule.provider.as_deref().is_some_and(|p| p != provider) {
                continue;
            }
            match &rule.pattern {
                ModelPattern::Exact(m) if m == model => return rule.model.clone(),
                ModelPattern::Regex(re) => {
                    if let Some(caps) = re.captures(model) {
                        let mut out = String::new();
                        caps.expand(&rule.model, &mut out);
                        return out;
                    }
                }
                ModelPattern::Exact(_) => {}
            }
        }
        model.to_string()
    }
}

/// Absolute and relative tolerance: a difference is fine when
/// `|delta| <= max(abs, rel * computed)` (SPEC 2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tolerance {
    /// USD at 6 decimals.
    pub abs: i128,
    pub rel: Decimal,
}

impl Tolerance {
    /// SPEC 2's defaults: 0.01 USD and 0.5%.
    pub fn spec_default() -> Tolerance {
        Tolerance {
            abs: 10_000,
            rel: Decimal::new(5, 3),
        }
    }

    /// `delta` and `computed` at 6 decimals.
    pub fn holds(&self, delta: i128, computed: i128) -> bool {
        let d = delta.unsigned_abs();
        if d <= self.abs.unsigned_abs() {
            return true;
        }
        // |delta| * 10^s <= |computed| * m, with rel = m / 10^s.
        let m = self.rel.mantissa().unsigned_abs();
        let s = crate::money::pow10(self.rel.scale()) as u128;
        match (d.checked_mul(s), computed.unsigned_abs().checked_mul(m)) {
            (Some(l), Some(r)) => l <= r,
            _ => false,
        }
    }
}

/// What reconciliation needs besides the data.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Computed against invoiced.
    pub invoice: Tolerance,
    /// Computed against the gateway's logged cost.
    pub logged: Tolerance,
    pub models: ModelRules,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            invoice: Tolerance::spec_default(),
            logged: Tolerance {
                abs: 10_000,
                rel: Decimal::new(1, 2),
            },
            models: ModelRules::default(),
        }
    }
}

/// SPEC 3's statuses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Ok,
    Mismatch,
    MissingInvoice,
    MissingUsage,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Mismatch => "mismatch",
            Status::MissingInvoice => "missing_invoice",
            Status::MissingUsage => "missing_usage",
        }
    }
}

/// Both sides of one reconciliation key, exact, before rounding.
#[derive(Clone, Debug, Default)]
struct Acc {
    usage: Usage,
    /// `None` until an invoice line arrives.
    invoiced: Option<i128>,
    credits: i128,
    /// Invoiced by token type (lines without one count as `Other`).
    invoiced_by_type: BTreeMap<TokenType, i128>,
    token_lines: bool,
    lines: usize,
    /// Objects that repeat an earlier one byte for byte, with that one.
    duplicates: std::collections::BTreeSet<(String, String)>,
}

impl Acc {
    fn empty() -> Acc {
        Acc {
            usage: Usage::empty(),
            ..Acc::default()
        }
    }

    fn add_line(&mut self, l: &UsdLine) {
        self.invoiced = Some(self.invoiced.unwrap_or(0) + l.usd);
        if l.line.charge != Charge::Usage {
            self.credits += l.usd;
        }
        if l.line.token_type.is_some() {
            self.token_lines = true;
        }
        *self
            .invoiced_by_type
            .entry(l.line.token_type.unwrap_or(TokenType::Other))
            .or_default() += l.usd;
        self.lines += 1;
        if let Some(pair) = &l.duplicate_of {
            self.duplicates.insert(pair.clone());
        }
    }

    fn merge(&mut self, o: &Acc) {
        self.usage.add(&o.usage);
        if let Some(v) = o.invoiced {
            self.invoiced = Some(self.invoiced.unwrap_or(0) + v);
        }
        self.credits += o.credits;
        for (t, v) in &o.invoiced_by_type {
            *self.invoiced_by_type.entry(*t).or_default() += v;
        }
        self.token_lines |= o.token_lines;
        self.lines += o.lines;
        self.duplicates.extend(o.duplicates.iter().cloned());
    }
}

/// A reconciliation key: our provider and the model (empty when the provider
/// is reconciled as a whole that day).
pub type Key = (String, String);

/// The keys of one day with both sides (SPEC 1.4: a provider is reconciled
/// per model on a day when any of its invoice lines that day names a model).
fn day_accs(
    date: NaiveDate,
    usage: &DayUsage,
    lines: &[&UsdLine],
    rules: &ModelRules,
) -> BTreeMap<Key, Acc> {
    let per_model: BTreeSet<&str> = lines
        .iter()
        .filter(|l| l.line.date == date && l.line.model.is_some())
        .map(|l| l.line.provider.as_str())
        .collect();
    let mut accs: BTreeMap<Key, Acc> = BTreeMap::new();
    for ((provider, model), u) in usage {
        let model = if per_model.contains(provider.as_str()) {
            rules.name(provider, model)
        } else {
            String::new()
        };
        accs.entry((provider.clone(), model))
            .or_insert_with(Acc::empty)
            .usage
            .add(u);
    }
    for l in lines.iter().filter(|l| l.line.date == date) {
        let provider = &l.line.provider;
        let model = match (&l.line.model, per_model.contains(provider.as_str())) {
            (Some(m), true) => rules.name(provider, m),
            _ => String::new(),
        };
        accs.entry((provider.clone(), model))
            .or_insert_with(Acc::empty)
            .add_line(l);
    }
    // Usage that never reached a provider (gateway cache hits only) and no
    // invoice line: nothing to reconcile.
    accs.retain(|_, a| a.invoiced.is_some() || a.usage.billable_requests > 0);
    accs
}

/// One line of `reconciliation.csv` (or of the month-to-date file).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Line {
    pub provider: String,
    pub model: String,
    /// USD at 6 decimals (rounded once from the exact sum); `None` when
    /// every request was unpriced (never priced as 0).
    pub computed_usd: Option<i128>,
    pub invoiced_usd: Option<i128>,
    pub delta_usd: Option<i128>,
    pub delta_pct: Option<f64>,
    pub status: Status,
    pub unpriced_requests: i64,
    /// Credits and adjustments included in `invoiced_usd`, 6 decimals.
    pub credits_usd: i128,
    pub invoice_lines: usize,
    /// Where a difference comes from, in words; empty when `ok`.
    pub explanation: String,
    pub by_type: Vec<TypeLine>,
}

/// One token type of a key whose invoice splits by token type.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TypeLine {
    pub token_type: TokenType,
    /// `None` when the computed side has no split (old rollups) or for `Other`.
    pub computed_usd: Option<i128>,
    pub invoiced_usd: i128,
    pub delta_usd: i128,
    pub status: Status,
}

fn round6(v: i128) -> i128 {
    rescale(v, SCALE, OUT_SCALE)
}

/// `12.345600 USD` for explanations.
pub fn usd(v6: i128) -> String {
    format!("{} USD", format_scaled(v6, OUT_SCALE))
}

fn pct(delta: i128, computed: i128) -> Option<f64> {
    (computed != 0).then(|| delta as f64 * 100.0 / computed as f64)
}

fn finish(key: &Key, a: &Acc, tol: &Tolerance) -> Line {
    // Usage whose every request is unpriced has no computed cost: an empty
    // cell, never 0 (SPEC: unpriced is never priced as 0).
    let all_unpriced = a.usage.requests > 0 && a.usage.unpriced_requests == a.usage.requests;
    let computed = (!all_unpriced).then(|| round6(a.usage.cost));
    let invoiced = a.invoiced.map(round6);
    let delta = invoiced.zip(computed).map(|(i, c)| i - c);
    let status = match (invoiced, computed) {
        (None, _) => Status::MissingInvoice,
        (Some(_), _) if a.usage.billable_requests == 0 => Status::MissingUsage,
        (Some(i), Some(c)) if tol.holds(i - c, c) => Status::Ok,
        (Some(_), _) => Status::Mismatch,
    };
    let by_type = if a.token_lines {
        type_lines(a, tol)
    } else {
        Vec::new()
    };
    let mut why = Vec::new();
    match status {
        Status::Ok => {}
        Status::MissingInvoice => why.push("no invoice line for this usage".to_string()),
        Status::MissingUsage => why
            .push("billed, but no request reached this provider and model in the logs".to_string()),
        Status::Mismatch => {
            if let Some(t) = by_type
                .iter()
                .filter(|t| t.status != Status::Ok)
                .max_by_key(|t| (t.delta_usd.unsigned_abs(), std::cmp::Reverse(t.token_type)))
            {
                why.push(type_explanation(t));
            }
        }
    }
    for (object, first) in &a.duplicates {
        why.push(format!(
            "invoice object {object} is byte-identical to {first}: its lines are counted twice"
        ));
    }
    if status != Status::Ok {
        let credits = round6(a.credits);
        if credits != 0 {
            why.push(format!(
                "the invoice includes credits and adjustments of {}",
                usd(credits)
            ));
        }
        if a.usage.unpriced_requests > 0 {
            why.push(format!(
                "{} unpriced request(s) are not in computed_usd",
                a.usage.unpriced_requests
            ));
        }
    }
    Line {
        provider: key.0.clone(),
        model: key.1.clone(),
        computed_usd: computed,
        invoiced_usd: invoiced,
        delta_usd: delta,
        delta_pct: delta.zip(computed).and_then(|(d, c)| pct(d, c)),
        status,
        unpriced_requests: a.usage.unpriced_requests,
        credits_usd: round6(a.credits),
        invoice_lines: a.lines,
        explanation: why.join("; "),
        by_type,
    }
}

fn type_lines(a: &Acc, tol: &Tolerance) -> Vec<TypeLine> {
    let mut out = Vec::new();
    for t in TokenType::PRICED.iter().copied().chain([TokenType::Other]) {
        let invoiced = round6(a.invoiced_by_type.get(&t).copied().unwrap_or(0));
        let computed = match (t.index(), a.usage.by_type) {
            (Some(i), Some(split)) => Some(round6(split[i])),
            (None, _) => Some(0),
            (Some(_), None) => None,
        };
        if invoiced == 0 && computed.unwrap_or(0) == 0 && !a.invoiced_by_type.contains_key(&t) {
            continue;
        }
        let c = computed.unwrap_or(0);
        let delta = invoiced - c;
        let status = match computed {
            None => Status::Mismatch,
            Some(0) if invoiced != 0 => Status::MissingUsage,
            Some(_) if invoiced == 0 && !a.invoiced_by_type.contains_key(&t) => {
                Status::MissingInvoice
            }
            Some(_) if tol.holds(delta, c) => Status::Ok,
            Some(_) => Status::Mismatch,
        };
        out.push(TypeLine {
            token_type: t,
            computed_usd: computed,
            invoiced_usd: invoiced,
            delta_usd: delta,
            status,
        });
    }
    out
}

fn type_explanation(t: &TypeLine) -> String {
    let name = t.token_type.phrase();
    match (t.token_type, t.computed_usd) {
        (TokenType::Other, _) => format!(
            "{} billed for charges that are not tokens",
            usd(t.invoiced_usd)
        ),
        (_, None) => format!(
            "{name} tokens billed {}; the logs of some days have no split by token type",
            usd(t.invoiced_usd)
        ),
        (_, Some(0)) => format!(
            "{name} tokens billed but not logged ({})",
            usd(t.invoiced_usd)
        ),
        (_, Some(c)) if t.invoiced_usd == 0 => {
            format!("{name} tokens logged but not billed ({})", usd(c))
        }
        (_, Some(c)) => format!(
            "{name} tokens: billed {}, computed {} (delta {})",
            usd(t.invoiced_usd),
            usd(c),
            usd(t.delta_usd)
        ),
    }
}

/// The reconciliation of a report day and of its month to date.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Reconciliation {
    pub date: Option<NaiveDate>,
    pub day: Vec<Line>,
    pub month_to_date: Vec<Line>,
    /// First day of the month-to-date window.
    pub month_start: Option<NaiveDate>,
    /// Days of the window without a rollup (their usage is missing from the
    /// month-to-date computed side).
    pub days_without_usage: Vec<NaiveDate>,
    /// Gateway-logged cost against computed, per (provider, model), the day.
    pub logged: Vec<DriftLine>,
}

impl Reconciliation {
    /// Lines (day and month to date) that are not `ok`.
    pub fn not_ok(&self) -> usize {
        self.day
            .iter()
            .chain(&self.month_to_date)
            .filter(|l| l.status != Status::Ok)
            .count()
    }
}

/// The first day of `date`'s month.
pub fn month_start(date: NaiveDate) -> NaiveDate {
    date.with_day(1).expect("day 1 exists")
}

/// Reconcile day `date` and its month to date.
///
/// `usage` holds the usage of every day of the month up to `date` that has a
/// rollup (today's included); `lines` every invoice line in USD (lines outside
/// the month are ignored).
pub fn reconcile(
    date: NaiveDate,
    usage: &BTreeMap<NaiveDate, DayUsage>,
    lines: &[UsdLine],
    settings: &Settings,
) -> Reconciliation {
    let start = month_start(date);
    let in_month: Vec<&UsdLine> = lines
        .iter()
        .filter(|l| l.line.date >= start && l.line.date <= date)
        .collect();
    let none = DayUsage::new();
    let mut mtd: BTreeMap<Key, Acc> = BTreeMap::new();
    let mut day = BTreeMap::new();
    let mut missing = Vec::new();
    for d in start.iter_days().take_while(|d| *d <= date) {
        let u = usage.get(&d).unwrap_or_else(|| {
            missing.push(d);
            &none
        });
        let accs = day_accs(d, u, &in_month, &settings.models);
        for (k, a) in &accs {
            mtd.entry(k.clone()).or_insert_with(Acc::empty).merge(a);
        }
        if d == date {
            day = accs;
        }
    }
    let logged = usage
        .get(&date)
        .map(|u| drift(u, &settings.logged))
        .unwrap_or_default();
    Reconciliation {
        date: Some(date),
        day: day
            .iter()
            .map(|(k, a)| finish(k, a, &settings.invoice))
            .collect(),
        month_to_date: mtd
            .iter()
            .map(|(k, a)| finish(k, a, &settings.invoice))
            .collect(),
        month_start: Some(start),
        days_without_usage: missing,
        logged,
    }
}

/// Gateway-logged cost against ours for one (provider, model).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DriftLine {
    pub provider: String,
    pub model: String,
    /// Priced requests with a logged cost in a convertible currency.
    pub requests: i64,
    pub computed_usd: i128,
    pub logged_usd: i128,
    /// logged - computed, 6 decimals.
    pub delta_usd: i128,
    pub delta_pct: Option<f64>,
    /// `ok`, or `drift`: one of the two price tables is stale.
    pub status: &'static str,
}

fn drift(usage: &DayUsage, tol: &Tolerance) -> Vec<DriftLine> {
    usage
        .iter()
        .filter(|(_, u)| u.logged_requests > 0)
        .map(|((p, m), u)| {
            let computed = round6(u.logged_computed_usd);
            let logged = round6(u.logged_usd);
            let delta = logged - computed;
            DriftLine {
                provider: p.clone(),
                model: m.clone(),
                requests: u.logged_requests,
                computed_usd: computed,
                logged_usd: logged,
                delta_usd: delta,
                delta_pct: pct(delta, computed),
                status: if tol.holds(delta, computed) {
                    "ok"
                } else {
                    "drift"
                },
            }
        })
        .collect()
}

// ---- CSV shapes -----------------------------------------------------------

fn money_array(values: impl IntoIterator<Item = Option<i128>>) -> ArrayRef {
    Arc::new(
        Decimal128Array::from_iter(values)
            .with_precision_and_scale(38, OUT_SCALE)
            .expect("valid decimal type"),
    )
}

fn date32(d: NaiveDate) -> i32 {
    let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).expect("valid date");
    (d - epoch).num_days() as i32
}

fn money_field(name: &str, nullable: bool) -> Field {
    Field::new(name, DataType::Decimal128(38, OUT_SCALE), nullable)
}

/// The columns of `reconciliation.csv` and `reconciliation_mtd.csv`: SPEC 3's,
/// then `credits_usd`, `invoice_lines` and `explanation`. The month-to-date
/// file adds `from` (the first day of the month) after `date`.
pub fn lines_schema(mtd: bool) -> SchemaRef {
    let mut f = vec![Field::new("date", DataType::Date32, false)];
    if mtd {
        f.push(Field::new("from", DataType::Date32, false));
    }
    f.extend([
        Field::new("provider", DataType::Utf8, false),
        Field::new("model", DataType::Utf8, false),
        money_field("computed_usd", true),
        money_field("invoiced_usd", true),
        money_field("delta_usd", true),
        Field::new("delta_pct", DataType::Float64, true),
        Field::new("status", DataType::Utf8, false),
        Field::new("unpriced_requests", DataType::Int64, false),
        money_field("credits_usd", false),
        Field::new("invoice_lines", DataType::Int64, false),
        Field::new("explanation", DataType::Utf8, false),
    ]);
    Arc::new(Schema::new(f))
}

/// Lines as one batch of [`lines_schema`].
pub fn lines_batch(date: NaiveDate, from: Option<NaiveDate>, lines: &[Line]) -> RecordBatch {
    let n = lines.len();
    let mut cols: Vec<ArrayRef> = vec![Arc::new(Date32Array::from(vec![date32(date); n]))];
    if let Some(from) = from {
        cols.push(Arc::new(Date32Array::from(vec![date32(from); n])));
    }
    cols.extend([
        Arc::new(StringArray::from_iter_values(
            lines.iter().map(|l| &l.provider),
        )) as ArrayRef,
        Arc::new(StringArray::from_iter_values(
            lines.iter().map(|l| &l.model),
        )),
        money_array(lines.iter().map(|l| l.computed_usd)),
        money_array(lines.iter().map(|l| l.invoiced_usd)),
        money_array(lines.iter().map(|l| l.delta_usd)),
        Arc::new(Float64Array::from_iter(lines.iter().map(|l| l.delta_pct))),
        Arc::new(StringArray::from_iter_values(
            lines.iter().map(|l| l.status.as_str()),
        )),
        Arc::new(Int64Array::from_iter_values(
            lines.iter().map(|l| l.unpriced_requests),
        )),
        money_array(lines.iter().map(|l| Some(l.credits_usd))),
        Arc::new(Int64Array::from_iter_values(
            lines.iter().map(|l| l.invoice_lines as i64),
        )),
        Arc::new(StringArray::from_iter_values(
            lines.iter().map(|l| &l.explanation),
        )),
    ]);
    RecordBatch::try_new(lines_schema(from.is_some()), cols).expect("columns match schema")
}

/// `reconciliation_by_token_type.csv`: the day's keys whose invoice splits by
/// token type, one row per token type.
pub fn types_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("date", DataType::Date32, false),
        Field::new("provider", DataType::Utf8, false),
        Field::new("model", DataType::Utf8, false),
        Field::new("token_type", DataType::Utf8, false),
        money_field("computed_usd", true),
        money_field("invoiced_usd", false),
        money_field("delta_usd", false),
        Field::new("status", DataType::Utf8, false),
    ]))
}

pub fn types_batch(date: NaiveDate, lines: &[Line]) -> RecordBatch {
    let rows: Vec<(&Line, &TypeLine)> = lines
        .iter()
        .flat_map(|l| l.by_type.iter().map(move |t| (l, t)))
        .collect();
    let cols: Vec<ArrayRef> = vec![
        Arc::new(Date32Array::from(vec![date32(date); rows.len()])),
        Arc::new(StringArray::from_iter_values(
            rows.iter().map(|(l, _)| &l.provider),
        )),
        Arc::new(StringArray::from_iter_values(
            rows.iter().map(|(l, _)| &l.model),
        )),
        Arc::new(StringArray::from_iter_values(
            rows.iter().map(|(_, t)| t.token_type.as_str()),
        )),
        money_array(rows.iter().map(|(_, t)| t.computed_usd)),
        money_array(rows.iter().map(|(_, t)| Some(t.invoiced_usd))),
        money_array(rows.iter().map(|(_, t)| Some(t.delta_usd))),
        Arc::new(StringArray::from_iter_values(
            rows.iter().map(|(_, t)| t.status.as_str()),
        )),
    ];
    RecordBatch::try_new(types_schema(), cols).expect("columns match schema")
}

/// `logged_vs_computed.csv`.
pub fn drift_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("date", DataType::Date32, false),
        Field::new("provider", DataType::Utf8, false),
        Field::new("model", DataType::Utf8, false),
        Field::new("requests", DataType::Int64, false),
        money_field("computed_usd", false),
        money_field("logged_usd", false),
        money_field("delta_usd", false),
        Field::new("delta_pct", DataType::Float64, true),
        Field::new("status", DataType::Utf8, false),
    ]))
}

pub fn drift_batch(date: NaiveDate, lines: &[DriftLine]) -> RecordBatch {
    let cols: Vec<ArrayRef> = vec![
        Arc::new(Date32Array::from(vec![date32(date); lines.len()])),
        Arc::new(StringArray::from_iter_values(
            lines.iter().map(|l| &l.provider),
        )),
        Arc::new(StringArray::from_iter_values(
            lines.iter().map(|l| &l.model),
        )),
        Arc::new(Int64Array::from_iter_values(
            lines.iter().map(|l| l.requests),
        )),
        money_array(lines.iter().map(|l| Some(l.computed_usd))),
        money_array(lines.iter().map(|l| Some(l.logged_usd))),
        money_array(lines.iter().map(|l| Some(l.delta_usd))),
        Arc::new(Float64Array::from_iter(lines.iter().map(|l| l.delta_pct))),
        Arc::new(StringArray::from_iter_values(
            lines.iter().map(|l| l.status),
        )),
    ];
    RecordBatch::try_new(drift_schema(), cols).expect("columns match schema")
}

#[cfg(test)]
mod tests;

// ---- evidence ---------------------------------------------------------------

/// A logged (provider, model) behind a reconciliation line of the day that
/// is not `ok`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EvidenceKey {
    pub provider: String,
    /// As logged.
    pub model: String,
    /// The line's model (reconciliation name; empty for a provider line).
    pub line_model: String,
    pub status: Status,
}

/// Traces listed per logged (provider, model).
pub const EVIDENCE_TRACES: usize = 20;

/// Pairs examined at most (the lines with the largest differences first):
/// each costs a narrow scan of the day.
pub const EVIDENCE_PAIRS: usize = 20;

/// The pairs whose requests explain the day's `mismatch` lines, largest
/// difference first. (A missing invoice or missing usage is explained by
/// its status; requests add nothing.)
pub fn evidence_keys(r: &Reconciliation, usage: &DayUsage, rules: &ModelRules) -> Vec<EvidenceKey> {
    let mut lines: Vec<&Line> = r
        .day
        .iter()
        .filter(|l| l.status == Status::Mismatch)
        .collect();
    lines.sort_by_key(|l| std::cmp::Reverse(l.delta_usd.unwrap_or(0).unsigned_abs()));
    let mut out = Vec::new();
    for l in lines {
        for ((p, m), u) in usage {
            if *p != l.provider || u.requests == 0 {
                continue;
            }
            if l.model.is_empty() || rules.name(p, m) == l.model {
                out.push(EvidenceKey {
                    provider: p.clone(),
                    model: m.clone(),
                    line_model: l.model.clone(),
                    status: l.status,
                });
            }
        }
    }
    out.truncate(EVIDENCE_PAIRS);
    out
}

/// The `evidence_keys` table sql/evidence.sql filters by: one row per
/// filter of (dept, project, task, provider, model); `None` matches anything.
pub fn filter_batch(filters: &[[Option<String>; 5]]) -> RecordBatch {
    let names = ["dept", "project", "task", "provider", "model"];
    let schema = Arc::new(Schema::new(
        names
            .iter()
            .map(|n| Field::new(*n, DataType::Utf8View, true))
            .collect::<Vec<_>>(),
    ));
    let cols: Vec<ArrayRef> = (0..5)
        .map(|i| {
            Arc::new(arrow::array::StringViewArray::from_iter(
                filters.iter().map(|f| f[i].as_deref()),
            )) as ArrayRef
        })
        .collect();
    RecordBatch::try_new(schema, cols).expect("columns match schema")
}

/// The filter of one evidence pair.
pub fn pair_filter(k: &EvidenceKey) -> [Option<String>; 5] {
    [
        None,
        None,
        None,
        Some(k.provider.clone()),
        Some(k.model.clone()),
    ]
}

/// `reconciliation_evidence.csv` from sql/evidence.sql's rows (each pair's
/// in cost order): the first [`EVIDENCE_TRACES`] distinct traces per pair (a
/// duplicate delivery shows once), ranked, with the line they explain.
pub fn evidence_batch(
    date: NaiveDate,
    keys: &[EvidenceKey],
    schema: &SchemaRef,
    batches: &[RecordBatch],
) -> Result<RecordBatch> {
    let internal = |e: arrow::error::ArrowError| Error::Internal(format!("evidence: {e}"));
    let all = arrow::compute::concat_batches(schema, batches).map_err(internal)?;
    let rows: Vec<Evidence> = crate::queries::rows::decode(schema, std::slice::from_ref(&all))?;
    let mut seen = BTreeSet::new();
    let mut counts: BTreeMap<(&str, &str), usize> = BTreeMap::new();
    let (mut take, mut ranks, mut line_models, mut statuses) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (i, r) in rows.iter().enumerate() {
        let pair = (r.provider.as_str(), r.model.as_str());
        let n = counts.entry(pair).or_default();
        if *n >= EVIDENCE_TRACES || !seen.insert((pair, r.trace_id.as_str())) {
            continue;
        }
        *n += 1;
        let Some(key) = keys
            .iter()
            .find(|k| k.provider == pair.0 && k.model == pair.1)
        else {
            continue;
        };
        take.push(i);
        ranks.push(*n as i64);
        line_models.push(key.line_model.clone());
        statuses.push(key.status.as_str());
    }
    let indices: Vec<u32> = take.iter().map(|&i| i as u32).collect();
    let picked = arrow::compute::take_record_batch(&all, &arrow::array::UInt32Array::from(indices))
        .map_err(internal)?;
    let n = picked.num_rows();
    let mut fields = vec![
        Field::new("date", DataType::Date32, false),
        Field::new("provider", DataType::Utf8, false),
        Field::new("model", DataType::Utf8, false),
        Field::new("line_model", DataType::Utf8, false),
        Field::new("status", DataType::Utf8, false),
        Field::new("rank", DataType::Int64, false),
    ];
    let mut cols: Vec<ArrayRef> = vec![
        Arc::new(Date32Array::from(vec![date32(date); n])),
        Arc::new(StringArray::from_iter_values(
            take.iter().map(|&i| rows[i].provider.as_str()),
        )),
        Arc::new(StringArray::from_iter_values(
            take.iter().map(|&i| rows[i].model.as_str()),
        )),
        Arc::new(StringArray::from(line_models)),
        Arc::new(StringArray::from(statuses)),
        Arc::new(Int64Array::from(ranks)),
    ];
    for (i, f) in picked.schema().fields().iter().enumerate() {
        if ["provider", "model"].contains(&f.name().as_str()) {
            continue;
        }
        let (field, col) = match f.data_type() {
            DataType::Utf8View | DataType::LargeUtf8 => (
                Field::new(f.name(), DataType::Utf8, f.is_nullable()),
                arrow::compute::cast(picked.column(i), &DataType::Utf8).map_err(internal)?,
            ),
            DataType::Timestamp(_, tz) => {
                let dt = DataType::Timestamp(arrow::datatypes::TimeUnit::Nanosecond, tz.clone());
                (
                    Field::new(f.name(), dt.clone(), f.is_nullable()),
                    arrow::compute::cast(picked.column(i), &dt).map_err(internal)?,
                )
            }
            _ => (f.as_ref().clone(), Arc::clone(picked.column(i))),
        };
        fields.push(field);
        cols.push(col);
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), cols).map_err(internal)
}
