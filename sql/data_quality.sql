-- Data-quality facts per (provider, model): unpriced requests (SPEC 2),
-- token-invariant violations, total_tokens that disagree with input+output,
-- logged costs that could not be converted to USD (no currency, or no FX
-- rate) or are not finite, citation rates outside 0..1, and duplicates.
WITH dq AS (
    SELECT
        provider,
        model,
        sum(requests) AS requests,
        sum(CASE WHEN price_id IS NULL THEN requests ELSE 0 END) AS unpriced_requests,
        sum(token_violations) AS token_violations,
        sum(total_tokens_mismatch) AS total_tokens_mismatch,
        sum(logged_unconverted) AS logged_cost_unconverted,
        sum(logged_invalid) AS logged_cost_invalid,
        sum(citation_invalid) AS citation_rate_invalid
    FROM finance_lines
    GROUP BY provider, model
),
dups AS (
    SELECT provider, model, sum(duplicates_dropped) AS dropped, sum(duplicate_conflicts) AS conflicts
    FROM dup_counts
    GROUP BY provider, model
)
SELECT
    dq.*,
    coalesce(dups.dropped, 0) AS duplicates_dropped,
    coalesce(dups.conflicts, 0) AS duplicate_conflicts
FROM dq
LEFT JOIN dups ON dq.provider = dups.provider AND dq.model = dups.model
ORDER BY dq.provider, dq.model
