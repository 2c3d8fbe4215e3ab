-- Latency percentiles (p50, p95, p99) from the exact histograms in
-- ops_counts, for three scopes: 'day' (provider, model and hour null),
-- 'model' (per provider and model) and 'hour' (per hour of the day). Each
-- with quantile_cont's interpolation: at rank h = (n - 1) * p (0-based),
-- x[floor h] + (h - floor h) * (x[ceil h] - x[floor h]), by
-- hist_quantiles(value, count) (queries::functions::hist_quantiles: one
-- sort of each group's histogram rows; a unit test holds it bit for bit to
-- the running window sums it replaced, which cost 0.29 s at 5M requests).
-- A value in several rows of a group (the 'latency' set has one row per
-- route) counts once with their summed count.
WITH latency AS (
    SELECT provider, model, latency_q, requests
    FROM ops_counts
    WHERE grouping_set = 'latency' AND latency_q IS NOT NULL
),
q AS (
    SELECT
        'model' AS scope, provider, model, CAST(NULL AS INT) AS hour,
        hist_quantiles(latency_q, requests) AS p
    FROM latency
    GROUP BY provider, model
    UNION ALL
    SELECT 'day', NULL, NULL, NULL, hist_quantiles(latency_q, requests)
    FROM latency
    -- no row of the day without a latency, as for the other scopes
    HAVING count(*) > 0
    UNION ALL
    -- the 'hour' set is already one row per (hour, latency_q)
    SELECT 'hour', NULL, NULL, hour, hist_quantiles(latency_q, requests)
    FROM ops_counts
    WHERE grouping_set = 'hour' AND latency_q IS NOT NULL
    GROUP BY hour
)
SELECT
    scope,
    provider,
    model,
    hour,
    get_field(p, 'p50') AS p50,
    get_field(p, 'p95') AS p95,
    get_field(p, 'p99') AS p99
FROM q
