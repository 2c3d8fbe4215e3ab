-- The (provider, model) pairs logged during the day, with their row counts:
-- the pairs the price map is built for (alias rules are applied in Rust to
-- these few distinct names, never per row).
SELECT provider, model, count(*) AS requests
FROM requests
GROUP BY provider, model
ORDER BY provider, model
