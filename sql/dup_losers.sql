-- The duplicate rows dropped (SPEC 2): counted by dup_counts.sql; their
-- (provider, model) pairs join the day's price map (model_pairs.sql).
-- The join is built on the (filtered) resolution's positions, a few bytes a
-- row; the candidate rows with every column stream through as its probe side.
SELECT d.*
FROM dup_resolution AS r
JOIN dup_rows AS d ON d._pos = r._pos
WHERE r.dropped
