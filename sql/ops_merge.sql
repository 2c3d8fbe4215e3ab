-- The day's ops counts: counts over every row of the day (`ops_all`, taken
-- before duplicates were resolved) less the counts of the duplicate rows
-- dropped (`ops_losers`). Counts subtract exactly; groups left empty go.
SELECT
    grouping_set, provider, model, route, latency_q, minute, hour,
    sum(requests) AS requests,
    sum(errors) AS errors
FROM (
    SELECT grouping_set, provider, model, route, latency_q, minute, hour, requests, errors FROM ops_all
    UNION ALL
    SELECT grouping_set, provider, model, route, latency_q, minute, hour, -requests, -errors FROM ops_losers
) AS parts
GROUP BY grouping_set, provider, model, route, latency_q, minute, hour
HAVING sum(requests) > 0
