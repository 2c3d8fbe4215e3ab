-- The positions (_pos) of the duplicate rows to drop; the metric scan skips
-- them, so the day's rows are never joined to remove duplicates.
SELECT _pos FROM dup_resolution WHERE dropped
