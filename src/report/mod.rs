//! Rendering results to bytes: CSV exports and Parquet rollups (here), the
//! report model ([`model`]), charts ([`charts`]), and the HTML dashboards and
//! mail bodies ([`html`]), with numbers formatted for people ([`format`]).
//!
//! CSV follows SPEC 2 "Number formats" and SPEC 3: decimals printed exactly as
//! the queries rounded them (money: 6 decimals, half to even, done in SQL),
//! other reals as the shortest text that reads back to the same binary value
//! (at least 6 significant digits, never an exponent), `.` as the decimal
//! point, no thousands separators, null as an empty cell, timestamps RFC 3339
//! in UTC, and every text cell that a spreadsheet would take for a formula
//! prefixed with `'`. Same batches in, same bytes out. Pure: no I/O.

pub mod alerts;
pub mod anomalies;
pub mod budgets;
pub mod charts;
pub mod focus;
pub mod format;
pub mod html;
pub mod model;

use std::sync::Arc;

use arrow::array::{Array, AsArray};
use arrow::datatypes::{DataType, Decimal128Type, Float32Type, Float64Type, SchemaRef, TimeUnit};
use arrow::record_batch::RecordBatch;
use chrono::{DateTime, NaiveDate};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;

use crate::error::{Error, Result};

/// Whether text looks like a number (`-5`, `+1.5e3`, `.5`): such cells are
/// not formulas and keep their sign.
fn is_number(s: &str) -> bool {
    let t = s.strip_prefix(['+', '-']).unwrap_or(s);
    let (mantissa, exponent) = match t.find(['e', 'E']) {
        Some(i) => (&t[..i], Some(&t[i + 1..])),
        None => (t, None),
    };
    let mut parts = mantissa.splitn(2, '.');
    let int = parts.next().unwrap_or("");
    let frac = parts.next();
    let digits = |x: &str| x.bytes().all(|b| b.is_ascii_digit());
    let mantissa_ok = digits(int)
        && frac.is_none_or(digits)
        && (!int.is_empty() || frac.is_some_and(|f| !f.is_empty()));
    let exponent_ok = exponent.is_none_or(|e| {
        let e = e.strip_prefix(['+', '-']).unwrap_or(e);
        !e.is_empty() && digits(e)
    });
    mantissa_ok && exponent_ok
}

/// OWASP's CSV-injection rule (SPEC 3): a text cell starting with `=`, `+`,
/// `-`, `@`, tab or CR that is not a number gets a leading `'`.
pub fn guard_formula(s: &str) -> std::borrow::Cow<'_, str> {
    let risky = s.starts_with(['=', '+', '-', '@', '\t', '\r']);
    if risky && !is_number(s) {
        std::borrow::Cow::Owned(format!("'{s}"))
    } else {
        std::borrow::Cow::Borrowed(s)
    }
}

/// Significant digits of reals in CSV (SPEC: at least 6).
pub const REAL_DIGITS: i32 = 12;

/// A real with [`REAL_DIGITS`] significant digits, plain notation (never an
/// exponent), trailing zeros trimmed: enough for any rate or latency, and
/// free of binary noise such as `16087.000000000007`.
pub fn format_real(v: f64) -> String {
    if !v.is_finite() {
        return String::new();
    }
    if v == 0.0 {
        return "0".into();
    }
    let magnitude = v.abs().log10().floor() as i32;
    let decimals = (REAL_DIGITS - 1 - magnitude).max(0) as usize;
    let text = format!("{v:.decimals$}");
    let text = if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        text
    };
    if text == "-0" { "0".into() } else { text }
}

/// An instant as the CSVs write it (RFC 3339, UTC, as many fraction digits as it has).
pub fn format_timestamp(nanos: i64) -> String {
    let t = DateTime::from_timestamp_nanos(nanos);
    t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
}

/// Every cell of a column as the CSV outputs write it.
pub fn csv_cells(col: &dyn Array) -> Result<Vec<String>> {
    (0..col.len()).map(|i| cell(col, i)).collect()
}

/// The text of one cell.
fn cell(col: &dyn Array, row: usize) -> Result<String> {
    if col.is_null(row) {
        return Ok(String::new());
    }
    Ok(match col.data_type() {
        DataType::Utf8 => guard_formula(col.as_string::<i32>().value(row)).into_owned(),
        DataType::LargeUtf8 => guard_formula(col.as_string::<i64>().value(row)).into_owned(),
        DataType::Utf8View => guard_formula(col.as_string_view().value(row)).into_owned(),
        DataType::Boolean => col.as_boolean().value(row).to_string(),
        DataType::Float64 => format_real(col.as_primitive::<Float64Type>().value(row)),
        DataType::Float32 => format_real(col.as_primitive::<Float32Type>().value(row) as f64),
        DataType::Decimal128(_, scale) => {
            crate::money::format_scaled(col.as_primitive::<Decimal128Type>().value(row), *scale)
        }
        DataType::Date32 => {
            let days = col
                .as_primitive::<arrow::datatypes::Date32Type>()
                .value(row);
            let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).expect("valid date");
            (epoch + chrono::Days::new(days as u64))
                .format("%Y-%m-%d")
                .to_string()
        }
        DataType::Timestamp(TimeUnit::Nanosecond, _) => format_timestamp(
            col.as_primitive::<arrow::datatypes::TimestampNanosecondType>()
                .value(row),
        ),
        dt if dt.is_integer() => {
            let a = arrow::compute::cast(&col.slice(row, 1), &DataType::Int64)
                .map_err(|e| Error::Internal(format!("CSV cell of type {dt}: {e}")))?;
            a.as_primitive::<arrow::datatypes::Int64Type>()
                .value(0)
                .to_string()
        }
        other => return Err(Error::Internal(format!("no CSV format for type {other}"))),
    })
}

/// Render batches as CSV with a header row.
pub fn csv_bytes(schema: &SchemaRef, batches: &[RecordBatch]) -> Result<Vec<u8>> {
    let mut w = csv::WriterBuilder::new()
        .terminator(csv::Terminator::Any(b'\n'))
        .from_writer(Vec::new());
    let csv_err = |e: csv::Error| Error::Internal(format!("writing CSV: {e}"));
    w.write_record(schema.fields().iter().map(|f| f.name().as_str()))
        .map_err(csv_err)?;
    let mut record = Vec::with_capacity(schema.fields().len());
    for batch in batches {
        for row in 0..batch.num_rows() {
            record.clear();
            for col in batch.columns() {
                record.push(cell(col.as_ref(), row)?);
            }
            w.write_record(&record).map_err(csv_err)?;
        }
    }
    w.into_inner()
        .map_err(|e| Error::Internal(format!("writing CSV: {e}")))
}

/// Render batches as a Parquet file (zstd), byte-identical for the same input.
pub fn parquet_bytes(schema: &SchemaRef, batches: &[RecordBatch]) -> Result<Vec<u8>> {
    parquet_bytes_with(schema, batches, &[])
}

/// [`parquet_bytes`] with key-value metadata in the footer (e.g. the zone a
/// rollup's day was cut in).
pub fn parquet_bytes_with(
    schema: &SchemaRef,
    batches: &[RecordBatch],
    key_values: &[(&str, &str)],
) -> Result<Vec<u8>> {
    let kv: Vec<parquet::file::metadata::KeyValue> = key_values
        .iter()
        .map(|(k, v)| parquet::file::metadata::KeyValue::new(k.to_string(), v.to_string()))
        .collect();
    let props = WriterProperties::builder()
        .set_key_value_metadata((!kv.is_empty()).then_some(kv))
        .set_compression(Compression::ZSTD(
            ZstdLevel::try_new(3).expect("valid level"),
        ))
        .set_created_by(format!("tokenledger {}", env!("CARGO_PKG_VERSION")))
        .build();
    let mut buf = Vec::new();
    let mut writer = ArrowWriter::try_new(&mut buf, Arc::clone(schema), Some(props))
        .map_err(|e| Error::Internal(format!("writing Parquet: {e}")))?;
    for b in batches {
        writer
            .write(b)
            .map_err(|e| Error::Internal(format!("writing Parquet: {e}")))?;
    }
    writer
        .close()
        .map_err(|e| Error::Internal(format!("writing Parquet: {e}")))?;
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Decimal128Array, Float64Array, Int64Array, StringArray};
    use arrow::datatypes::{Field, Schema};

    #[test]
    fn formulas_are_defused_numbers_are_not() {
        for (input, out) in [
            ("=HYPERLINK(\"x\")", "'=HYPERLINK(\"x\")"),
            ("+cmd", "'+cmd"),
            ("-2+3", "'-2+3"),
            ("@SUM(A1)", "'@SUM(A1)"),
            ("\tx", "'\tx"),
            ("\rx", "'\rx"),
            ("-5", "-5"),
            ("+1.5e3", "+1.5e3"),
            ("-.5", "-.5"),
            ("-", "'-"),
            ("-e5", "'-e5"),
            ("research", "research"),
            ("a=b", "a=b"),
        ] {
            assert_eq!(guard_formula(input), out, "{input:?}");
        }
    }

    #[test]
    fn reals_have_12_significant_digits_without_exponents() {
        assert_eq!(format_real(0.1), "0.1");
        assert_eq!(format_real(1.0 / 3.0), "0.333333333333");
        assert_eq!(format_real(16087.000000000007), "16087");
        assert_eq!(format_real(0.01119724375538329), "0.0111972437554");
        assert_eq!(format_real(-2.5), "-2.5");
        assert_eq!(format_real(1e-7), "0.0000001");
        assert_eq!(format_real(1e-9), "0.000000001");
        assert_eq!(format_real(2.5e21), "2500000000000000000000");
        assert_eq!(format_real(-0.0), "0");
        assert_eq!(format_real(f64::NAN), "");
    }

    #[test]
    fn csv_cells_by_type() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("name", DataType::Utf8, true),
            Field::new("n", DataType::Int64, true),
            Field::new("usd", DataType::Decimal128(38, 6), true),
            Field::new("rate", DataType::Float64, true),
        ]));
        let batch = RecordBatch::try_new(
            Arc::clone(&schema),
            vec![
                Arc::new(StringArray::from(vec![Some("=1+1"), Some("a,b\nc"), None])),
                Arc::new(Int64Array::from(vec![Some(1), None, Some(-3)])),
                Arc::new(
                    Decimal128Array::from(vec![Some(1_500_000), Some(-5), None])
                        .with_precision_and_scale(38, 6)
                        .unwrap(),
                ),
                Arc::new(Float64Array::from(vec![Some(0.25), None, Some(1e-9)])),
            ],
        )
        .unwrap();
        let text = String::from_utf8(csv_bytes(&schema, &[batch]).unwrap()).unwrap();
        assert_eq!(
            text,
            "name,n,usd,rate\n'=1+1,1,1.500000,0.25\n\"a,b\nc\",,-0.000005,\n,-3,,0.000000001\n"
        );
    }
}
