//! `focus_costs.csv`: the FinOps FOCUS 1.2 shape of the day's computed cost.
//!
//! `sql/focus_costs.sql` computes every column but `Tags`; this module turns
//! its `dept`, `project` and `task` columns into FOCUS's `Tags` JSON object
//! (escaped by serde_json, so hostile tag values stay data). Pure: batches in,
//! batches out.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};

use crate::error::{Error, Result};

/// The FOCUS version the export follows (README, "Outputs").
pub const FOCUS_VERSION: &str = "1.2";

const TAG_COLUMNS: [&str; 3] = ["dept", "project", "task"];

/// Replace the tag columns by a `Tags` JSON column.
pub fn with_tags(
    schema: &SchemaRef,
    batches: &[RecordBatch],
) -> Result<(SchemaRef, Vec<RecordBatch>)> {
    let keep: Vec<usize> = (0..schema.fields().len())
        .filter(|i| !TAG_COLUMNS.contains(&schema.field(*i).name().as_str()))
        .collect();
    let mut fields: Vec<Field> = keep.iter().map(|i| schema.field(*i).clone()).collect();
    fields.push(Field::new("Tags", DataType::Utf8, false));
    let out_schema: SchemaRef = Arc::new(Schema::new(fields));
    let mut out = Vec::with_capacity(batches.len());
    for b in batches {
        let tags: Vec<_> = TAG_COLUMNS
            .iter()
            .map(|name| {
                let c = b
                    .column_by_name(name)
                    .ok_or_else(|| Error::Internal(format!("focus_costs.sql: no column {name}")))?;
                arrow::compute::cast(c, &DataType::Utf8)
                    .map_err(|e| Error::Internal(format!("focus_costs.sql: {name}: {e}")))
            })
            .collect::<Result<_>>()?;
        let json: Vec<String> = (0..b.num_rows())
            .map(|row| {
                let map: BTreeMap<&str, Option<&str>> = TAG_COLUMNS
                    .iter()
                    .zip(&tags)
                    .map(|(name, c)| {
                        let c = c.as_string::<i32>();
                        (*name, (!c.is_null(row)).then(|| c.value(row)))
                    })
                    .collect();
                serde_json::to_string(&map).expect("strings serialize")
            })
            .collect();
        let mut columns: Vec<ArrayRef> = keep.iter().map(|i| Arc::clone(b.column(*i))).collect();
        columns.push(Arc::new(StringArray::from(json)));
        out.push(
            RecordBatch::try_new(Arc::clone(&out_schema), columns)
                .map_err(|e| Error::Internal(format!("focus_costs: {e}")))?,
        );
    }
    Ok((out_schema, out))
}
