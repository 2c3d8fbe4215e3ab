-- The (provider, model) pairs logged during the day, with their rows
-- (duplicates included, so that every pair that can be kept is there):
-- the pairs the price map is built for (alias rules are applied in Rust to
-- these few distinct names, never per row).
SELECT provider, model, sum(requests) AS requests
FROM ops_all
WHERE grouping_set = 'minute'
GROUP BY provider, model
ORDER BY provider, model
