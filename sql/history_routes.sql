-- Requests by route of each (provider, model) on each earlier day, from
-- the stored latency rollups of the comparison window (see
-- history_latency.sql); only rollups written since routes were kept
-- (`routes_kept`) say anything about routes.
SELECT
    epoch_day,
    provider,
    model,
    route,
    sum(requests) AS requests
FROM latency_history
WHERE routes_kept
GROUP BY epoch_day, provider, model, route
