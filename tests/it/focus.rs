//! `focus_costs.csv` against the FinOps FOCUS 1.2 column rules: a validator
//! written from the specification (which columns are mandatory, their
//! types, nullability and allowed values, and the cost identities), run on
//! the fixture day's export; and shown to fail on files that break a rule.

use std::collections::BTreeMap;

use rust_decimal::Decimal;

use crate::fixture::{self, report};
use crate::metrics::run_fixture;

/// How a FOCUS column's values are written.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Type {
    Decimal,
    DateTime,
    Text,
    Json,
}

/// FOCUS 1.2 columns this export carries: (name, type, mandatory, nullable).
/// Mandatory ones must be present; the conditional ones must follow their
/// rules when present.
const COLUMNS: &[(&str, Type, bool, bool)] = &[
    ("BilledCost", Type::Decimal, true, false),
    ("BillingAccountId", Type::Text, true, false),
    ("BillingAccountName", Type::Text, true, true),
    ("BillingCurrency", Type::Text, true, false),
    ("BillingPeriodEnd", Type::DateTime, true, false),
    ("BillingPeriodStart", Type::DateTime, true, false),
    ("ChargeCategory", Type::Text, true, false),
    ("ChargeClass", Type::Text, true, true),
    ("ChargeDescription", Type::Text, true, true),
    ("ChargeFrequency", Type::Text, false, false),
    ("ChargePeriodEnd", Type::DateTime, true, false),
    ("ChargePeriodStart", Type::DateTime, true, false),
    ("ConsumedQuantity", Type::Decimal, false, true),
    ("ConsumedUnit", Type::Text, false, true),
    ("ContractedCost", Type::Decimal, true, false),
    ("EffectiveCost", Type::Decimal, true, false),
    ("InvoiceIssuerName", Type::Text, true, false),
    ("ListCost", Type::Decimal, true, false),
    ("ListUnitPrice", Type::Decimal, false, true),
    ("PricingQuantity", Type::Decimal, true, true),
    ("PricingUnit", Type::Text, true, true),
    ("ProviderName", Type::Text, true, false),
    ("PublisherName", Type::Text, true, false),
    ("ServiceCategory", Type::Text, true, false),
    ("ServiceName", Type::Text, true, false),
    ("SkuId", Type::Text, false, true),
    ("SkuMeter", Type::Text, false, true),
    ("SkuPriceId", Type::Text, false, true),
    ("Tags", Type::Json, false, true),
];

const CHARGE_CATEGORIES: [&str; 5] = ["Usage", "Purchase", "Tax", "Credit", "Adjustment"];
const CHARGE_FREQUENCIES: [&str; 3] = ["One-Time", "Recurring", "Usage-Based"];
const SERVICE_CATEGORIES: [&str; 19] = [
    "AI and Machine Learning",
    "Analytics",
    "Business Applications",
    "Compute",
    "Databases",
    "Developer Tools",
    "Multicloud",
    "Identity",
    "Integration",
    "Internet of Things",
    "Management and Governance",
    "Media",
    "Migration",
    "Mobile",
    "Networking",
    "Security",
    "Storage",
    "Web",
    "Other",
];

/// FOCUS date-times: ISO 8601 in UTC, `YYYY-MM-DDTHH:mm:ssZ`.
fn datetime(s: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%SZ")
        .ok()
        .map(|t| t.and_utc())
}

/// FOCUS decimals: digits, one optional `.`, an optional leading `-`; no
/// exponent, no thousands separators, no currency symbol.
fn decimal(s: &str) -> Option<Decimal> {
    let body = s.strip_prefix('-').unwrap_or(s);
    let ok = !body.is_empty()
        && body.chars().all(|c| c.is_ascii_digit() || c == '.')
        && body.matches('.').count() <= 1
        && !body.starts_with('.')
        && !body.ends_with('.');
    ok.then(|| s.parse().ok()).flatten()
}

/// Every rule this validator knows that `csv` breaks, each naming the line
/// and column.
fn validate(csv: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let mut reader = csv::Reader::from_reader(csv.as_bytes());
    let headers: Vec<String> = reader.headers().unwrap().iter().map(String::from).collect();
    for (name, _, mandatory, _) in COLUMNS {
        if *mandatory && !headers.iter().any(|h| h == name) {
            problems.push(format!("mandatory column {name} is missing"));
        }
    }
    for (i, record) in reader.records().enumerate() {
        let line = i + 2;
        let record = record.unwrap();
        let row: BTreeMap<&str, &str> = headers
            .iter()
            .map(String::as_str)
            .zip(record.iter())
            .collect();
        let get = |name: &str| row.get(name).copied().filter(|v| !v.is_empty());
        for (name, ty, _, nullable) in COLUMNS {
            if !row.contains_key(name) {
                continue;
            }
            let Some(v) = get(name) else {
                if !nullable {
                    problems.push(format!("line {line}: {name} is null"));
                }
                continue;
            };
            let ok = match ty {
                Type::Decimal => decimal(v).is_some(),
                Type::DateTime => datetime(v).is_some(),
                Type::Text => true,
                Type::Json => serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(v)
                    .is_ok_and(|m| m.values().all(|x| x.is_string() || x.is_null())),
            };
            if !ok {
                problems.push(format!(
                    "line {line}: {name} `{v}` is not a {ty:?} as FOCUS writes it"
                ));
            }
        }
        let allowed = |name: &str, values: &[&str], problems: &mut Vec<String>| {
            if let Some(v) = get(name)
                && !values.contains(&v)
            {
                problems.push(format!(
                    "line {line}: {name} `{v}` is not one of {values:?}"
                ));
            }
        };
        allowed("ChargeCategory", &CHARGE_CATEGORIES, &mut problems);
        allowed("ChargeClass", &["Correction"], &mut problems);
        allowed("ChargeFrequency", &CHARGE_FREQUENCIES, &mut problems);
        allowed("ServiceCategory", &SERVICE_CATEGORIES, &mut problems);
        if let Some(c) = get("BillingCurrency")
            && !(c.len() == 3 && c.chars().all(|x| x.is_ascii_uppercase()))
        {
            problems.push(format!(
                "line {line}: BillingCurrency `{c}` is not ISO 4217"
            ));
        }
        // Periods: start before end; the charge inside the billing period.
        let t = |name: &str| get(name).and_then(datetime);
        if let (Some(cs), Some(ce), Some(bs), Some(be)) = (
            t("ChargePeriodStart"),
            t("ChargePeriodEnd"),
            t("BillingPeriodStart"),
            t("BillingPeriodEnd"),
        ) {
            if cs >= ce || bs >= be {
                problems.push(format!(
                    "line {line}: a period does not start before it ends"
                ));
            }
            if cs < bs || ce > be {
                problems.push(format!(
                    "line {line}: the charge period lies outside the billing period"
                ));
            }
        }
        // Cost identities (no commitments or negotiated prices here).
        let d = |name: &str| get(name).and_then(decimal);
        if let (Some(unit), Some(qty), Some(list)) =
            (d("ListUnitPrice"), d("PricingQuantity"), d("ListCost"))
            && unit * qty != list
        {
            problems.push(format!(
                "line {line}: ListUnitPrice x PricingQuantity = {} but ListCost = {list}",
                unit * qty
            ));
        }
        if let (Some(billed), Some(effective)) = (d("BilledCost"), d("EffectiveCost"))
            && get("ChargeCategory") == Some("Usage")
            && billed != effective
        {
            problems.push(format!(
                "line {line}: a usage row without commitments has EffectiveCost {effective} != BilledCost {billed}"
            ));
        }
        if let (Some(contracted), Some(list)) = (d("ContractedCost"), d("ListCost"))
            && contracted > list
        {
            problems.push(format!(
                "line {line}: ContractedCost {contracted} exceeds ListCost {list}"
            ));
        }
        // Usage rows carry what was consumed.
        if get("ChargeCategory") == Some("Usage") && get("ChargeClass").is_none() {
            for name in [
                "ConsumedQuantity",
                "ConsumedUnit",
                "PricingQuantity",
                "PricingUnit",
            ] {
                if row.contains_key(name) && get(name).is_none() {
                    problems.push(format!("line {line}: {name} is null on a usage row"));
                }
            }
        }
        if get("SkuPriceId").is_some() && get("SkuId").is_none() {
            problems.push(format!("line {line}: SkuPriceId without SkuId"));
        }
    }
    problems
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_focus_export_meets_the_focus_1_2_column_rules() {
    let lake = fixture::lake();
    run_fixture(lake.path(), None).await;
    let csv = report(lake.path(), "focus_costs.csv");
    let problems = validate(&csv);
    assert!(problems.is_empty(), "{problems:#?}");
    let rows = csv.lines().count() - 1;
    assert_eq!(rows, 19);
    // The default accounts (no [focus] section): the provider's name; the
    // billing period: March 2026 in UTC.
    let first = csv.lines().nth(1).unwrap();
    assert!(
        first.contains(",anthropic,anthropic,USD,2026-04-01T00:00:00Z,2026-03-01T00:00:00Z,"),
        "{first}"
    );
}

#[test]
fn the_validator_fails_on_files_that_break_a_rule() {
    let good = "\
BilledCost,BillingAccountId,BillingAccountName,BillingCurrency,BillingPeriodEnd,BillingPeriodStart,ChargeCategory,ChargeClass,ChargeDescription,ChargePeriodEnd,ChargePeriodStart,ConsumedQuantity,ConsumedUnit,ContractedCost,EffectiveCost,InvoiceIssuerName,ListCost,ListUnitPrice,PricingQuantity,PricingUnit,ProviderName,PublisherName,ServiceCategory,ServiceName,Tags
0.0000125,org-1,Acme,USD,2026-04-01T00:00:00Z,2026-03-01T00:00:00Z,Usage,,gpt-4o input,2026-03-09T00:00:00Z,2026-03-08T00:00:00Z,5,Tokens,0.0000125,0.0000125,openai,0.0000125,0.0025,0.005,1K Tokens,openai,openai,AI and Machine Learning,LLM Inference,{}
";
    assert_eq!(validate(good), Vec::<String>::new());
    // What the export wrote before: ListCost rounded to 6 decimals.
    let rounded = good.replace(",0.0000125,0.0025,", ",0.000012,0.0025,");
    assert!(
        validate(&rounded)
            .iter()
            .any(|p| p
                .contains("ListUnitPrice x PricingQuantity = 0.0000125 but ListCost = 0.000012")),
        "{:?}",
        validate(&rounded)
    );
    // A mandatory column missing, a value outside its list, a date that is
    // not FOCUS's format, a null where none is allowed, a charge outside its
    // billing period.
    let no_account = good
        .replace("BillingAccountId,", "")
        .replace(",org-1,", ",");
    assert!(
        validate(&no_account).contains(&"mandatory column BillingAccountId is missing".to_string())
    );
    assert!(
        validate(&good.replace(",Usage,", ",Use,"))
            .iter()
            .any(|p| p.contains("ChargeCategory `Use`"))
    );
    assert!(
        validate(&good.replace("2026-03-08T00:00:00Z", "2026-03-08 00:00:00"))
            .iter()
            .any(|p| p.contains("ChargePeriodStart `2026-03-08 00:00:00` is not a DateTime"))
    );
    assert!(
        validate(&good.replace(",org-1,", ",,"))
            .iter()
            .any(|p| p.contains("BillingAccountId is null"))
    );
    assert!(
        validate(&good.replace("2026-04-01T00:00:00Z", "2026-03-05T00:00:00Z"))
            .iter()
            .any(|p| p.contains("outside the billing period"))
    );
    assert!(
        validate(&good.replace(",{}", ",[1]"))
            .iter()
            .any(|p| p.contains("Tags"))
    );
}
