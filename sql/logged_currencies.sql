-- Currencies of the day's logged costs, with how many requests carry each
-- and whether an FX rate converts them (null currency: none logged).
SELECT
    currency,
    sum(logged_requests) AS logged_requests,
    max(CASE WHEN has_rate THEN 1 ELSE 0 END) = 1 AS has_rate
FROM (
    SELECT upper(trim(c.currency)) AS currency, c.logged_requests, fx.currency IS NOT NULL AS has_rate
    FROM cube AS c
    LEFT JOIN fx_rates AS fx ON upper(trim(c.currency)) = fx.currency
    WHERE c.logged_requests > 0
) AS logged
GROUP BY currency
ORDER BY currency NULLS FIRST
