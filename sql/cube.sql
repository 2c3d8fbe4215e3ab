-- The priced day, aggregated once by (dept, project, task, provider, model,
-- price_id, currency, cache_hit) with every additive measure: the finance
-- outputs and the ops rates derive from this small table. Money is priced
-- afterwards from the token sums (exact: sum(tokens) * price = sum(tokens *
-- price)). Latency and per-minute counts come from ops_counts.sql.
WITH r AS (
    SELECT
        -- tags and currency as logged; finance_lines.sql normalizes them
        -- on the aggregated rows
        dept,
        project,
        task,
        provider,
        model,
        price_id,
        currency,
        cache_hit,
        error,
        input_tokens,
        output_tokens,
        coalesce(cache_read_input_tokens, 0) AS cache_read,
        coalesce(cache_creation_input_tokens, 0) AS cache_write,
        greatest(
            input_tokens - coalesce(cache_read_input_tokens, 0) - coalesce(cache_creation_input_tokens, 0),
            0
        ) AS uncached_input,
        -- SPEC 2: r + w > input_tokens, or negative tokens, is a violation
        (input_tokens < 0 OR output_tokens < 0
            OR coalesce(cache_read_input_tokens, 0) < 0
            OR coalesce(cache_creation_input_tokens, 0) < 0
            OR coalesce(cache_read_input_tokens, 0) + coalesce(cache_creation_input_tokens, 0) > input_tokens
        ) AS token_violation,
        (total_tokens IS NOT NULL AND total_tokens <> input_tokens + output_tokens) AS total_mismatch,
        -- A logged cost is a charge: negative, NaN, infinite or absurd is
        -- invalid (left out of logged_cost_usd, counted), never a credit.
        CASE WHEN cost_actual >= 0 AND cost_actual < 1e15 THEN cost_actual END AS cost_actual,
        (cost_actual IS NOT NULL AND NOT (cost_actual >= 0 AND cost_actual < 1e15)) AS cost_actual_invalid,
        CASE WHEN citation_rate >= 0 AND citation_rate <= 1 THEN citation_rate END AS citation_rate,
        (citation_rate IS NOT NULL AND NOT (citation_rate >= 0 AND citation_rate <= 1)) AS citation_invalid,
        human_reviewed,
        human_approved
    FROM priced
)
SELECT
    dept, project, task, provider, model, price_id, currency, cache_hit,
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
GROUP BY dept, project, task, provider, model, price_id, currency, cache_hit
