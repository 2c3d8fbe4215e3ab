-- SPEC 2 de-duplication, decided over the duplicate candidates only
-- (`dup_rows`: the rows whose _trace_key is a candidate, which the finance
-- pass's scan sets aside with the columns the job reads, trace_id and _pos).
-- One row per trace_id is kept: the latest ts; ties go to the most
-- input+output tokens, then the greatest object key and row position (_pos).
-- For every candidate row: whether it is dropped, and on each kept row the
-- number of rows dropped for it and whether they differed from it in any
-- column that feeds a metric (a conflict; route, read for the route mix
-- only, region, cost_per_1k and reasoning_output_tokens are not compared). Rows of
-- different trace_ids that share a _trace_key (hash collisions) are separate
-- groups here.
--
-- Memory: the only rows joined whole are the candidates themselves, as the
-- probe side; the build side is one row per trace_id (`per_trace`, from
-- two spillable aggregates).
--
-- The kept row is found by an aggregate, `first_value(_pos ORDER BY ...)`
-- per trace_id, not by `row_number()` over a window: _pos is unique, so
-- the order is total and the row is the same; the window sorted every
-- candidate and cost ~2.8 us a row in its many two-row partitions.
WITH copies AS (
    SELECT
        trace_id,
        count(*) AS copies,
        first_value(_pos ORDER BY
            ts DESC,
            CAST(input_tokens AS DECIMAL(20, 0)) + CAST(output_tokens AS DECIMAL(20, 0)) DESC,
            _pos DESC
        ) AS kept_pos
    FROM dup_rows
    GROUP BY trace_id
),
variants AS (
    SELECT trace_id, count(*) AS variants
    FROM (
        SELECT DISTINCT
            ts, trace_id, dept, project, task, provider, model,
            latency_ms, error, cache_hit, citation_rate, human_reviewed, human_approved,
            input_tokens, output_tokens, total_tokens, cache_read_input_tokens,
            cache_creation_input_tokens, cost_actual, currency
        FROM dup_rows
    ) AS distinct_rows
    GROUP BY trace_id
),
per_trace AS (
    SELECT c.trace_id, c.copies, c.kept_pos, v.variants
    FROM copies AS c
    JOIN variants AS v ON c.trace_id = v.trace_id
)
SELECT
    r._pos,
    r._pos <> t.kept_pos AS dropped,
    coalesce(r.dept, '(untagged)') AS dept,
    coalesce(r.project, '(untagged)') AS project,
    coalesce(r.task, '(untagged)') AS task,
    r.provider,
    r.model,
    CASE WHEN r._pos = t.kept_pos THEN t.copies - 1 ELSE 0 END AS dup_dropped,
    CASE WHEN r._pos = t.kept_pos AND t.variants > 1 THEN 1 ELSE 0 END AS dup_conflict
FROM per_trace AS t
JOIN dup_rows AS r ON r.trace_id = t.trace_id
