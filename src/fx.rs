//! FX rates (SPEC 1.3): `date, currency, usd_per_unit`, rate of a date = the
//! latest rate on or before it (weekends and holidays use the last business
//! day's rate). Validation reports every bad line at once. Pure logic: no I/O.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{ArrayRef, Decimal128Array, RecordBatch, StringViewArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use chrono::NaiveDate;
use rust_decimal::Decimal;
use serde::Serialize;

use crate::error::Problems;
use crate::money::{AMOUNT_SCALE, div_half_even, pow10};
use crate::tabular::{TextTable, parse_decimal};

/// Validated FX rates by currency and date.
#[derive(Clone, Debug, Default)]
pub struct FxTable {
    rates: BTreeMap<String, BTreeMap<NaiveDate, i128>>,
}

/// The rate chosen for one currency on the report date.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ChosenRate {
    pub currency: String,
    /// The date the rate was published for (on or before the report date).
    pub rate_date: NaiveDate,
    /// USD per unit, as a decimal string.
    pub usd_per_unit: String,
}

/// Normalize a currency code as logged (`usd`, ` EUR `) to ISO 4217 form.
pub fn normalize_currency(code: &str) -> String {
    code.trim().to_ascii_uppercase()
}

fn is_iso_code(code: &str) -> bool {
    code.len() == 3 && code.bytes().all(|b| b.is_ascii_uppercase())
}

/// Convert a rate to a scaled integer at [`AMOUNT_SCALE`] (12 decimals), half
/// to even beyond that: far finer than any published rate.
fn scaled_rate(d: Decimal) -> i128 {
    let s = d.scale();
    let m = d.mantissa();
    let target = AMOUNT_SCALE as u32;
    if s <= target {
        m * pow10(target - s)
    } else {
        div_half_even(m, pow10(s - target))
    }
}

/// A strict `YYYY-MM-DD` date (chrono alone also takes `2026-3-5`).
pub fn parse_iso_date(s: &str) -> Option<NaiveDate> {
    let s = s.trim();
    let shape = s.len() == 10 && s.as_bytes()[4] == b'-' && s.as_bytes()[7] == b'-';
    if !shape {
        return None;
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()
}

impl FxTable {
    pub fn parse(table: &TextTable) -> Result<FxTable, Problems> {
        let mut problems = Problems::new();
        let (Some(c_date), Some(c_cur), Some(c_rate)) = (
            table.column("date"),
            table.column("currency"),
            table.column("usd_per_unit"),
        ) else {
            problems.push(format!(
                "expected columns date, currency, usd_per_unit; found {}",
                table.headers().join(", ")
            ));
            return Err(problems);
        };
        let mut rates: BTreeMap<String, BTreeMap<NaiveDate, i128>> = BTreeMap::new();
        let mut seen: BTreeMap<(String, NaiveDate), String> = BTreeMap::new();
        for (label, cells) in &table.rows {
            let cell = |i: usize| cells.get(i).cloned().flatten().unwrap_or_default();
            let (date_s, cur_s, rate_s) = (cell(c_date), cell(c_cur), cell(c_rate));
            let date = parse_iso_date(&date_s);
            if date.is_none() {
                problems.push(format!("{label}: date `{date_s}` is not YYYY-MM-DD"));
            }
            let currency = normalize_currency(&cur_s);
            if !is_iso_code(&currency) {
                problems.push(format!(
                    "{label}: currency `{cur_s}` is not a 3-letter ISO 4217 code"
                ));
            }
            let rate = match parse_decimal(&rate_s) {
                Ok(r) if r > Decimal::ZERO => Some(r),
                Ok(_) => {
                    problems.push(format!("{label}: usd_per_unit `{rate_s}` must be > 0"));
                    None
                }
                Err(e) => {
                    problems.push(format!("{label}: usd_per_unit: {e}"));
                    None
                }
            };
            let (Some(date), Some(rate)) = (date, rate) else {
                continue;
            };
            if !is_iso_code(&currency) {
                continue;
            }
            if let Some(first) = seen.insert((currency.clone(), date), label.clone()) {
                problems.push(format!(
                    "{first} and {label}: two rates for {currency} on {date}"
                ));
                continue;
            }
            rates
                .entry(currency)
                .or_default()
                .insert(date, scaled_rate(rate));
        }
        if problems.is_empty() {
            Ok(FxTable { rates })
        } else {
            Err(problems)
        }
    }

    /// The rate of `currency` for `date`: the latest on or before it. USD is 1.
    pub fn rate(&self, currency: &str, date: NaiveDate) -> Option<(NaiveDate, i128)> {
        let currency = normalize_currency(currency);
        if currency == "USD" {
            return Some((date, pow10(AMOUNT_SCALE as u32)));
        }
        self.rates
            .get(&currency)?
            .range(..=date)
            .next_back()
            .map(|(d, r)| (*d, *r))
    }

    /// Rates for every known currency on `date`, as the `fx_rates` table
    /// (`currency`, `usd_per_unit` DECIMAL(38, 12)), USD included.
    pub fn rates_on(&self, date: NaiveDate) -> (RecordBatch, Vec<ChosenRate>) {
        let mut chosen = vec![ChosenRate {
            currency: "USD".into(),
            rate_date: date,
            usd_per_unit: "1".into(),
        }];
        let mut values = vec![pow10(AMOUNT_SCALE as u32)];
        for currency in self.rates.keys() {
            if currency == "USD" {
                continue;
            }
            if let Some((d, r)) = self.rate(currency, date) {
                chosen.push(ChosenRate {
                    currency: currency.clone(),
                    rate_date: d,
                    usd_per_unit: crate::money::format_scaled(r, AMOUNT_SCALE)
                        .trim_end_matches('0')
                        .trim_end_matches('.')
                        .to_string(),
                });
                values.push(r);
            }
        }
        let currencies =
            StringViewArray::from_iter_values(chosen.iter().map(|c| c.currency.as_str()));
        let rates = Decimal128Array::from(values)
            .with_precision_and_scale(38, AMOUNT_SCALE)
            .expect("valid decimal type");
        let batch = RecordBatch::try_new(
            fx_schema(),
            vec![
                Arc::new(currencies) as ArrayRef,
                Arc::new(rates) as ArrayRef,
            ],
        )
        .expect("fx columns match schema");
        (batch, chosen)
    }
}

pub fn fx_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("currency", DataType::Utf8View, false),
        Field::new(
            "usd_per_unit",
            DataType::Decimal128(38, AMOUNT_SCALE),
            false,
        ),
    ]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fx(csv: &str) -> Result<FxTable, Problems> {
        FxTable::parse(&TextTable::from_csv(csv.as_bytes()).unwrap())
    }

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    #[test]
    fn weekend_uses_the_latest_earlier_rate() {
        let t = fx("date,currency,usd_per_unit\n2026-03-05,EUR,1.08\n2026-03-06,eur,1.09\n2026-03-09,EUR,1.10\n").unwrap();
        // Sunday 2026-03-08 -> Friday 2026-03-06
        let (date, rate) = t.rate("EUR", d("2026-03-08")).unwrap();
        assert_eq!(date, d("2026-03-06"));
        assert_eq!(rate, 1_090_000_000_000);
        assert_eq!(t.rate("EUR", d("2026-03-04")), None);
        assert_eq!(t.rate("usd", d("2000-01-01")).unwrap().1, 1_000_000_000_000);
        assert_eq!(t.rate("GBP", d("2026-03-08")), None);
        let (batch, chosen) = t.rates_on(d("2026-03-08"));
        assert_eq!(batch.num_rows(), 2);
        assert_eq!(chosen[1].usd_per_unit, "1.09");
    }

    #[test]
    fn bad_lines_are_all_reported() {
        let err = fx("date,currency,usd_per_unit\n2026-3-5,EUR,1\n2026-03-05,EURO,1\n2026-03-05,GBP,-1\n2026-03-05,JPY,x\n2026-03-06,CHF,1.1\n2026-03-06,CHF,1.2\n")
            .unwrap_err();
        let all = err.to_string();
        assert!(
            all.contains("line 2: date `2026-3-5` is not YYYY-MM-DD"),
            "{all}"
        );
        assert!(all.contains("line 3: currency `EURO`"), "{all}");
        assert!(
            all.contains("line 4: usd_per_unit `-1` must be > 0"),
            "{all}"
        );
        assert!(
            all.contains("line 5: usd_per_unit: `x` is not a decimal number"),
            "{all}"
        );
        assert!(
            all.contains("line 6 and line 7: two rates for CHF on 2026-03-06"),
            "{all}"
        );
        assert!(
            fx("day,cur,rate\n")
                .unwrap_err()
                .to_string()
                .contains("expected columns date, currency, usd_per_unit")
        );
    }

    #[test]
    fn long_rates_round_half_even_at_12_decimals() {
        let t = fx("date,currency,usd_per_unit\n2026-01-01,JPY,0.0066666666666665\n").unwrap();
        assert_eq!(t.rate("JPY", d("2026-01-01")).unwrap().1, 6_666_666_667);
    }
}
