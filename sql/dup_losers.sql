-- The duplicate rows dropped (SPEC 2): their ops counts are subtracted from
-- the counts over all rows (sql/ops_merge.sql).
-- The join is built on the (filtered) resolution's positions, a few bytes a
-- row; the candidate rows with every column stream through as its probe side.
SELECT d.*
FROM dup_resolution AS r
JOIN dup_rows AS d ON d._pos = r._pos
WHERE r.dropped
