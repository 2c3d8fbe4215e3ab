-- Request counts of the rows in `requests` (every row of the day; later the
-- duplicates dropped, to subtract: sql/ops_merge.sql) in two grouping sets,
-- over the few columns they need:
--   'latency': (provider, model, latency_q): an exact histogram of latency
--              rounded to 4 significant digits (<= 0.05% off), from which
--              percentiles are computed exactly and deterministically;
--   'minute':  (provider, model, minute), for qps_peak (UTC minutes are the
--              local calendar minutes: every zone offset is whole minutes).
WITH r AS (
    SELECT
        provider,
        model,
        date_trunc('minute', ts) AS minute,
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
    -- minute is never null in its own set
    CASE WHEN minute IS NULL THEN 'latency' ELSE 'minute' END AS grouping_set,
    provider,
    model,
    latency_q,
    minute,
    count(*) AS requests
FROM r
GROUP BY GROUPING SETS ((provider, model, latency_q), (provider, model, minute))
