//! `anomalies.csv`: the day's anomalies as a table (SPEC 3's columns, then
//! `change_pct`, `impact_usd` and `causes`), formatted as the CSVs print
//! them. Detection is `crate::anomaly`'s; this file only lays the result out.

use std::sync::Arc;

use arrow::array::{ArrayRef, Date32Array, Float64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use chrono::NaiveDate;

use crate::anomaly::{Anomaly, causes_text};
use crate::money::{OUT_SCALE, PRICE_SCALE, format_scaled, rescale};

/// `anomalies.csv`: SPEC 3's columns, then `change_pct`, `impact_usd` and `causes`.
pub fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("date", DataType::Date32, false),
        Field::new("dimension", DataType::Utf8, false),
        Field::new("key", DataType::Utf8, false),
        Field::new("metric", DataType::Utf8, false),
        // Text: money (cost_usd) exact to 6 decimals, other metrics as reals.
        Field::new("value", DataType::Utf8, false),
        Field::new("baseline", DataType::Utf8, false),
        Field::new("score", DataType::Float64, false),
        Field::new("severity", DataType::Utf8, false),
        Field::new("likely_cause", DataType::Utf8, false),
        Field::new("change_pct", DataType::Float64, true),
        Field::new("impact_usd", DataType::Decimal128(38, OUT_SCALE), false),
        Field::new("causes", DataType::Utf8, false),
    ]))
}

/// The anomalies as one batch of [`schema`].
pub fn batch(date: NaiveDate, anomalies: &[Anomaly]) -> RecordBatch {
    let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).expect("valid date");
    let day = (date - epoch).num_days() as i32;
    let show = |a: &Anomaly, baseline: bool| match a.exact {
        Some((v, b)) => format_scaled(
            rescale(if baseline { b } else { v }, PRICE_SCALE, OUT_SCALE),
            OUT_SCALE,
        ),
        None => super::format_real(if baseline { a.baseline } else { a.value }),
    };
    let cols: Vec<ArrayRef> = vec![
        Arc::new(Date32Array::from(vec![day; anomalies.len()])),
        Arc::new(StringArray::from_iter_values(
            anomalies.iter().map(|a| a.level),
        )),
        Arc::new(StringArray::from_iter_values(
            anomalies.iter().map(|a| a.key.as_str()),
        )),
        Arc::new(StringArray::from_iter_values(
            anomalies.iter().map(|a| a.metric.name()),
        )),
        Arc::new(StringArray::from_iter_values(
            anomalies.iter().map(|a| show(a, false)),
        )),
        Arc::new(StringArray::from_iter_values(
            anomalies.iter().map(|a| show(a, true)),
        )),
        Arc::new(Float64Array::from_iter_values(
            anomalies.iter().map(|a| (a.score * 100.0).round() / 100.0),
        )),
        Arc::new(StringArray::from_iter_values(
            anomalies.iter().map(|a| a.severity.name()),
        )),
        Arc::new(StringArray::from_iter_values(
            anomalies.iter().map(|a| a.likely_cause.name()),
        )),
        Arc::new(Float64Array::from_iter(
            anomalies
                .iter()
                .map(|a| a.change.map(|c| (c * 10000.0).round() / 100.0)),
        )),
        Arc::new(
            arrow::array::Decimal128Array::from_iter_values(anomalies.iter().map(|a| a.impact_usd))
                .with_precision_and_scale(38, OUT_SCALE)
                .expect("valid decimal type"),
        ),
        Arc::new(StringArray::from_iter_values(
            anomalies.iter().map(|a| causes_text(&a.causes)),
        )),
    ];
    RecordBatch::try_new(schema(), cols).expect("columns match schema")
}
