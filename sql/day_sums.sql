-- The one pass over the rows of `requests` (the finance scan: the day's
-- rows but the duplicate candidates; then the candidates kept) that both
-- the finance and the ops metrics read: two aggregates over one scan.
-- DataFusion runs one aggregation per scan, so a GROUP BY beside the
-- histogram would need a scan of its own; `day_cube` is the GROUP BY as
-- an aggregate of the whole day. One row:
--   cube: `day_cube(keep, sums, counts, keys...)` (queries::functions),
--         over the rows kept (not `_candidate`) exactly the rows of
--           GROUP BY dept, project, task, provider, model, currency,
--                    cache_hit, price_key
--         with count(*) AS requests, count(*) FILTER (WHERE c) for each
--         field of its `counts` and sum(x) for each of its `sums` (a
--         FILTER on a sum is its value nulled where the filter fails):
--         registered as `cube_groups`, which cube.sql prices;
--   ops:  `ops_histogram`, the rows of ops_counts.sql's three sets over
--         the same rows: registered as `ops_parts`, which ops_counts.sql
--         sums.
-- price_key packs the price row's stretch and tests (cube.sql says how).
WITH r AS (
    SELECT
        -- tags and currency as logged; finance_lines.sql normalizes them
        -- on the aggregated rows
        dept,
        project,
        task,
        provider,
        model,
        currency,
        cache_hit,
        price_key(
            CAST(ts AS BIGINT), $price_cuts,
            output_tokens <> 0,
            zero_if_null(cache_read_input_tokens) <> 0,
            zero_if_null(cache_creation_input_tokens) <> 0,
            input_tokens - zero_if_null(cache_read_input_tokens) - zero_if_null(cache_creation_input_tokens) > 0
        ) AS price_key,
        error,
        input_tokens,
        output_tokens,
        zero_if_null(cache_read_input_tokens) AS cache_read,
        zero_if_null(cache_creation_input_tokens) AS cache_write,
        greatest(
            input_tokens - zero_if_null(cache_read_input_tokens) - zero_if_null(cache_creation_input_tokens),
            0
        ) AS uncached_input,
        -- SPEC 2: r + w > input_tokens, or negative tokens, is a violation
        (input_tokens < 0 OR output_tokens < 0
            OR zero_if_null(cache_read_input_tokens) < 0
            OR zero_if_null(cache_creation_input_tokens) < 0
            OR zero_if_null(cache_read_input_tokens) + zero_if_null(cache_creation_input_tokens) > input_tokens
        ) AS token_violation,
        (total_tokens IS NOT NULL AND total_tokens <> input_tokens + output_tokens) AS total_mismatch,
        -- A logged cost is a charge: negative, NaN, infinite or absurd is
        -- invalid (left out of logged_cost_usd, counted), never a credit.
        -- null_where(x, NOT ok) is CASE WHEN ok THEN x END, and
        -- zero_if_null(x) is coalesce(x, 0), each one pass over the array
        -- (queries::functions::nulls: DataFusion's CASE cost up to 140 ns a
        -- row on columns with nulls).
        null_where(cost_actual, NOT (cost_actual >= 0 AND cost_actual < 1e15)) AS cost_actual,
        (cost_actual IS NOT NULL AND NOT (cost_actual >= 0 AND cost_actual < 1e15)) AS cost_actual_invalid,
        null_where(citation_rate, NOT (citation_rate >= 0 AND citation_rate <= 1)) AS citation_rate,
        (citation_rate IS NOT NULL AND NOT (citation_rate >= 0 AND citation_rate <= 1)) AS citation_invalid,
        human_reviewed,
        human_approved,
        -- the ops histogram's keys (ops_counts.sql says what it counts)
        route,
        date_trunc('minute', ts) AS minute,
        CAST((CAST(ts AS BIGINT) - $day_start_ns) / 3600000000000 AS INT) AS hour,
        -- rounded to 4 significant digits (<= 0.05% off); null, NaN,
        -- infinite and absurd (> 1e300) latencies null: they take no part
        -- in percentiles (the rule: queries::functions::latency_q)
        latency_q(latency_ms) AS latency_q,
        -- the duplicate candidates are marked by the scan, not removed
        -- (dropping them would copy every batch): they count nowhere here
        NOT _candidate AS keep
    FROM requests
)
SELECT
    day_cube(
        keep,
        named_struct(
            'input_tokens', CAST(input_tokens AS BIGINT),
            'output_tokens', CAST(output_tokens AS BIGINT),
            'uncached_input', uncached_input,
            'cache_read', cache_read,
            'cache_write', cache_write,
            'logged_amount', CAST(cost_actual AS DECIMAL(38, 11)),
            -- the tokens of the requests with a logged cost, to price
            -- exactly the requests the gateway priced (logged_vs_computed.csv)
            'logged_uncached_input', null_where(uncached_input, cost_actual IS NULL),
            'logged_cache_read', null_where(cache_read, cost_actual IS NULL),
            'logged_cache_write', null_where(cache_write, cost_actual IS NULL),
            'logged_output', null_where(CAST(output_tokens AS BIGINT), cost_actual IS NULL),
            'citation_sum', CAST(citation_rate AS DECIMAL(38, 15))
        ),
        named_struct(
            'errors', error,
            'logged_requests', cost_actual IS NOT NULL,
            'logged_invalid', cost_actual_invalid,
            'citation_requests', citation_rate IS NOT NULL,
            'citation_invalid', citation_invalid,
            'reviewed', human_reviewed,
            'approved', human_reviewed AND human_approved,
            'token_violations', token_violation,
            'total_tokens_mismatch', total_mismatch
        ),
        -- the keys
        dept, project, task, provider, model, currency, cache_hit, price_key
    ) AS cube,
    ops_histogram(provider, model, route, latency_q, minute, hour, error, keep) AS ops
FROM r
