-- The day-level latency histogram of each earlier day (every model and
-- route merged), from the stored latency rollups of the comparison window.
-- `latency_history` holds their rows as stored, `epoch_day` the day each
-- came from (days since 1970-01-01). Histograms add up exactly; requests
-- without a latency take no part.
SELECT
    epoch_day,
    latency_ms,
    sum(greatest(requests, 0)) AS requests
FROM latency_history
WHERE latency_ms IS NOT NULL AND requests IS NOT NULL
GROUP BY epoch_day, latency_ms
