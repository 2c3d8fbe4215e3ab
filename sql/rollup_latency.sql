-- rollups/latency/date=D/: the day's latency histogram per (provider, model),
-- latency rounded to 4 significant digits. Histograms add up exactly, so
-- percentiles over any window of days come from the rollups alone.
SELECT
    $date AS date,
    provider,
    model,
    latency_q AS latency_ms,
    requests
FROM ops_counts
WHERE grouping_set = 'latency' AND latency_q IS NOT NULL
ORDER BY provider, model, latency_ms
