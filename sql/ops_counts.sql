-- Request and error counts of the rows in `requests` (every row of the day;
-- later the duplicates dropped, to subtract: sql/ops_merge.sql) in three
-- sets, over the few columns they need:
--   'latency': (provider, model, route, latency_q): an exact histogram of
--              latency rounded to 4 significant digits (<= 0.05% off), from
--              which percentiles are computed exactly and deterministically,
--              by route (the route mix of each model comes from its sums);
--   'minute':  (provider, model, minute), for qps_peak (UTC minutes are the
--              local calendar minutes: every zone offset is whole minutes);
--   'hour':    (hour, latency_q), hour = whole hours since the local day's
--              first instant ($day_start_ns; 23 or 25 of them on DST days),
--              for the hourly charts.
-- The counting is `ops_histogram` (queries::functions), an aggregate that
-- gives exactly the rows of
--   GROUP BY GROUPING SETS ((provider, model, route, latency_q),
--                           (provider, model, minute), (hour, latency_q))
--   with count(*) AS requests, count(*) FILTER (WHERE error) AS errors
-- (keys outside their set null), at a fraction of the cost: DataFusion's
-- grouping-sets aggregate spent 4.4 s of CPU on group ids at 10M rows.
WITH r AS (
    SELECT
        provider,
        model,
        route,
        date_trunc('minute', ts) AS minute,
        CAST((CAST(ts AS BIGINT) - $day_start_ns) / 3600000000000 AS INT) AS hour,
        error,
        -- rounded to 4 significant digits (<= 0.05% off); null, NaN,
        -- infinite and absurd (> 1e300) latencies null: they take no part
        -- in percentiles (the rule: queries::functions::latency_q)
        latency_q(latency_ms) AS latency_q
    FROM requests
)
SELECT
    get_field(c, 'grouping_set') AS grouping_set,
    get_field(c, 'provider') AS provider,
    get_field(c, 'model') AS model,
    get_field(c, 'route') AS route,
    get_field(c, 'latency_q') AS latency_q,
    get_field(c, 'minute') AS minute,
    get_field(c, 'hour') AS hour,
    get_field(c, 'requests') AS requests,
    get_field(c, 'errors') AS errors
FROM (
    SELECT unnest(ops_histogram(provider, model, route, latency_q, minute, hour, error)) AS c
    FROM r
)
