//! `focus_costs.csv`: the FinOps FOCUS 1.2 shape of the day's computed cost.
//!
//! `sql/focus_costs.sql` computes the per-row columns; this module adds
//! what FOCUS 1.2 makes mandatory beyond them (the billing account from
//! `[focus]`, the billing period, `ChargeClass`, `ContractedCost`), turns
//! the `dept`, `project` and `task` columns into FOCUS's `Tags` JSON object
//! (escaped by serde_json, so hostile tag values stay data), writes money,
//! unit prices and quantities as exact decimals (so that `ListUnitPrice x
//! PricingQuantity = ListCost` holds to the last digit, as FOCUS requires),
//! and orders the columns by name as FOCUS exports do. Pure: batches in,
//! batches out; no I/O.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch, StringArray, TimestampNanosecondArray};
use arrow::datatypes::{DataType, Decimal128Type, Field, Schema, SchemaRef, TimeUnit};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Problems, Result};
use crate::money::format_scaled;
use crate::queries::rows::{FocusCost, decode};

/// The FOCUS version the export follows (README, "Outputs").
pub const FOCUS_VERSION: &str = "1.2";

const TAG_COLUMNS: [&str; 3] = ["dept", "project", "task"];

/// Columns written as exact decimal text (trailing zeros trimmed).
const EXACT: [&str; 5] = [
    "BilledCost",
    "EffectiveCost",
    "ListCost",
    "ListUnitPrice",
    "PricingQuantity",
];

/// `[focus]`: the billing accounts `focus_costs.csv` names (FOCUS 1.2's
/// mandatory `BillingAccountId` and `BillingAccountName`).
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawFocus {
    /// The account of providers without their own entry (default: the
    /// provider's name as both id and name).
    pub billing_account_id: Option<String>,
    pub billing_account_name: Option<String>,
    /// One entry per provider account: `provider`, `id`, `name`.
    #[serde(default)]
    pub accounts: Vec<RawFocusAccount>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawFocusAccount {
    pub provider: Option<String>,
    pub id: Option<String>,
    pub name: Option<String>,
}

/// The billing accounts named in the export: FOCUS 1.2's mandatory
/// `BillingAccountId` and `BillingAccountName`, per provider.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Accounts {
    /// The account of providers without their own entry.
    pub default: Option<(String, String)>,
    /// (id, name) by provider.
    pub by_provider: BTreeMap<String, (String, String)>,
}

impl Accounts {
    /// Validate `[focus]`, adding every problem to `p`.
    pub fn validate(raw: &RawFocus, p: &mut Problems) -> Accounts {
        fn text(v: &Option<String>) -> Option<&str> {
            v.as_deref().map(str::trim).filter(|s| !s.is_empty())
        }
        let default = match (
            text(&raw.billing_account_id),
            text(&raw.billing_account_name),
        ) {
            (Some(id), name) => Some((id.to_string(), name.unwrap_or(id).to_string())),
            (None, Some(_)) => {
                p.push("focus.billing_account_name: needs focus.billing_account_id");
                None
            }
            (None, None) => None,
        };
        let mut by_provider = BTreeMap::new();
        for (i, a) in raw.accounts.iter().enumerate() {
            let at = format!("focus.accounts[{i}]");
            match (text(&a.provider), text(&a.id)) {
                (Some(provider), Some(id)) => {
                    let name = text(&a.name).unwrap_or(id);
                    if by_provider
                        .insert(provider.to_string(), (id.to_string(), name.to_string()))
                        .is_some()
                    {
                        p.push(format!("{at}.provider: `{provider}` has two accounts"));
                    }
                }
                (None, _) => p.push(format!("{at}.provider: required")),
                (_, None) => p.push(format!("{at}.id: required")),
            }
        }
        Accounts {
            default,
            by_provider,
        }
    }

    /// (id, name) of `provider`'s account: its own entry, else the default,
    /// else the provider's name for both.
    pub fn of(&self, provider: &str) -> (String, String) {
        self.by_provider
            .get(provider)
            .or(self.default.as_ref())
            .cloned()
            .unwrap_or_else(|| (provider.to_string(), provider.to_string()))
    }
}

/// Exact decimal text: all the digits a value has, no trailing zeros.
fn exact_text(value: i128, scale: i8) -> String {
    let text = format_scaled(value, scale);
    if !text.contains('.') {
        return text;
    }
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}

fn internal(e: impl std::fmt::Display) -> Error {
    Error::Internal(format!("focus_costs: {e}"))
}

/// Complete the rows of `sql/focus_costs.sql` as FOCUS 1.2 rows: the billing
/// account of each row's provider, the billing period `[start, end)` (UTC
/// nanoseconds: the calendar month of the day in the report's zone, as
/// providers invoice), `ChargeClass` (null: no corrections), `ContractedCost`
/// (the list cost: no negotiated prices are known), `Tags`, exact decimals.
pub fn finish(
    schema: &SchemaRef,
    batches: &[RecordBatch],
    accounts: &Accounts,
    billing_period: (i64, i64),
) -> Result<(SchemaRef, Vec<RecordBatch>)> {
    let mut columns: BTreeMap<String, (Field, Vec<ArrayRef>)> = BTreeMap::new();
    let mut add = |name: &str, field: Field, arr: ArrayRef| {
        columns
            .entry(name.to_string())
            .or_insert_with(|| (field, Vec::new()))
            .1
            .push(arr);
    };
    let timestamp = || DataType::Timestamp(TimeUnit::Nanosecond, None);
    for b in batches {
        let typed: Vec<FocusCost> = decode(schema, std::slice::from_ref(b))?;
        let rows = b.num_rows();
        for (i, field) in schema.fields().iter().enumerate() {
            let name = field.name().as_str();
            if TAG_COLUMNS.contains(&name) {
                continue;
            }
            if EXACT.contains(&name) {
                let DataType::Decimal128(_, scale) = field.data_type() else {
                    return Err(internal(format!(
                        "{name} is {}, not a decimal",
                        field.data_type()
                    )));
                };
                let d = b.column(i).as_primitive::<Decimal128Type>();
                let text: StringArray = (0..rows)
                    .map(|r| (!d.is_null(r)).then(|| exact_text(d.value(r), *scale)))
                    .collect();
                add(name, Field::new(name, DataType::Utf8, true), Arc::new(text));
            } else {
                add(name, field.as_ref().clone(), Arc::clone(b.column(i)));
            }
        }
        // ContractedCost: the list cost, exactly.
        let contracted: StringArray = typed
            .iter()
            .map(|r| r.ListCost.map(|d| exact_text(d.value, d.scale)))
            .collect();
        add(
            "ContractedCost",
            Field::new("ContractedCost", DataType::Utf8, true),
            Arc::new(contracted),
        );
        let (ids, names): (Vec<String>, Vec<String>) =
            typed.iter().map(|r| accounts.of(&r.ProviderName)).unzip();
        add(
            "BillingAccountId",
            Field::new("BillingAccountId", DataType::Utf8, false),
            Arc::new(StringArray::from(ids)),
        );
        add(
            "BillingAccountName",
            Field::new("BillingAccountName", DataType::Utf8, false),
            Arc::new(StringArray::from(names)),
        );
        add(
            "BillingPeriodStart",
            Field::new("BillingPeriodStart", timestamp(), false),
            Arc::new(TimestampNanosecondArray::from(vec![billing_period.0; rows])),
        );
        add(
            "BillingPeriodEnd",
            Field::new("BillingPeriodEnd", timestamp(), false),
            Arc::new(TimestampNanosecondArray::from(vec![billing_period.1; rows])),
        );
        add(
            "ChargeClass",
            Field::new("ChargeClass", DataType::Utf8, true),
            Arc::new(StringArray::from(vec![None::<&str>; rows])),
        );
        add(
            "Tags",
            Field::new("Tags", DataType::Utf8, false),
            Arc::new(tags(&typed)),
        );
    }
    if batches.is_empty() {
        // No rows: the schema alone, from an empty batch.
        let empty = RecordBatch::new_empty(Arc::clone(schema));
        return finish(schema, &[empty], accounts, billing_period);
    }
    // Columns by name, as FOCUS exports list them.
    let fields: Vec<Field> = columns.values().map(|(f, _)| f.clone()).collect();
    let out_schema: SchemaRef = Arc::new(Schema::new(fields));
    let out = (0..batches.len())
        .map(|i| {
            let arrays: Vec<ArrayRef> = columns.values().map(|(_, a)| Arc::clone(&a[i])).collect();
            RecordBatch::try_new(Arc::clone(&out_schema), arrays).map_err(internal)
        })
        .collect::<Result<Vec<_>>>()?;
    Ok((out_schema, out))
}

/// The `Tags` JSON object of each row.
fn tags(rows: &[FocusCost]) -> StringArray {
    rows.iter()
        .map(|r| {
            let map: BTreeMap<&str, Option<&str>> = BTreeMap::from([
                ("dept", r.dept.as_deref()),
                ("project", r.project.as_deref()),
                ("task", r.task.as_deref()),
            ]);
            Some(serde_json::to_string(&map).expect("strings serialize"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_text_keeps_every_digit_and_no_trailing_zero() {
        assert_eq!(exact_text(125_000, 7), "0.0125");
        assert_eq!(exact_text(4_000, 3), "4");
        assert_eq!(exact_text(12_500_000_000_000_000, 23), "0.000000125");
        assert_eq!(exact_text(0, 6), "0");
        assert_eq!(exact_text(-1_500, 3), "-1.5");
    }

    #[test]
    fn accounts_fall_back_from_provider_to_default_to_the_provider_name() {
        let mut p = Problems::new();
        let raw = RawFocus {
            billing_account_id: Some("acct-1".into()),
            billing_account_name: None,
            accounts: vec![RawFocusAccount {
                provider: Some("openai".into()),
                id: Some("org-abc".into()),
                name: Some("Acme OpenAI".into()),
            }],
        };
        let a = Accounts::validate(&raw, &mut p);
        assert!(p.is_empty());
        assert_eq!(a.of("openai"), ("org-abc".into(), "Acme OpenAI".into()));
        assert_eq!(a.of("anthropic"), ("acct-1".into(), "acct-1".into()));
        assert_eq!(
            Accounts::default().of("mistral"),
            ("mistral".into(), "mistral".into())
        );
    }
}
