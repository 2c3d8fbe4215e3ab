-- SPEC 2 de-duplication, over the rows of the duplicate candidates only
-- (`dup_rows`: every column of every row whose _trace_key is a candidate).
-- One row per trace_id: the latest ts wins; ties go to the most
-- input+output tokens, then the greatest object key and row position (_pos).
-- `dup_dropped` counts the rows removed; `dup_conflict` is 1 when the rows of
-- the trace_id were not all identical in every column the job reads.
WITH ranked AS (
    SELECT
        *,
        row_number() OVER (
            PARTITION BY trace_id
            ORDER BY ts DESC,
                     CAST(input_tokens AS DECIMAL(20, 0)) + CAST(output_tokens AS DECIMAL(20, 0)) DESC,
                     _pos DESC
        ) AS rn,
        count(*) OVER (PARTITION BY trace_id) AS copies
    FROM dup_rows
),
variants AS (
    SELECT trace_id, count(*) AS variants
    FROM (
        SELECT DISTINCT
            ts, trace_id, dept, project, task, provider, model, route, region,
            latency_ms, error, cache_hit, citation_rate, human_reviewed, human_approved,
            input_tokens, output_tokens, total_tokens, cache_read_input_tokens,
            cache_creation_input_tokens, reasoning_output_tokens, cost_per_1k,
            cost_actual, currency
        FROM dup_rows
    ) AS distinct_rows
    GROUP BY trace_id
)
SELECT
    r.ts, r.dept, r.project, r.task, r.provider, r.model, r.latency_ms, r.error,
    r.cache_hit, r.citation_rate, r.human_reviewed, r.human_approved,
    r.input_tokens, r.output_tokens, r.total_tokens, r.cache_read_input_tokens,
    r.cache_creation_input_tokens, r.cost_actual, r.currency,
    r.copies - 1 AS dup_dropped,
    CASE WHEN v.variants > 1 THEN 1 ELSE 0 END AS dup_conflict
FROM ranked AS r
JOIN variants AS v ON r.trace_id = v.trace_id
WHERE r.rn = 1
