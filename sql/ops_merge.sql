-- The day's ops counts: counts over every row of the day (`ops_all`, taken
-- before duplicates were resolved) less the counts of the duplicate rows
-- dropped (`ops_losers`). Counts subtract exactly; groups left empty go.
-- A join, not a re-aggregation of the whole histogram (grouping-set keys
-- are NULL outside their set, hence IS NOT DISTINCT FROM): DataFusion
-- builds its hash table on the smaller input by the in-memory tables'
-- statistics, the losers' few groups (0.9 MB at 300K rows), and streams
-- `ops_all` through it. Registered as a view, it is evaluated by each
-- output that reads it: the histogram is never held twice. `requests`
-- stays nullable as the sum it replaced (the latency rollup's Parquet
-- schema must not change): nullif never fires, as only counts > 0 remain.
SELECT
    a.grouping_set, a.provider, a.model, a.route, a.latency_q, a.minute, a.hour,
    nullif(a.requests - coalesce(l.requests, 0), 0) AS requests,
    a.errors - coalesce(l.errors, 0) AS errors
FROM ops_all AS a
LEFT JOIN ops_losers AS l
    ON (a.grouping_set IS NOT DISTINCT FROM l.grouping_set)
    AND (a.provider IS NOT DISTINCT FROM l.provider)
    AND (a.model IS NOT DISTINCT FROM l.model)
    AND (a.route IS NOT DISTINCT FROM l.route)
    AND (a.latency_q IS NOT DISTINCT FROM l.latency_q)
    AND (a.minute IS NOT DISTINCT FROM l.minute)
    AND (a.hour IS NOT DISTINCT FROM l.hour)
WHERE a.requests - coalesce(l.requests, 0) > 0
