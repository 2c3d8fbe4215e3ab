//! `ops_histogram` against the SQL it replaces, on rows with every edge the
//! scan can give it: null text, text longer than a string view's inline 12
//! bytes, null, negative-zero and repeated latencies, null errors, several
//! batches and partitions (so partial states are merged).

use super::*;
use arrow::array::{RecordBatch, TimestampNanosecondArray};
use arrow::datatypes::{Schema, TimeUnit};
use datafusion::datasource::MemTable;
use datafusion::prelude::SessionContext;

fn schema() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new("provider", DataType::Utf8View, true),
        Field::new("model", DataType::Utf8View, true),
        Field::new("route", DataType::Utf8View, true),
        Field::new("latency_q", DataType::Float64, true),
        Field::new(
            "minute",
            DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into())),
            true,
        ),
        Field::new("hour", DataType::Int32, true),
        Field::new("error", DataType::Boolean, true),
    ]))
}

/// `batches` batches of `rows` rows from a fixed linear congruential stream.
fn batches(seed: u64, batches: usize, rows: usize) -> Vec<RecordBatch> {
    let mut s = seed;
    let mut next = move |n: u64| {
        s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (s >> 33) % n
    };
    let providers = [Some("openai"), Some("anthropic-bedrock-eu-west"), None];
    let models = [
        Some("gpt-4o"),
        Some("claude-3-5-sonnet-20241022"),
        Some(""),
        None,
    ];
    let routes = [Some("chat"), Some("retrieval-augmented"), None];
    let latencies = [
        None,
        Some(-0.0),
        Some(0.0),
        Some(12.0),
        Some(1234.0),
        Some(0.1235),
        Some(98760.0),
    ];
    (0..batches)
        .map(|_| {
            let mut p = Vec::new();
            let mut m = Vec::new();
            let mut r = Vec::new();
            let mut l = Vec::new();
            let mut t = Vec::new();
            let mut h = Vec::new();
            let mut e = Vec::new();
            for _ in 0..rows {
                p.push(providers[next(3) as usize]);
                m.push(models[next(4) as usize]);
                r.push(routes[next(3) as usize]);
                l.push(latencies[next(7) as usize]);
                let minute = next(180) as i64;
                t.push(1_792_022_400_000_000_000 + minute * 60_000_000_000);
                h.push((minute / 60) as i32);
                e.push(match next(3) {
                    0 => None,
                    1 => Some(true),
                    _ => Some(false),
                });
            }
            RecordBatch::try_new(
                schema(),
                vec![
                    Arc::new(StringViewArray::from(p)),
                    Arc::new(StringViewArray::from(m)),
                    Arc::new(StringViewArray::from(r)),
                    Arc::new(Float64Array::from(l)),
                    Arc::new(TimestampNanosecondArray::from(t).with_timezone("UTC")),
                    Arc::new(Int32Array::from(h)),
                    Arc::new(BooleanArray::from(e)),
                ],
            )
            .unwrap()
        })
        .collect()
}

fn session(partitions: Vec<Vec<RecordBatch>>) -> SessionContext {
    let ctx = SessionContext::new_with_config(
        datafusion::prelude::SessionConfig::new().with_target_partitions(partitions.len().max(1)),
    );
    for f in udafs() {
        ctx.register_udaf(f);
    }
    ctx.register_table(
        "t",
        Arc::new(MemTable::try_new(schema(), partitions).unwrap()),
    )
    .unwrap();
    ctx
}

const NEW: &str = "SELECT get_field(c, 'grouping_set') AS grouping_set, get_field(c, 'provider') AS provider, \
    get_field(c, 'model') AS model, get_field(c, 'route') AS route, get_field(c, 'latency_q') AS latency_q, \
    get_field(c, 'minute') AS minute, get_field(c, 'hour') AS hour, get_field(c, 'requests') AS requests, get_field(c, 'errors') AS errors \
    FROM (SELECT unnest(ops_histogram(provider, model, route, latency_q, minute, hour, error, true)) AS c FROM t)";

/// What sql/ops_counts.sql said before the aggregate.
const OLD: &str = "SELECT CASE WHEN minute IS NOT NULL THEN 'minute' \
    WHEN hour IS NOT NULL THEN 'hour' ELSE 'latency' END AS grouping_set, \
    provider, model, route, latency_q, minute, hour, \
    count(*) AS requests, count(*) FILTER (WHERE error) AS errors FROM t \
    GROUP BY GROUPING SETS ((provider, model, route, latency_q), (provider, model, minute), (hour, latency_q))";

/// Each row as text (floats as Rust prints them: -0 apart from 0).
async fn rows(ctx: &SessionContext, sql: &str) -> Vec<String> {
    let batches = ctx.sql(sql).await.unwrap().collect().await.unwrap();
    let mut out = Vec::new();
    for b in &batches {
        for i in 0..b.num_rows() {
            let cells: Vec<String> = (0..b.num_columns())
                .map(|c| {
                    let col = b.column(c);
                    if let Some(f) = col.as_primitive_opt::<Float64Type>() {
                        return if f.is_valid(i) {
                            format!("{:?}", f.value(i))
                        } else {
                            "null".into()
                        };
                    }
                    let v = ScalarValue::try_from_array(col, i).unwrap();
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
    out
}

#[tokio::test]
async fn the_histogram_gives_exactly_the_grouping_sets_rows() {
    let data = batches(7, 12, 700);
    let partitions: Vec<Vec<RecordBatch>> = data.chunks(4).map(<[RecordBatch]>::to_vec).collect();
    let ctx = session(partitions);
    let mut new = rows(&ctx, NEW).await;
    let mut old = rows(&ctx, OLD).await;
    assert!(old.len() > 300, "a histogram of many groups: {}", old.len());
    // -0 ms and 0 ms are one group, said as 0.
    assert!(!new.iter().any(|r| r.contains("|-0.0|")));
    new.sort();
    old.sort();
    let only_new: Vec<&String> = new
        .iter()
        .filter(|r| old.binary_search(r).is_err())
        .collect();
    let only_old: Vec<&String> = old
        .iter()
        .filter(|r| new.binary_search(r).is_err())
        .collect();
    assert!(
        only_new.is_empty() && only_old.is_empty() && new.len() == old.len(),
        "only from the aggregate: {only_new:?}\nonly from GROUPING SETS: {only_old:?}"
    );
}

/// Rows not kept count in no set: as under `WHERE keep`.
#[tokio::test]
async fn rows_not_kept_count_nowhere() {
    let data = batches(13, 6, 700);
    let ctx = session(data.chunks(3).map(<[RecordBatch]>::to_vec).collect());
    let keep = "hour <> 1 AND error IS NOT NULL";
    let new = NEW.replace(", error, true))", &format!(", error, {keep}))"));
    let old = OLD.replace("FROM t GROUP BY", &format!("FROM t WHERE {keep} GROUP BY"));
    assert_ne!(new, NEW);
    assert_ne!(old, OLD);
    let mut new = rows(&ctx, &new).await;
    let mut old = rows(&ctx, &old).await;
    assert!(
        !old.iter()
            .any(|r| r.starts_with("hour|") && r.contains("|1|"))
    );
    assert!(old.len() > 200, "groups: {}", old.len());
    new.sort();
    old.sort();
    assert_eq!(new, old);
    // and they are not all kept: the day's histogram differs
    let mut all = rows(&ctx, NEW).await;
    all.sort();
    assert_ne!(all, new);
}

#[tokio::test]
async fn the_rows_come_in_one_order_whatever_the_partitions() {
    let data = batches(11, 6, 500);
    let one = rows(&session(vec![data.clone()]), NEW).await;
    let mut reversed = data.clone();
    reversed.reverse();
    let three = rows(
        &session(reversed.chunks(2).map(<[RecordBatch]>::to_vec).collect()),
        NEW,
    )
    .await;
    assert_eq!(one, three);
    // Sets in order, text sorted within them (null text first).
    let first_minute = one.iter().position(|r| r.starts_with("minute|")).unwrap();
    let first_hour = one.iter().position(|r| r.starts_with("hour|")).unwrap();
    assert!(
        one[..first_minute]
            .iter()
            .all(|r| r.starts_with("latency|"))
    );
    assert!(first_minute < first_hour);
    assert!(one[0].starts_with("latency|null|"), "{}", one[0]);
}

#[tokio::test]
async fn a_row_without_its_minute_is_an_error() {
    let mut data = batches(3, 1, 10);
    let b = data.pop().unwrap();
    let mut columns = b.columns().to_vec();
    columns[4] =
        Arc::new(TimestampNanosecondArray::from(vec![None::<i64>; 10]).with_timezone("UTC"));
    let b = RecordBatch::try_new(schema(), columns).unwrap();
    let ctx = session(vec![vec![b]]);
    let e = ctx.sql(NEW).await.unwrap().collect().await.unwrap_err();
    assert!(e.to_string().contains("a row without ts"), "{e}");
}
