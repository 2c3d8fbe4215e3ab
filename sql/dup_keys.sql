-- Duplicate candidates: the `_trace_key`s (64-bit hashes of trace_id) seen
-- more than once among the day's rows. One narrow pass over trace_id only;
-- hash collisions are harmless, dup_winners.sql resolves on the full trace_id.
SELECT _trace_key
FROM requests
GROUP BY _trace_key
HAVING count(*) > 1
