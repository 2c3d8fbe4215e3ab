-- The priced day, aggregated once by (dept, project, task, provider, model,
-- price_id, currency, cache_hit) with every additive measure: the finance
-- outputs and the ops rates derive from this small table. Money is priced
-- afterwards from the token sums (exact: sum(tokens) * price = sum(tokens *
-- price)). Latency and per-minute counts come from ops_counts.sql.
--
-- Reads `requests` (the day's rows but the duplicate candidates, then the
-- candidates kept) and prices groups, not rows: the price row a request
-- finds (priced.sql, SPEC 1.2) depends only on its (provider, model), on
-- which stretch between two price changes holds its ts ($price_cuts are
-- every instant where a price row in force during the day begins or ends,
-- so within a stretch each price_map row is in force throughout or not at
-- all) and on four tests of its tokens, exactly priced.sql's. price_key
-- packs the stretch and the tests in one integer (stretch * 16, plus 8 for
-- output, 4 cache read, 2 cache write, 1 uncached input tokens; a null
-- test is no, as in priced.sql's CASE). The rows are summed by it with the
-- cube's own keys (`g`), each group is priced once, at the first instant
-- of its stretch (price_key_instant), by priced.sql's rule, and the groups
-- are summed again by price_id. A unit test holds this to priced.sql row
-- by row.
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
        human_approved
    FROM requests
),
g AS (
    SELECT
        dept, project, task, provider, model, currency, cache_hit, price_key,
        count(*) AS requests,
        count(*) FILTER (WHERE error) AS errors,
        sum(input_tokens) AS input_tokens,
        sum(output_tokens) AS output_tokens,
        sum(uncached_input) AS uncached_input,
        sum(cache_read) AS cache_read,
        sum(cache_write) AS cache_write,
        sum(CAST(cost_actual AS DECIMAL(38, 11))) AS logged_amount,
        count(cost_actual) AS logged_requests,
        -- the tokens of the requests with a logged cost, to price exactly the
        -- requests the gateway priced (logged_vs_computed.csv)
        sum(uncached_input) FILTER (WHERE cost_actual IS NOT NULL) AS logged_uncached_input,
        sum(cache_read) FILTER (WHERE cost_actual IS NOT NULL) AS logged_cache_read,
        sum(cache_write) FILTER (WHERE cost_actual IS NOT NULL) AS logged_cache_write,
        sum(output_tokens) FILTER (WHERE cost_actual IS NOT NULL) AS logged_output,
        count(*) FILTER (WHERE cost_actual_invalid) AS logged_invalid,
        sum(CAST(citation_rate AS DECIMAL(38, 15))) AS citation_sum,
        count(citation_rate) AS citation_requests,
        count(*) FILTER (WHERE citation_invalid) AS citation_invalid,
        count(*) FILTER (WHERE human_reviewed) AS reviewed,
        count(*) FILTER (WHERE human_reviewed AND human_approved) AS approved,
        count(*) FILTER (WHERE token_violation) AS token_violations,
        count(*) FILTER (WHERE total_mismatch) AS total_tokens_mismatch
    FROM r
    GROUP BY dept, project, task, provider, model, currency, cache_hit, price_key
),
priced_groups AS (
    SELECT
        g.*,
        -- priced.sql's rule, on the group's tests
        CASE
            WHEN p.complete OR p.price_id IS NULL THEN p.price_id
            WHEN NOT p.has_output AND (g.price_key & 8) <> 0 THEN NULL
            WHEN NOT p.has_cache_read AND (g.price_key & 4) <> 0 THEN NULL
            WHEN NOT p.has_cache_write AND (g.price_key & 2) <> 0 THEN NULL
            WHEN NOT p.has_input AND (g.price_key & 1) <> 0 THEN NULL
            ELSE p.price_id
        END AS price_id
    FROM g
    LEFT JOIN price_map AS p
        ON g.provider = p.provider
        AND g.model = p.model
        AND price_key_instant(g.price_key, $price_cuts) >= p.valid_from
        AND price_key_instant(g.price_key, $price_cuts) < p.valid_to
)
SELECT
    dept, project, task, provider, model, price_id, currency, cache_hit,
    -- counts of non-empty groups: never null
    coalesce(sum(requests), 0) AS requests,
    coalesce(sum(errors), 0) AS errors,
    sum(input_tokens) AS input_tokens,
    sum(output_tokens) AS output_tokens,
    sum(uncached_input) AS uncached_input,
    sum(cache_read) AS cache_read,
    sum(cache_write) AS cache_write,
    sum(logged_amount) AS logged_amount,
    coalesce(sum(logged_requests), 0) AS logged_requests,
    sum(logged_uncached_input) AS logged_uncached_input,
    sum(logged_cache_read) AS logged_cache_read,
    sum(logged_cache_write) AS logged_cache_write,
    sum(logged_output) AS logged_output,
    coalesce(sum(logged_invalid), 0) AS logged_invalid,
    sum(citation_sum) AS citation_sum,
    coalesce(sum(citation_requests), 0) AS citation_requests,
    coalesce(sum(citation_invalid), 0) AS citation_invalid,
    coalesce(sum(reviewed), 0) AS reviewed,
    coalesce(sum(approved), 0) AS approved,
    coalesce(sum(token_violations), 0) AS token_violations,
    coalesce(sum(total_tokens_mismatch), 0) AS total_tokens_mismatch
FROM priced_groups
GROUP BY dept, project, task, provider, model, price_id, currency, cache_hit
