-- finance_by_dimension.csv (SPEC 3): spend by dept, project, task, provider
-- and model. Money is rounded once, half to even, to 6 decimals
-- (round_money); cost_per_1k_usd = 1000 * cost / priced tokens, the exact
-- quotient rounded half to even (div_money). A group with no priced request
-- has empty cost cells, not 0.
SELECT
    $date AS date,
    dept, project, task, provider, model,
    sum(requests) AS requests,
    sum(input_tokens) AS input_tokens,
    sum(output_tokens) AS output_tokens,
    round_money(sum(cost_usd)) AS cost_usd,
    div_money(sum(cost_usd) * 1000, sum(priced_tokens)) AS cost_per_1k_usd,
    round_money(sum(cache_savings_usd)) AS cache_savings_usd,
    round_money(sum(logged_cost_usd)) AS logged_cost_usd,
    sum(CASE WHEN price_id IS NULL THEN requests ELSE 0 END) AS unpriced_requests
FROM finance_lines
GROUP BY dept, project, task, provider, model
ORDER BY dept, project, task, provider, model
