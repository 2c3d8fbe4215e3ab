-- Request and error counts of the rows in `requests` (every row of the day;
-- later the duplicates dropped, to subtract: sql/ops_merge.sql) in three
-- grouping sets, over the few columns they need:
--   'latency': (provider, model, route, latency_q): an exact histogram of
--              latency rounded to 4 significant digits (<= 0.05% off), from
--              which percentiles are computed exactly and deterministically,
--              by route (the route mix of each model comes from its sums);
--   'minute':  (provider, model, minute), for qps_peak (UTC minutes are the
--              local calendar minutes: every zone offset is whole minutes);
--   'hour':    (hour, latency_q), hour = whole hours since the local day's
--              first instant ($day_start_ns; 23 or 25 of them on DST days),
--              for the hourly charts.
WITH r AS (
    SELECT
        provider,
        model,
        route,
        date_trunc('minute', ts) AS minute,
        CAST((CAST(ts AS BIGINT) - $day_start_ns) / 3600000000000 AS INT) AS hour,
        error,
        CASE
            -- null, NaN and infinite latencies take no part in percentiles
            WHEN latency_ms IS NULL OR NOT (abs(latency_ms) <= 1e300) THEN NULL
            -- whole milliseconds below 10 s already have at most 4 digits
            WHEN abs(latency_ms) < 10000 AND latency_ms = trunc(latency_ms) THEN latency_ms
            WHEN latency_ms = 0 THEN 0.0
            WHEN abs(latency_ms) >= 10000 THEN signum(latency_ms)
                * round(abs(latency_ms) / power(10.0, floor(log10(abs(latency_ms))) - 3))
                * power(10.0, floor(log10(abs(latency_ms))) - 3)
            ELSE signum(latency_ms)
                * round(abs(latency_ms) * power(10.0, 3 - floor(log10(abs(latency_ms)))))
                / power(10.0, 3 - floor(log10(abs(latency_ms))))
        END AS latency_q
    FROM requests
)
SELECT
    -- minute and hour are never null in their own sets
    CASE
        WHEN minute IS NOT NULL THEN 'minute'
        WHEN hour IS NOT NULL THEN 'hour'
        ELSE 'latency'
    END AS grouping_set,
    provider,
    model,
    route,
    latency_q,
    minute,
    hour,
    count(*) AS requests,
    count(*) FILTER (WHERE error) AS errors
FROM r
GROUP BY GROUPING SETS ((provider, model, route, latency_q), (provider, model, minute), (hour, latency_q))
