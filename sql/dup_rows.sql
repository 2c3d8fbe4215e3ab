-- The duplicate candidates' rows, spilled to local disk before they are
-- resolved: the columns the job reads, the trace_id and the position.
-- `dup_candidates` is the day scan keeping only rows whose _trace_key is a
-- candidate (sql/dup_keys.sql), decoding these columns for those rows only.
SELECT
    ts, trace_id, dept, project, task, provider, model, latency_ms, error,
    cache_hit, citation_rate, human_reviewed, human_approved, input_tokens,
    output_tokens, total_tokens, cache_read_input_tokens,
    cache_creation_input_tokens, cost_actual, currency, _pos
FROM dup_candidates
