-- ops_by_model.csv (SPEC 3): the ops_daily metrics per (provider, model).
-- Duplicates count against the (provider, model) of the row that was kept.
WITH m AS (
    SELECT
        provider, model,
        sum(requests) AS requests,
        sum(errors) AS errors,
        sum(CASE WHEN cache_hit THEN requests ELSE 0 END) AS cache_hits,
        sum(citation_sum) AS citation_sum,
        sum(citation_requests) AS citation_requests,
        sum(reviewed) AS reviewed,
        sum(approved) AS approved
    FROM cube
    GROUP BY provider, model
),
dups AS (
    SELECT provider, model, sum(duplicates_dropped) AS dropped, sum(duplicate_conflicts) AS conflicts
    FROM dup_counts
    GROUP BY provider, model
),
peak AS (
    SELECT provider, model, max(requests) AS peak
    FROM ops_counts
    WHERE grouping_set = 'minute'
    GROUP BY provider, model
)
SELECT
    $date AS date,
    m.provider,
    m.model,
    m.requests,
    CAST(m.requests AS DOUBLE) / $seconds AS qps_avg,
    CAST(peak.peak AS DOUBLE) / 60 AS qps_peak,
    CAST(m.errors AS DOUBLE) / m.requests AS error_rate,
    l.p50 AS latency_p50_ms,
    l.p95 AS latency_p95_ms,
    l.p99 AS latency_p99_ms,
    CAST(m.cache_hits AS DOUBLE) / m.requests AS cache_hit_rate,
    CASE WHEN m.citation_requests > 0 THEN CAST(m.citation_sum AS DOUBLE) / m.citation_requests END AS citation_rate_mean,
    m.reviewed AS human_reviewed,
    CASE WHEN m.reviewed > 0 THEN CAST(m.approved AS DOUBLE) / m.reviewed END AS human_review_pass_rate,
    coalesce(d.dropped, 0) AS duplicates_dropped,
    coalesce(d.conflicts, 0) AS duplicate_conflicts
FROM m
JOIN peak ON m.provider = peak.provider AND m.model = peak.model
LEFT JOIN latency_percentiles AS l
    ON l.scope = 'model' AND m.provider = l.provider AND m.model = l.model
LEFT JOIN dups AS d ON m.provider = d.provider AND m.model = d.model
ORDER BY m.provider, m.model
