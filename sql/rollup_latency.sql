-- rollups/latency/date=D/: the day's latency histogram per (provider, model,
-- route), latency rounded to 4 significant digits. Histograms add up
-- exactly, so percentiles over any window of days come from the rollups
-- alone; the requests without a latency are a row with latency_ms null, so
-- the rows of a (provider, model) also give its route mix.
SELECT
    $date AS date,
    provider,
    model,
    route,
    latency_q AS latency_ms,
    requests
FROM ops_counts
WHERE grouping_set = 'latency'
ORDER BY provider, model, route NULLS FIRST, latency_ms NULLS FIRST
