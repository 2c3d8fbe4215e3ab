-- rollups/daily/date=D/: the day's additive measures by dept, project, task,
-- provider and model, money exact (DECIMAL(38, 23), unrounded), so that any
-- window of days can be summed and rounded once. The history later features
-- read instead of rescanning raw logs.
WITH f AS (
    SELECT
        dept, project, task, provider, model,
        sum(requests) AS requests,
        sum(errors) AS errors,
        sum(CASE WHEN cache_hit THEN requests ELSE 0 END) AS cache_hits,
        sum(input_tokens) AS input_tokens,
        sum(output_tokens) AS output_tokens,
        sum(cache_read) AS cache_read_input_tokens,
        sum(cache_write) AS cache_creation_input_tokens,
        sum(priced_tokens) AS priced_tokens,
        sum(CASE WHEN price_id IS NULL THEN requests ELSE 0 END) AS unpriced_requests,
        sum(cost_usd) AS cost_usd,
        sum(cost_uncached_input_usd) AS cost_uncached_input_usd,
        sum(cost_cache_read_usd) AS cost_cache_read_usd,
        sum(cost_cache_write_usd) AS cost_cache_write_usd,
        sum(cost_output_usd) AS cost_output_usd,
        sum(logged_compared_requests) AS logged_compared_requests,
        sum(logged_compared_usd) AS logged_compared_usd,
        sum(computed_compared_usd) AS computed_compared_usd,
        sum(cache_savings_usd) AS cache_savings_usd,
        sum(logged_cost_usd) AS logged_cost_usd,
        sum(citation_sum) AS citation_sum,
        sum(citation_requests) AS citation_requests,
        sum(reviewed) AS human_reviewed,
        sum(approved) AS human_approved,
        sum(token_violations) AS token_violations
    FROM finance_lines
    GROUP BY dept, project, task, provider, model
)
SELECT
    $date AS date,
    f.dept, f.project, f.task, f.provider, f.model,
    f.requests, f.errors, f.cache_hits, f.input_tokens, f.output_tokens,
    f.cache_read_input_tokens, f.cache_creation_input_tokens, f.priced_tokens,
    f.unpriced_requests, f.cost_usd, f.cache_savings_usd, f.logged_cost_usd,
    f.citation_sum, f.citation_requests, f.human_reviewed, f.human_approved,
    coalesce(d.duplicates_dropped, 0) AS duplicates_dropped,
    coalesce(d.duplicate_conflicts, 0) AS duplicate_conflicts,
    f.token_violations,
    -- added for reconciliation (older rollups lack them)
    f.cost_uncached_input_usd, f.cost_cache_read_usd, f.cost_cache_write_usd,
    f.cost_output_usd, f.logged_compared_requests, f.logged_compared_usd,
    f.computed_compared_usd
FROM f
LEFT JOIN dup_counts AS d
    ON f.dept = d.dept AND f.project = d.project AND f.task = d.task
    AND f.provider = d.provider AND f.model = d.model
ORDER BY f.dept, f.project, f.task, f.provider, f.model
