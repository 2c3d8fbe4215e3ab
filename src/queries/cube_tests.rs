//! `sql/cube.sql` prices groups of requests (`sql/day_sums.sql` sums
//! them); `sql/priced.sql` prices each request. These tests hold the first to the second: the cube of
//! generated rows (prices changing twice during the day, price rows
//! without an output, cache or input price, null and negative tokens,
//! duplicate candidates marked by the scan, several partitions) must be
//! exactly the cube of the rows not marked priced one by one, as the cube
//! was computed before it priced groups.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanArray, Decimal128Array, Float64Array, Int64Array, RecordBatch,
    StringViewArray, TimestampNanosecondArray, UInt64Array,
};
use arrow::datatypes::DataType;
use datafusion::common::ScalarValue;
use datafusion::datasource::MemTable;
use datafusion::prelude::SessionContext;

use super::{Params, list_rows, plan};
use crate::calendar::Day;
use crate::lake::schema::request_schema;

/// The day of the rows: 2026-10-15 (UTC).
const DAY_START: i64 = 1_792_022_400_000_000_000;
const HOUR: i64 = 3_600_000_000_000;

/// What sql/cube.sql said before it priced groups: the same measures over
/// `priced`, each request priced by its own row.
const PER_ROW: &str = "WITH r AS (SELECT dept, project, task, provider, model, price_id, currency, cache_hit, error, \
    input_tokens, output_tokens, coalesce(cache_read_input_tokens, 0) AS cache_read, \
    coalesce(cache_creation_input_tokens, 0) AS cache_write, \
    greatest(input_tokens - coalesce(cache_read_input_tokens, 0) - coalesce(cache_creation_input_tokens, 0), 0) AS uncached_input, \
    (input_tokens < 0 OR output_tokens < 0 OR coalesce(cache_read_input_tokens, 0) < 0 \
      OR coalesce(cache_creation_input_tokens, 0) < 0 \
      OR coalesce(cache_read_input_tokens, 0) + coalesce(cache_creation_input_tokens, 0) > input_tokens) AS token_violation, \
    (total_tokens IS NOT NULL AND total_tokens <> input_tokens + output_tokens) AS total_mismatch, \
    CASE WHEN cost_actual >= 0 AND cost_actual < 1e15 THEN cost_actual END AS cost_actual, \
    (cost_actual IS NOT NULL AND NOT (cost_actual >= 0 AND cost_actual < 1e15)) AS cost_actual_invalid, \
    CASE WHEN citation_rate >= 0 AND citation_rate <= 1 THEN citation_rate END AS citation_rate, \
    (citation_rate IS NOT NULL AND NOT (citation_rate >= 0 AND citation_rate <= 1)) AS citation_invalid, \
    human_reviewed, human_approved FROM priced) \
    SELECT dept, project, task, provider, model, price_id, currency, cache_hit, \
    count(*) AS requests, count(*) FILTER (WHERE error) AS errors, \
    sum(input_tokens) AS input_tokens, sum(output_tokens) AS output_tokens, \
    sum(uncached_input) AS uncached_input, sum(cache_read) AS cache_read, sum(cache_write) AS cache_write, \
    sum(CAST(cost_actual AS DECIMAL(38, 11))) AS logged_amount, count(cost_actual) AS logged_requests, \
    sum(uncached_input) FILTER (WHERE cost_actual IS NOT NULL) AS logged_uncached_input, \
    sum(cache_read) FILTER (WHERE cost_actual IS NOT NULL) AS logged_cache_read, \
    sum(cache_write) FILTER (WHERE cost_actual IS NOT NULL) AS logged_cache_write, \
    sum(output_tokens) FILTER (WHERE cost_actual IS NOT NULL) AS logged_output, \
    count(*) FILTER (WHERE cost_actual_invalid) AS logged_invalid, \
    sum(CAST(citation_rate AS DECIMAL(38, 15))) AS citation_sum, count(citation_rate) AS citation_requests, \
    count(*) FILTER (WHERE citation_invalid) AS citation_invalid, \
    count(*) FILTER (WHERE human_reviewed) AS reviewed, \
    count(*) FILTER (WHERE human_reviewed AND human_approved) AS approved, \
    count(*) FILTER (WHERE token_violation) AS token_violations, \
    count(*) FILTER (WHERE total_mismatch) AS total_tokens_mismatch \
    FROM r GROUP BY dept, project, task, provider, model, price_id, currency, cache_hit";

/// A fixed linear congruential stream: `next(n)` in `0..n`.
fn stream(seed: u64) -> impl FnMut(u64) -> u64 {
    let mut s = seed;
    move |n| {
        s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (s >> 33) % n
    }
}

fn pick<T: Clone>(next: &mut impl FnMut(u64) -> u64, from: &[T]) -> T {
    from[next(from.len() as u64) as usize].clone()
}

/// `rows` request rows of the real schema; every column takes values the
/// rules treat differently (nulls, zeros, negatives, invalid costs).
fn requests(next: &mut impl FnMut(u64) -> u64, rows: usize) -> RecordBatch {
    let schema = request_schema();
    let text = |next: &mut dyn FnMut(u64) -> u64, name: &str, required: bool| -> ArrayRef {
        let from: &[Option<&str>] = match name {
            "provider" => &[Some("openai"), Some("anthropic"), Some("mistral")],
            "model" => &[Some("gpt-4o"), Some("claude"), Some("gpt-x")],
            "currency" => &[Some("USD"), Some("EUR"), None],
            "trace_id" => &[Some("t")],
            _ => &[Some("a"), Some("b-with-a-long-name-beyond-12"), None],
        };
        Arc::new(StringViewArray::from(
            (0..rows)
                .map(|_| {
                    let v = from[next(from.len() as u64) as usize];
                    if required { v.or(Some("x")) } else { v }
                })
                .collect::<Vec<_>>(),
        ))
    };
    let mut columns: Vec<ArrayRef> = Vec::new();
    for f in schema.fields() {
        let required = !f.is_nullable();
        let column: ArrayRef = match (f.name().as_str(), f.data_type()) {
            ("ts", _) => {
                // The whole day, and a few instants exactly on a price change.
                let v: Vec<i64> = (0..rows)
                    .map(|_| match next(20) {
                        0 => DAY_START + 10 * HOUR,
                        1 => DAY_START + 16 * HOUR + HOUR / 2,
                        2 => DAY_START + 10 * HOUR - 1,
                        _ => DAY_START + next(24 * 3600) as i64 * 1_000_000_000,
                    })
                    .collect();
                Arc::new(TimestampNanosecondArray::from(v).with_timezone("UTC"))
            }
            ("_pos", _) => Arc::new(Int64Array::from_iter_values(0..rows as i64)),
            ("_trace_key", _) => Arc::new(UInt64Array::from_iter_values(0..rows as u64)),
            // one row in ten a duplicate candidate: counted nowhere
            ("_candidate", _) => Arc::new(BooleanArray::from(
                (0..rows).map(|_| next(10) == 0).collect::<Vec<_>>(),
            )),
            (name, DataType::Utf8View) => text(next, name, required),
            (_, DataType::Boolean) => {
                let from: &[Option<bool>] = if required {
                    &[Some(true), Some(false)]
                } else {
                    &[None, Some(true), Some(false)]
                };
                Arc::new(BooleanArray::from(
                    (0..rows).map(|_| pick(next, from)).collect::<Vec<_>>(),
                ))
            }
            (name, DataType::Int64) => {
                let from: &[Option<i64>] = match name {
                    // the cache kinds: often 0 or absent, sometimes more
                    // than the input (a violation, no uncached input)
                    "cache_read_input_tokens" | "cache_creation_input_tokens" => {
                        &[None, Some(0), Some(0), Some(40), Some(900), Some(-2)]
                    }
                    _ => &[Some(0), Some(7), Some(100), Some(1234), Some(-3), None],
                };
                Arc::new(Int64Array::from(
                    (0..rows)
                        .map(|_| {
                            let v = pick(next, from);
                            if required { v.or(Some(1)) } else { v }
                        })
                        .collect::<Vec<_>>(),
                ))
            }
            (_, DataType::Float64) => Arc::new(Float64Array::from(
                (0..rows)
                    .map(|_| {
                        pick(
                            next,
                            &[
                                None,
                                Some(0.0),
                                Some(0.000123),
                                Some(0.75),
                                Some(-1.0),
                                Some(f64::NAN),
                                Some(2.5),
                            ],
                        )
                    })
                    .collect::<Vec<_>>(),
            )),
            (name, t) => panic!("no generator for {name}: {t}"),
        };
        columns.push(column);
    }
    RecordBatch::try_new(schema, columns).unwrap()
}

/// A price row: (provider, model, id, from, to, [input, output, read,
/// write] per token).
type Spec = (
    &'static str,
    &'static str,
    &'static str,
    i64,
    i64,
    [Option<i128>; 4],
);

/// A price map with two price changes in the day for gpt-4o (the second
/// row lacks an output price, the third cache prices), a claude row from
/// 03:00 without an input price, and nothing for gpt-x.
fn price_map() -> RecordBatch {
    let open = i64::MAX;
    let rows: [Spec; 4] = [
        (
            "openai",
            "gpt-4o",
            "a",
            DAY_START - 24 * HOUR,
            DAY_START + 10 * HOUR,
            [Some(5), Some(15), Some(2), Some(6)],
        ),
        (
            "openai",
            "gpt-4o",
            "b",
            DAY_START + 10 * HOUR,
            DAY_START + 16 * HOUR + HOUR / 2,
            [Some(5), None, Some(2), Some(6)],
        ),
        (
            "openai",
            "gpt-4o",
            "c",
            DAY_START + 16 * HOUR + HOUR / 2,
            open,
            [Some(4), Some(12), None, None],
        ),
        (
            "anthropic",
            "claude",
            "d",
            DAY_START + 3 * HOUR,
            open,
            [None, Some(15), Some(1), Some(3)],
        ),
    ];
    let text = |f: &dyn Fn(&Spec) -> &'static str| -> ArrayRef {
        Arc::new(StringViewArray::from(
            rows.iter().map(f).collect::<Vec<_>>(),
        ))
    };
    let ts = |f: &dyn Fn(&Spec) -> i64| -> ArrayRef {
        Arc::new(
            TimestampNanosecondArray::from(rows.iter().map(f).collect::<Vec<_>>())
                .with_timezone("UTC"),
        )
    };
    let price = |k: usize| -> ArrayRef {
        Arc::new(
            Decimal128Array::from(
                rows.iter()
                    .map(|r| r.5[k].map(|p| p * 10i128.pow(17)))
                    .collect::<Vec<_>>(),
            )
            .with_precision_and_scale(38, crate::money::PRICE_SCALE)
            .unwrap(),
        )
    };
    let flag = |f: &dyn Fn(&[Option<i128>; 4]) -> bool| -> ArrayRef {
        Arc::new(BooleanArray::from(
            rows.iter().map(|r| f(&r.5)).collect::<Vec<_>>(),
        ))
    };
    RecordBatch::try_new(
        crate::pricing::price_map_schema(),
        vec![
            text(&|r| r.0),
            text(&|r| r.1),
            text(&|r| r.2),
            ts(&|r| r.3),
            ts(&|r| r.4),
            price(0),
            price(1),
            price(2),
            price(3),
            flag(&|p| p.iter().all(Option::is_some)),
            flag(&|p| p[0].is_some()),
            flag(&|p| p[1].is_some()),
            flag(&|p| p[2].is_some()),
            flag(&|p| p[3].is_some()),
        ],
    )
    .unwrap()
}

/// The price map's cuts, as `PriceTable::cuts` gives them.
fn cuts(map: &RecordBatch) -> Vec<i64> {
    let mut cuts = Vec::new();
    for c in [3, 4] {
        let col = map
            .column(c)
            .as_any()
            .downcast_ref::<TimestampNanosecondArray>()
            .unwrap();
        cuts.extend(col.values().iter().copied().filter(|&t| t != i64::MAX));
    }
    cuts.sort_unstable();
    cuts.dedup();
    cuts
}

fn session(partitions: Vec<Vec<RecordBatch>>) -> SessionContext {
    let spill = std::env::temp_dir();
    let ctx = super::session(partitions.len(), None, &spill).unwrap();
    ctx.register_table(
        "requests",
        Arc::new(MemTable::try_new(request_schema(), partitions).unwrap()),
    )
    .unwrap();
    let map = price_map();
    ctx.register_table(
        "price_map",
        Arc::new(MemTable::try_new(map.schema(), vec![vec![map]]).unwrap()),
    )
    .unwrap();
    ctx
}

/// Each row as text, sorted.
async fn rows(df: datafusion::dataframe::DataFrame) -> Vec<String> {
    let batches = df.collect().await.unwrap();
    let mut out = Vec::new();
    for b in &batches {
        for i in 0..b.num_rows() {
            let cells: Vec<String> = (0..b.num_columns())
                .map(|c| {
                    let v = ScalarValue::try_from_array(b.column(c), i).unwrap();
                    if v.is_null() {
                        "null".into()
                    } else {
                        v.to_string()
                    }
                })
                .collect();
            out.push(cells.join("|"));
        }
    }
    out.sort();
    out
}

/// `sql/cube.sql` over `requests`: `day_sums`' groups (`cube_groups`), priced.
async fn cube(ctx: &SessionContext, params: &Params) -> datafusion::dataframe::DataFrame {
    let sums = plan(ctx, "day_sums", params)
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    let groups = list_rows("day_sums", &sums, 0, "cube").unwrap();
    ctx.deregister_table("cube_groups").unwrap();
    ctx.register_batch("cube_groups", groups).unwrap();
    plan(ctx, "cube", params).await.unwrap()
}

fn params() -> Params {
    let date = chrono::NaiveDate::from_ymd_opt(2026, 10, 15).unwrap();
    Params::of(&Day::new(date, chrono_tz::UTC))
}

#[tokio::test]
async fn the_cube_of_priced_groups_is_the_cube_of_priced_rows() {
    let mut next = stream(5);
    let partitions: Vec<Vec<RecordBatch>> = (0..3)
        .map(|_| (0..4).map(|_| requests(&mut next, 1500)).collect())
        .collect();
    let ctx = session(partitions);
    let params = params().with_price_cuts(cuts(&price_map()));

    let grouped = rows(cube(&ctx, &params).await).await;
    // Priced row by row: the rows not marked as duplicate candidates.
    let kept = ctx
        .sql("SELECT * FROM requests WHERE NOT _candidate")
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    ctx.deregister_table("requests").unwrap();
    ctx.register_table(
        "requests",
        Arc::new(MemTable::try_new(request_schema(), vec![kept]).unwrap()),
    )
    .unwrap();
    let priced = plan(&ctx, "priced", &params).await.unwrap();
    ctx.register_table("priced", priced.into_view()).unwrap();
    let per_row = rows(ctx.sql(PER_ROW).await.unwrap()).await;

    // The fixture reaches every price row, unpriced rows by each rule, and
    // many groups.
    for id in ["|a|", "|b|", "|c|", "|d|"] {
        assert!(
            per_row.iter().any(|r| r.contains(id)),
            "no row priced by {id}"
        );
    }
    let unpriced = per_row
        .iter()
        .filter(|r| r.split('|').nth(5) == Some("null"))
        .count();
    assert!(unpriced > 100, "unpriced groups: {unpriced}");
    assert!(per_row.len() > 1000, "groups: {}", per_row.len());
    assert_eq!(grouped.len(), per_row.len());
    for (g, r) in grouped.iter().zip(&per_row) {
        assert_eq!(g, r);
    }
}

/// Without the cuts, a group spanning a price change would be priced by
/// one row: the test above can fail.
#[tokio::test]
async fn without_the_cuts_groups_across_a_price_change_are_mispriced() {
    let mut next = stream(9);
    let ctx = session(vec![(0..2).map(|_| requests(&mut next, 2000)).collect()]);
    let with = rows(cube(&ctx, &params().with_price_cuts(cuts(&price_map()))).await).await;
    let without = rows(cube(&ctx, &params()).await).await;
    assert_ne!(with, without);
}
