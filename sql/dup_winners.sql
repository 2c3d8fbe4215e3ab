-- The rows kept of the duplicate candidates: they go through cube.sql like
-- every other request, and their cube rows join the day's.
-- The join is built on the (filtered) resolution's positions, a few bytes a
-- row; the candidate rows with every column stream through as its probe side.
SELECT d.*
FROM dup_resolution AS r
JOIN dup_rows AS d ON d._pos = r._pos
WHERE NOT r.dropped
