-- The rows kept of the duplicate candidates: they go through priced.sql and
-- cube.sql like every other request, and their cube rows join the day's.
SELECT d.*
FROM dup_rows AS d
JOIN dup_resolution AS r ON d._pos = r._pos
WHERE NOT r.dropped
