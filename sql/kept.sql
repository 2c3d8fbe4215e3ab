-- The day's requests, one row each: rows that are not duplicate candidates,
-- plus the winner of each candidate trace_id (dup_winners.sql). Only the
-- columns the metrics read are named, so the scan decodes no others.
SELECT
    ts, dept, project, task, provider, model, latency_ms, error, cache_hit,
    citation_rate, human_reviewed, human_approved, input_tokens, output_tokens,
    total_tokens, cache_read_input_tokens, cache_creation_input_tokens,
    cost_actual, currency,
    0 AS dup_dropped,
    0 AS dup_conflict
FROM requests AS r
WHERE NOT EXISTS (SELECT 1 FROM dup_rows AS d WHERE d._pos = r._pos)
UNION ALL
SELECT
    ts, dept, project, task, provider, model, latency_ms, error, cache_hit,
    citation_rate, human_reviewed, human_approved, input_tokens, output_tokens,
    total_tokens, cache_read_input_tokens, cache_creation_input_tokens,
    cost_actual, currency, dup_dropped, dup_conflict
FROM dup_winners
