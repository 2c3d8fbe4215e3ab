-- Data-quality facts per (provider, model): unpriced requests (SPEC 2),
-- token-invariant violations, total_tokens that disagree with input+output,
-- logged costs that could not be converted to USD (no currency, or no FX
-- rate) or are not finite, citation rates outside 0..1, and duplicates.
SELECT
    provider,
    model,
    sum(requests) AS requests,
    sum(CASE WHEN price_id IS NULL THEN requests ELSE 0 END) AS unpriced_requests,
    sum(token_violations) AS token_violations,
    sum(total_tokens_mismatch) AS total_tokens_mismatch,
    sum(logged_unconverted) AS logged_cost_unconverted,
    sum(logged_invalid) AS logged_cost_invalid,
    sum(citation_invalid) AS citation_rate_invalid,
    sum(duplicates_dropped) AS duplicates_dropped,
    sum(duplicate_conflicts) AS duplicate_conflicts
FROM finance_lines
GROUP BY provider, model
ORDER BY provider, model
