-- The day's ops counts: request and error counts of the rows kept, in three
-- sets:
--   'latency': (provider, model, route, latency_q): an exact histogram of
--              latency rounded to 4 significant digits (<= 0.05% off), from
--              which percentiles are computed exactly and deterministically,
--              by route (the route mix of each model comes from its sums);
--   'minute':  (provider, model, minute), for qps_peak (UTC minutes are the
--              local calendar minutes: every zone offset is whole minutes);
--   'hour':    (hour, latency_q), hour = whole hours since the local day's
--              first instant ($day_start_ns; 23 or 25 of them on DST days),
--              for the hourly charts.
-- Keys outside their set are null. The counting is `ops_histogram`
-- (queries::functions), in day_sums.sql's one pass over the rows: it gives
-- exactly the rows of
--   GROUP BY GROUPING SETS ((provider, model, route, latency_q),
--                           (provider, model, minute), (hour, latency_q))
--   with count(*) AS requests, count(*) FILTER (WHERE error) AS errors
-- at a fraction of the cost (DataFusion's grouping-sets aggregate spent
-- 4.4 s of CPU on group ids at 10M rows). `ops_parts` holds its rows for
-- the day's rows but the duplicate candidates, then for the candidates
-- kept: a group in both is summed here (grouping keys are equal where both
-- are null, as GROUP BY has them).
SELECT
    grouping_set, provider, model, route, latency_q, minute, hour,
    sum(requests) AS requests,
    sum(errors) AS errors
FROM ops_parts
GROUP BY grouping_set, provider, model, route, latency_q, minute, hour
