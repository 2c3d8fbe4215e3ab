-- The (provider, model) pairs logged during the day: those of the rows
-- kept (`cube_groups`) and of the duplicates dropped (`dup_losers`), so
-- that every pair of the day is there: the pairs the price map is built
-- for (alias rules are applied in Rust to these few distinct names, never
-- per row).
SELECT provider, model
FROM (
    SELECT provider, model FROM cube_groups
    UNION ALL
    SELECT provider, model FROM dup_losers
)
GROUP BY provider, model
ORDER BY provider, model
