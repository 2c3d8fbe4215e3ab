-- The rows kept of the duplicate candidates: they go through day_sums.sql
-- like every other request, and their sums join the day's (`_candidate`
-- false: resolved, they count as any row does).
-- The join is built on the (filtered) resolution's positions, a few bytes a
-- row; the candidate rows with every column stream through as its probe side.
SELECT d.*, false AS _candidate
FROM dup_resolution AS r
JOIN dup_rows AS d ON d._pos = r._pos
WHERE NOT r.dropped
