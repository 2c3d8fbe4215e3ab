-- SPEC 1.2: each request in `requests` finds the price row in force at its
-- own ts, as a range join on the logged (provider, model). The rule of
-- record, row by row: evidence.sql reads it for the requests it lists;
-- cube.sql applies the same rule to groups of requests (a unit test holds
-- the two to each other). `price_map` holds only the rows
-- in force during the report day for the pairs logged that day (alias rules
-- already applied), so each request meets one or two candidates. No match:
-- price_id is null and the request is unpriced. A price row without a price
-- for a kind of token the request has (e.g. no output price, and output
-- tokens) leaves it unpriced too: never priced by guesswork, never as 0.
-- Only the columns the metrics (and the reconciliation evidence) read are
-- named; a reader's unused columns are never decoded.
SELECT
    r.ts, r.trace_id, r.dept, r.project, r.task, r.provider, r.model, r.latency_ms, r.error,
    r.cache_hit, r.citation_rate, r.human_reviewed, r.human_approved,
    r.input_tokens, r.output_tokens, r.total_tokens, r.cache_read_input_tokens,
    r.cache_creation_input_tokens, r.cost_actual, r.currency,
    CASE
        WHEN p.complete OR p.price_id IS NULL THEN p.price_id
        WHEN NOT p.has_output AND r.output_tokens <> 0 THEN NULL
        WHEN NOT p.has_cache_read AND coalesce(r.cache_read_input_tokens, 0) <> 0 THEN NULL
        WHEN NOT p.has_cache_write AND coalesce(r.cache_creation_input_tokens, 0) <> 0 THEN NULL
        WHEN NOT p.has_input
            AND r.input_tokens - coalesce(r.cache_read_input_tokens, 0) - coalesce(r.cache_creation_input_tokens, 0) > 0
            THEN NULL
        ELSE p.price_id
    END AS price_id
FROM requests AS r
LEFT JOIN price_map AS p
    ON r.provider = p.provider
    AND r.model = p.model
    AND r.ts >= p.valid_from
    AND r.ts < p.valid_to
