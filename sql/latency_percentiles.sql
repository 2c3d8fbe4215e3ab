-- Latency percentiles (p50, p95, p99) from the exact histograms in
-- ops_counts, for three scopes: 'day' (provider, model and hour null),
-- 'model' (per provider and model) and 'hour' (per hour of the day). Each
-- with quantile_cont's interpolation: at rank h = (n - 1) * p (0-based),
-- x[floor h] + (h - floor h) * (x[ceil h] - x[floor h]).
WITH by_model AS (
    SELECT provider, model, latency_q AS v, sum(requests) AS c
    FROM ops_counts
    WHERE grouping_set = 'latency' AND latency_q IS NOT NULL
    GROUP BY provider, model, latency_q
),
by_day AS (
    SELECT latency_q AS v, sum(requests) AS c
    FROM ops_counts
    WHERE grouping_set = 'latency' AND latency_q IS NOT NULL
    GROUP BY latency_q
),
-- the 'hour' set is already one row per (hour, latency_q)
by_hour AS (
    SELECT hour, latency_q AS v, requests AS c
    FROM ops_counts
    WHERE grouping_set = 'hour' AND latency_q IS NOT NULL
),
-- Each scope's running counts sorted on its own narrow keys: one sort of
-- every scope's rows on (scope, provider, model, hour, v) held ~70 MB at
-- 20M requests (~400K histogram rows, most of them the hours').
w AS (
    SELECT
        'model' AS scope, provider, model, CAST(NULL AS INT) AS hour, v,
        sum(c) OVER (PARTITION BY provider, model ORDER BY v ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS cum,
        sum(c) OVER (PARTITION BY provider, model) AS n
    FROM by_model
    UNION ALL
    SELECT
        'day', NULL, NULL, NULL, v,
        sum(c) OVER (ORDER BY v ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW),
        sum(c) OVER ()
    FROM by_day
    UNION ALL
    SELECT
        'hour', NULL, NULL, hour, v,
        sum(c) OVER (PARTITION BY hour ORDER BY v ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW),
        sum(c) OVER (PARTITION BY hour)
    FROM by_hour
),
bounds AS (
    SELECT
        scope, provider, model, hour, n,
        min(v) FILTER (WHERE cum > floor((n - 1) * 0.5)) AS p50_lo,
        min(v) FILTER (WHERE cum > ceil((n - 1) * 0.5)) AS p50_hi,
        min(v) FILTER (WHERE cum > floor((n - 1) * 0.95)) AS p95_lo,
        min(v) FILTER (WHERE cum > ceil((n - 1) * 0.95)) AS p95_hi,
        min(v) FILTER (WHERE cum > floor((n - 1) * 0.99)) AS p99_lo,
        min(v) FILTER (WHERE cum > ceil((n - 1) * 0.99)) AS p99_hi
    FROM w
    GROUP BY scope, provider, model, hour, n
)
SELECT
    scope,
    provider,
    model,
    hour,
    p50_lo + ((n - 1) * 0.5 - floor((n - 1) * 0.5)) * (p50_hi - p50_lo) AS p50,
    p95_lo + ((n - 1) * 0.95 - floor((n - 1) * 0.95)) * (p95_hi - p95_lo) AS p95,
    p99_lo + ((n - 1) * 0.99 - floor((n - 1) * 0.99)) * (p99_hi - p99_lo) AS p99
FROM bounds
