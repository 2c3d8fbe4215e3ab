-- The priced day, aggregated once: every output derives from this small table.
-- One pass over `priced` with three grouping sets:
--   'finance': (dept, project, task, provider, model, price_id, currency, cache_hit)
--              with every additive measure; money is priced afterwards from
--              the token sums (exact: sum(tokens) * price = sum(tokens * price)).
--   'latency': (provider, model, latency_q) counts: an exact histogram of
--              latency rounded to 4 significant digits (<= 0.05% off), from
--              which percentiles are computed exactly and deterministically.
--   'minute':  (provider, model, minute) counts, for qps_peak.
WITH r AS (
    SELECT
        coalesce(dept, '(untagged)') AS dept,
        coalesce(project, '(untagged)') AS project,
        coalesce(task, '(untagged)') AS task,
        provider,
        model,
        price_id,
        upper(trim(currency)) AS currency,
        cache_hit,
        error,
        date_trunc('minute', ts) AS minute,
        CASE
            -- null, NaN and infinite latencies take no part in percentiles
            WHEN latency_ms IS NULL OR NOT (abs(latency_ms) <= 1e300) THEN NULL
            WHEN latency_ms = 0 THEN 0.0
            WHEN abs(latency_ms) >= 10000 THEN signum(latency_ms)
                * round(abs(latency_ms) / power(10.0, floor(log10(abs(latency_ms))) - 3))
                * power(10.0, floor(log10(abs(latency_ms))) - 3)
            ELSE signum(latency_ms)
                * round(abs(latency_ms) * power(10.0, 3 - floor(log10(abs(latency_ms)))))
                / power(10.0, 3 - floor(log10(abs(latency_ms))))
        END AS latency_q,
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
        CASE WHEN abs(cost_actual) < 1e15 THEN cost_actual END AS cost_actual,
        (cost_actual IS NOT NULL AND NOT (abs(cost_actual) < 1e15)) AS cost_actual_invalid,
        CASE WHEN citation_rate >= 0 AND citation_rate <= 1 THEN citation_rate END AS citation_rate,
        (citation_rate IS NOT NULL AND NOT (citation_rate >= 0 AND citation_rate <= 1)) AS citation_invalid,
        human_reviewed,
        human_approved,
        dup_dropped,
        dup_conflict
    FROM priced
)
SELECT
    CASE
        WHEN grouping(latency_q) = 0 THEN 'latency'
        WHEN grouping(minute) = 0 THEN 'minute'
        ELSE 'finance'
    END AS grouping_set,
    dept, project, task, provider, model, price_id, currency, cache_hit, latency_q, minute,
    count(*) AS requests,
    sum(CASE WHEN error THEN 1 ELSE 0 END) AS errors,
    sum(input_tokens) AS input_tokens,
    sum(output_tokens) AS output_tokens,
    sum(uncached_input) AS uncached_input,
    sum(cache_read) AS cache_read,
    sum(cache_write) AS cache_write,
    sum(CAST(cost_actual AS DECIMAL(38, 11))) AS logged_amount,
    count(cost_actual) AS logged_requests,
    sum(CASE WHEN cost_actual_invalid THEN 1 ELSE 0 END) AS logged_invalid,
    sum(CAST(citation_rate AS DECIMAL(38, 15))) AS citation_sum,
    count(citation_rate) AS citation_requests,
    sum(CASE WHEN citation_invalid THEN 1 ELSE 0 END) AS citation_invalid,
    sum(CASE WHEN human_reviewed THEN 1 ELSE 0 END) AS reviewed,
    sum(CASE WHEN human_reviewed AND human_approved THEN 1 ELSE 0 END) AS approved,
    sum(dup_dropped) AS duplicates_dropped,
    sum(dup_conflict) AS duplicate_conflicts,
    sum(CASE WHEN token_violation THEN 1 ELSE 0 END) AS token_violations,
    sum(CASE WHEN total_mismatch THEN 1 ELSE 0 END) AS total_tokens_mismatch
FROM r
GROUP BY GROUPING SETS (
    (dept, project, task, provider, model, price_id, currency, cache_hit),
    (provider, model, latency_q),
    (provider, model, minute)
)
