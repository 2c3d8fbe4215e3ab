-- reconciliation_evidence.csv and incident traces: for one group of the day
-- (`evidence_keys`, one row of dept, project, task, provider, model; null
-- matches anything) — a logged (provider, model) behind a mismatching
-- reconciliation line, or an incident's group — its most expensive requests
-- with the price row each was priced by. Runs once per
-- such pair, only when there is a mismatch: a narrow scan of the day
-- (`priced` over every row of the day) into a top-k. Unpriced requests rank
-- after priced ones, by tokens. 40 rows: duplicate deliveries of a trace are
-- dropped afterwards and 20 distinct traces kept.
WITH c AS (
    SELECT
        p.ts, p.trace_id, p.provider, p.model, p.price_id, p.cache_hit,
        p.input_tokens, p.output_tokens,
        coalesce(p.cache_read_input_tokens, 0) AS cache_read,
        coalesce(p.cache_creation_input_tokens, 0) AS cache_write,
        m.valid_from, m.valid_to,
        m.input_usd_per_token, m.output_usd_per_token,
        m.cache_read_usd_per_token, m.cache_write_usd_per_token,
        CASE
            WHEN p.price_id IS NULL THEN NULL
            WHEN p.cache_hit THEN CAST(0 AS DECIMAL(38, 23))
            ELSE CAST(greatest(p.input_tokens - coalesce(p.cache_read_input_tokens, 0) - coalesce(p.cache_creation_input_tokens, 0), 0) AS DECIMAL(20, 0)) * coalesce(m.input_usd_per_token, 0)
                + CAST(coalesce(p.cache_read_input_tokens, 0) AS DECIMAL(20, 0)) * coalesce(m.cache_read_usd_per_token, 0)
                + CAST(coalesce(p.cache_creation_input_tokens, 0) AS DECIMAL(20, 0)) * coalesce(m.cache_write_usd_per_token, 0)
                + CAST(p.output_tokens AS DECIMAL(20, 0)) * coalesce(m.output_usd_per_token, 0)
        END AS cost
    FROM priced AS p
    CROSS JOIN evidence_keys AS k
    LEFT JOIN price_map AS m
        ON p.provider = m.provider AND p.model = m.model AND p.price_id = m.price_id
    -- the group: a null column of the one-row filter matches anything
    WHERE (k.dept IS NULL OR coalesce(p.dept, '(untagged)') = k.dept)
        AND (k.project IS NULL OR coalesce(p.project, '(untagged)') = k.project)
        AND (k.task IS NULL OR coalesce(p.task, '(untagged)') = k.task)
        AND (k.provider IS NULL OR p.provider = k.provider)
        AND (k.model IS NULL OR p.model = k.model)
)
SELECT
    provider, model, trace_id, ts, cache_hit,
    input_tokens, cache_read AS cache_read_input_tokens,
    cache_write AS cache_creation_input_tokens, output_tokens,
    round_money(cost) AS cost_usd,
    price_id,
    CAST(input_usd_per_token * CAST(1000 AS DECIMAL(4, 0)) AS DECIMAL(38, 20)) AS input_usd_per_1k,
    CAST(output_usd_per_token * CAST(1000 AS DECIMAL(4, 0)) AS DECIMAL(38, 20)) AS output_usd_per_1k,
    CAST(cache_read_usd_per_token * CAST(1000 AS DECIMAL(4, 0)) AS DECIMAL(38, 20)) AS cache_read_usd_per_1k,
    CAST(cache_write_usd_per_token * CAST(1000 AS DECIMAL(4, 0)) AS DECIMAL(38, 20)) AS cache_write_usd_per_1k,
    valid_from AS price_valid_from,
    -- an open price row (valid_to = the largest instant) has no end
    CASE WHEN CAST(valid_to AS BIGINT) < 9223372036854775807 THEN valid_to END AS price_valid_to
FROM c
-- a top-k: memory for 40 rows, whatever the day's size
ORDER BY cost DESC NULLS LAST, input_tokens + output_tokens DESC, trace_id, ts
LIMIT 40
