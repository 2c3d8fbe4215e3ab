-- The day hour by hour, for the Operational dashboard's charts: requests,
-- errors, error rate and latency percentiles per hour since the local day's
-- first instant (hour 0 starts at local midnight; 23 or 25 hours on DST days).
WITH t AS (
    SELECT hour, sum(requests) AS requests, sum(errors) AS errors
    FROM ops_counts
    WHERE grouping_set = 'hour'
    GROUP BY hour
)
SELECT
    t.hour,
    t.requests,
    t.errors,
    CAST(t.errors AS DOUBLE) / t.requests AS error_rate,
    l.p50 AS latency_p50_ms,
    l.p95 AS latency_p95_ms,
    l.p99 AS latency_p99_ms
FROM t
LEFT JOIN latency_percentiles AS l ON l.scope = 'hour' AND l.hour = t.hour
ORDER BY t.hour
