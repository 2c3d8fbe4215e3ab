-- Duplicates dropped and trace_ids whose copies conflicted, counted against
-- the dimensions and (provider, model) of the row kept.
SELECT
    dept, project, task, provider, model,
    sum(dup_dropped) AS duplicates_dropped,
    sum(dup_conflict) AS duplicate_conflicts
FROM dup_resolution
WHERE NOT dropped
GROUP BY dept, project, task, provider, model
HAVING sum(dup_dropped) > 0
