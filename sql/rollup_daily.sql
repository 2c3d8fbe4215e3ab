-- rollups/daily/date=D/: the day's additive measures by dept, project, task,
-- provider and model, money exact (DECIMAL(38, 23), unrounded), so that any
-- window of days can be summed and rounded once. The history later features
-- read instead of rescanning raw logs.
SELECT
    $date AS date,
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
    sum(cache_savings_usd) AS cache_savings_usd,
    sum(logged_cost_usd) AS logged_cost_usd,
    sum(citation_sum) AS citation_sum,
    sum(citation_requests) AS citation_requests,
    sum(reviewed) AS human_reviewed,
    sum(approved) AS human_approved,
    sum(duplicates_dropped) AS duplicates_dropped,
    sum(duplicate_conflicts) AS duplicate_conflicts,
    sum(token_violations) AS token_violations
FROM finance_lines
GROUP BY dept, project, task, provider, model
ORDER BY dept, project, task, provider, model
