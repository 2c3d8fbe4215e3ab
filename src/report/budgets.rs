//! `budgets.csv`: one row per budget on the day (the columns the issue
//! names, then what a reader needs to trust the forecast: unpriced
//! requests left out of the actual, days elapsed, the basis of the
//! interval and a note). Laid out only; the figures are `crate::budget`'s.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, Date32Array, Decimal128Array, Float64Array, Int64Array, RecordBatch, StringArray,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use chrono::NaiveDate;

use crate::budget::{Row, forecast::Basis};
use crate::money::OUT_SCALE;

/// `budgets.csv`'s columns.
pub fn schema() -> SchemaRef {
    let money = |n: &str| Field::new(n, DataType::Decimal128(38, OUT_SCALE), false);
    Arc::new(Schema::new(vec![
        Field::new("date", DataType::Date32, false),
        Field::new("name", DataType::Utf8, false),
        Field::new("dept", DataType::Utf8, true),
        Field::new("project", DataType::Utf8, true),
        Field::new("provider", DataType::Utf8, true),
        Field::new("model", DataType::Utf8, true),
        Field::new("month", DataType::Utf8, false),
        money("budget_usd"),
        money("mtd_actual_usd"),
        money("forecast_usd"),
        money("forecast_low_usd"),
        money("forecast_high_usd"),
        Field::new("forecast_share", DataType::Float64, false),
        Field::new("status", DataType::Utf8, false),
        Field::new("mtd_unpriced_requests", DataType::Int64, false),
        Field::new("days_elapsed", DataType::Int64, false),
        Field::new("days_in_month", DataType::Int64, false),
        Field::new("interval_basis", DataType::Utf8, false),
        Field::new("note", DataType::Utf8, false),
    ]))
}

/// `backtests:21`, `wide`, `no_spend`.
pub fn basis_name(b: &Basis) -> String {
    match b {
        Basis::Backtests(n) => format!("backtests:{n}"),
        Basis::Wide { .. } => "wide".into(),
        Basis::NoSpend => "no_spend".into(),
    }
}

/// The rows as one batch of [`schema`].
pub fn batch(date: NaiveDate, rows: &[Row]) -> RecordBatch {
    let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).expect("valid date");
    let day = (date - epoch).num_days() as i32;
    let text = |f: fn(&Row) -> String| -> ArrayRef {
        Arc::new(StringArray::from_iter_values(rows.iter().map(f)))
    };
    let scope = |f: fn(&Row) -> Option<String>| -> ArrayRef {
        Arc::new(StringArray::from_iter(rows.iter().map(f)))
    };
    let money = |f: fn(&Row) -> i128| -> ArrayRef {
        Arc::new(
            Decimal128Array::from_iter_values(rows.iter().map(f))
                .with_precision_and_scale(38, OUT_SCALE)
                .expect("valid decimal type"),
        )
    };
    let int = |f: fn(&Row) -> i64| -> ArrayRef {
        Arc::new(Int64Array::from_iter_values(rows.iter().map(f)))
    };
    let cols: Vec<ArrayRef> = vec![
        Arc::new(Date32Array::from(vec![day; rows.len()])),
        text(|r| r.name.clone()),
        scope(|r| r.scope.dept.clone()),
        scope(|r| r.scope.project.clone()),
        scope(|r| r.scope.provider.clone()),
        scope(|r| r.scope.model.clone()),
        text(|r| r.month.clone()),
        money(|r| r.budget),
        money(|r| r.mtd_actual),
        money(|r| r.forecast),
        money(|r| r.forecast_low),
        money(|r| r.forecast_high),
        Arc::new(Float64Array::from_iter_values(
            rows.iter().map(Row::forecast_share),
        )),
        text(|r| r.status.name().to_string()),
        int(|r| r.mtd_unpriced_requests),
        int(|r| i64::from(r.days_elapsed)),
        int(|r| i64::from(r.days_in_month)),
        text(|r| basis_name(&r.basis)),
        text(Row::note),
    ];
    RecordBatch::try_new(schema(), cols).expect("columns match schema")
}

/// A crossed threshold in words, for letters and alert records:
/// `research: month-to-date spend $1,230.00 reached 80% of the 2026-12
/// budget of $1,500.00`.
pub fn alert_line(c: &crate::budget::Crossing) -> String {
    use crate::budget::Crossed;
    let money = |v: i128| super::format::usd(v, OUT_SCALE);
    let pct = (c.share * rust_decimal::Decimal::ONE_HUNDRED).normalize();
    match c.crossed {
        Crossed::Actual => format!(
            "{}: month-to-date spend {} reached {pct}% of the {} budget of {}",
            c.budget,
            money(c.value_micros),
            c.month,
            money(c.budget_micros)
        ),
        Crossed::Forecast => format!(
            "{}: month-end forecast {} is over the {} budget of {}",
            c.budget,
            money(c.value_micros),
            c.month,
            money(c.budget_micros)
        ),
    }
}
