-- The duplicate rows dropped (SPEC 2): their ops counts are subtracted from
-- the counts over all rows (sql/ops_merge.sql).
SELECT d.*
FROM dup_rows AS d
JOIN dup_resolution AS r ON d._pos = r._pos
WHERE r.dropped
