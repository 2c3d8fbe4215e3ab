-- Currencies of the day's logged costs, with how many requests carry each
-- and whether an FX rate converts them (null currency: none logged).
SELECT
    c.currency,
    sum(c.logged_requests) AS logged_requests,
    max(CASE WHEN fx.currency IS NULL THEN 0 ELSE 1 END) = 1 AS has_rate
FROM cube AS c
LEFT JOIN fx_rates AS fx ON c.currency = fx.currency
WHERE c.grouping_set = 'finance' AND c.logged_requests > 0
GROUP BY c.currency
ORDER BY c.currency NULLS FIRST
