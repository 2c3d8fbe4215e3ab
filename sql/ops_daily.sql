-- ops_daily.csv (SPEC 3): the day's Operational metrics (SPEC 2 "Rates").
-- qps_avg divides by the seconds of the local day ($seconds: 82800, 86400 or
-- 90000 on DST days); qps_peak is the busiest calendar minute / 60.
WITH t AS (
    SELECT
        sum(requests) AS requests,
        sum(errors) AS errors,
        sum(CASE WHEN cache_hit THEN requests ELSE 0 END) AS cache_hits,
        sum(citation_sum) AS citation_sum,
        sum(citation_requests) AS citation_requests,
        sum(reviewed) AS reviewed,
        sum(approved) AS approved
    FROM cube
),
dups AS (
    SELECT
        coalesce(sum(duplicates_dropped), 0) AS duplicates_dropped,
        coalesce(sum(duplicate_conflicts), 0) AS duplicate_conflicts
    FROM dup_counts
),
peak AS (
    SELECT max(n) AS peak
    FROM (SELECT minute, sum(requests) AS n FROM ops_counts WHERE grouping_set = 'minute' GROUP BY minute) AS per_minute
),
l AS (
    SELECT p50, p95, p99 FROM latency_percentiles WHERE scope = 'day'
)
SELECT
    $date AS date,
    t.requests,
    CAST(t.requests AS DOUBLE) / $seconds AS qps_avg,
    CAST(peak.peak AS DOUBLE) / 60 AS qps_peak,
    CAST(t.errors AS DOUBLE) / t.requests AS error_rate,
    l.p50 AS latency_p50_ms,
    l.p95 AS latency_p95_ms,
    l.p99 AS latency_p99_ms,
    CAST(t.cache_hits AS DOUBLE) / t.requests AS cache_hit_rate,
    CASE WHEN t.citation_requests > 0 THEN CAST(t.citation_sum AS DOUBLE) / t.citation_requests END AS citation_rate_mean,
    t.reviewed AS human_reviewed,
    CASE WHEN t.reviewed > 0 THEN CAST(t.approved AS DOUBLE) / t.reviewed END AS human_review_pass_rate,
    dups.duplicates_dropped,
    dups.duplicate_conflicts
FROM t
CROSS JOIN peak
CROSS JOIN dups
LEFT JOIN l ON true
