//! Small tabular inputs (price tables, FX tables) read whole into text cells.
//!
//! Price and FX tables are thousands of rows, validated row by row with errors
//! that name the line. Reading them as text (CSV as written; Parquet through
//! Arrow's display of each value, which is exact for decimals) lets one
//! validator serve both formats. Pure: bytes in, cells out; no I/O.

use std::collections::HashMap;

use arrow::util::display::{ArrayFormatter, FormatOptions};
use bytes::Bytes;
use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};

/// A table of optional text cells with named columns.
#[derive(Debug, Clone)]
pub struct TextTable {
    headers: Vec<String>,
    index: HashMap<String, usize>,
    /// (label for messages, cells) per data row.
    pub rows: Vec<(String, Vec<Option<String>>)>,
}

impl TextTable {
    fn new(headers: Vec<String>, rows: Vec<(String, Vec<Option<String>>)>) -> Self {
        let index = headers
            .iter()
            .enumerate()
            .map(|(i, h)| (h.trim().to_ascii_lowercase(), i))
            .collect();
        TextTable {
            headers,
            index,
            rows,
        }
    }

    /// Read CSV (header row first). Empty cells are `None`.
    pub fn from_csv(bytes: &[u8]) -> Result<Self, String> {
        let mut reader = csv::ReaderBuilder::new()
            .flexible(false)
            .trim(csv::Trim::All)
            .from_reader(bytes);
        let headers: Vec<String> = reader
            .headers()
            .map_err(|e| format!("cannot read the header row: {e}"))?
            .iter()
            .map(|h| h.trim_start_matches('\u{feff}').to_string())
            .collect();
        let mut rows = Vec::new();
        for (i, rec) in reader.records().enumerate() {
            // Line numbers as a spreadsheet shows them: the header is line 1.
            let rec = rec.map_err(|e| format!("line {}: {e}", i + 2))?;
            // With CRLF endings a record's position sits on the previous
            // line's `\n`: count from the byte after it.
            let line = rec
                .position()
                .map(|p| p.line() + u64::from(bytes.get(p.byte() as usize) == Some(&b'\n')))
                .unwrap_or(i as u64 + 2);
            let cells = rec
                .iter()
                .map(|c| {
                    if c.is_empty() {
                        None
                    } else {
                        Some(c.to_string())
                    }
                })
                .collect();
            rows.push((format!("line {line}"), cells));
        }
        Ok(TextTable::new(headers, rows))
    }

    /// Read a Parquet file; each value as Arrow displays it.
    pub fn from_parquet(bytes: Bytes) -> Result<Self, String> {
        let builder = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(bytes)
            .map_err(|e| format!("not a readable Parquet file: {e}"))?;
        let headers: Vec<String> = builder
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        let reader = builder.build().map_err(|e| e.to_string())?;
        let options = FormatOptions::default().with_null("");
        let mut rows = Vec::new();
        for batch in reader {
            let batch = batch.map_err(|e| format!("cannot decode: {e}"))?;
            let formatters: Vec<ArrayFormatter> = batch
                .columns()
                .iter()
                .map(|c| ArrayFormatter::try_new(c.as_ref(), &options))
                .collect::<Result<_, _>>()
                .map_err(|e| e.to_string())?;
            for r in 0..batch.num_rows() {
                let cells = formatters
                    .iter()
                    .enumerate()
                    .map(|(ci, f)| {
                        if batch.column(ci).is_null(r) {
                            None
                        } else {
                            Some(f.value(r).to_string())
                        }
                    })
                    .collect();
                rows.push((format!("row {}", rows.len() + 1), cells));
            }
        }
        Ok(TextTable::new(headers, rows))
    }

    /// Read by file name: `.parquet` as Parquet, anything else as CSV.
    pub fn from_bytes(name: &str, bytes: Bytes) -> Result<Self, String> {
        if name.to_ascii_lowercase().ends_with(".parquet") {
            Self::from_parquet(bytes)
        } else {
            Self::from_csv(&bytes)
        }
    }

    /// Index of a column (case-insensitive).
    pub fn column(&self, name: &str) -> Option<usize> {
        self.index.get(name).copied()
    }

    pub fn headers(&self) -> &[String] {
        &self.headers
    }
}

/// Parse an instant: RFC 3339 (`2026-03-01T10:00:00+01:00`), a naive date-time
/// meaning UTC (`2026-03-01T09:00:00`, `2026-03-01 09:00:00`), or a bare date
/// meaning 00:00 UTC.
pub fn parse_instant(s: &str) -> Result<DateTime<Utc>, String> {
    let s = s.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(&s.replacen(' ', "T", 1)) {
        return Ok(t.with_timezone(&Utc));
    }
    for fmt in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M",
    ] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, fmt) {
            return Ok(t.and_utc());
        }
    }
    if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return Ok(d.and_hms_opt(0, 0, 0).expect("midnight exists").and_utc());
    }
    Err(format!(
        "`{s}` is not a timestamp (expected RFC 3339 such as 2026-03-01T00:00:00Z, or a date YYYY-MM-DD)"
    ))
}

/// Parse a decimal number exactly (plain or scientific notation).
pub fn parse_decimal(s: &str) -> Result<rust_decimal::Decimal, String> {
    use std::str::FromStr;
    let t = s.trim();
    let parsed = if t.contains(['e', 'E']) {
        rust_decimal::Decimal::from_scientific(t)
    } else {
        rust_decimal::Decimal::from_str(t)
    };
    parsed.map_err(|_| format!("`{t}` is not a decimal number"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_cells_and_line_labels() {
        let t = TextTable::from_csv(b"\xef\xbb\xbfa,B\n1,\n\"x, y\",2\n").unwrap();
        assert_eq!(t.column("a"), Some(0));
        assert_eq!(t.column("b"), Some(1));
        assert_eq!(t.rows[0].0, "line 2");
        assert_eq!(t.rows[0].1, vec![Some("1".into()), None]);
        assert_eq!(t.rows[1].1[0].as_deref(), Some("x, y"));
        assert!(
            TextTable::from_csv(b"a,b\n1,2,3\n")
                .unwrap_err()
                .contains("line 2")
        );
    }

    #[test]
    fn instants() {
        let utc = |s| parse_instant(s).unwrap().to_rfc3339();
        assert_eq!(
            utc("2025-02-06T10:56:03+08:00"),
            "2025-02-06T02:56:03+00:00"
        );
        assert_eq!(utc("2026-04-26T03:15:58Z"), "2026-04-26T03:15:58+00:00");
        assert_eq!(utc("2026-04-26"), "2026-04-26T00:00:00+00:00");
        assert_eq!(utc("2026-04-26 01:02:03"), "2026-04-26T01:02:03+00:00");
        assert_eq!(
            utc("2026-04-26T01:02:03.5"),
            "2026-04-26T01:02:03.500+00:00"
        );
        assert!(
            parse_instant("yesterday")
                .unwrap_err()
                .contains("`yesterday`")
        );
        assert!(parse_instant("2026-02-30").is_err());
    }

    #[test]
    fn decimals() {
        assert_eq!(parse_decimal("1.5e-7").unwrap().to_string(), "0.00000015");
        assert_eq!(parse_decimal(" 0.0025 ").unwrap().to_string(), "0.0025");
        assert!(parse_decimal("abc").is_err());
    }
}
