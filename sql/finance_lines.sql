-- The finance grain of the cube, with money (SPEC 2):
--   cost_usd:          0 for cache hits; else uncached input, cache-read,
--                      cache-write and output tokens at the price row's
--                      per-token prices; null when unpriced (never 0).
--   cache_savings_usd: what the cache hits would have cost by the same rule.
--   priced_tokens:     input + output tokens of priced non-cache-hit requests
--                      (the cost_per_1k_usd denominator).
--   logged_cost_usd:   logged cost_actual in USD at the report date's rate;
--                      null where the currency is missing or has no rate.
--   cost_<token type>_usd: cost_usd split by the kind of token (uncached
--                      input, cache read, cache write, output), for
--                      reconciliation with invoices that bill them apart.
--   logged_compared_usd, computed_compared_usd, logged_compared_requests:
--                      the logged cost of the priced requests that have one
--                      in a convertible currency, and our cost of exactly
--                      those requests (logged_vs_computed.csv).
-- Token sums times per-token prices are exact decimal products. A null tag
-- shows as (untagged); currency codes are trimmed and upper-cased.
WITH n AS (
    SELECT
        c.* EXCLUDE (dept, project, task, currency),
        coalesce(c.dept, '(untagged)') AS dept,
        coalesce(c.project, '(untagged)') AS project,
        coalesce(c.task, '(untagged)') AS task,
        upper(trim(c.currency)) AS currency
    FROM cube AS c
),
c AS (
    SELECT
        c.*,
        -- a missing price only meets token sums of 0 (priced.sql)
        CAST(c.uncached_input AS DECIMAL(20, 0)) * coalesce(p.input_usd_per_token, 0)
            + CAST(c.cache_read AS DECIMAL(20, 0)) * coalesce(p.cache_read_usd_per_token, 0)
            + CAST(c.cache_write AS DECIMAL(20, 0)) * coalesce(p.cache_write_usd_per_token, 0)
            + CAST(c.output_tokens AS DECIMAL(20, 0)) * coalesce(p.output_usd_per_token, 0) AS list_cost,
        CAST(c.uncached_input AS DECIMAL(20, 0)) * coalesce(p.input_usd_per_token, 0) AS uncached_input_cost,
        CAST(c.cache_read AS DECIMAL(20, 0)) * coalesce(p.cache_read_usd_per_token, 0) AS cache_read_cost,
        CAST(c.cache_write AS DECIMAL(20, 0)) * coalesce(p.cache_write_usd_per_token, 0) AS cache_write_cost,
        CAST(c.output_tokens AS DECIMAL(20, 0)) * coalesce(p.output_usd_per_token, 0) AS output_cost,
        CAST(coalesce(c.logged_uncached_input, 0) AS DECIMAL(20, 0)) * coalesce(p.input_usd_per_token, 0)
            + CAST(coalesce(c.logged_cache_read, 0) AS DECIMAL(20, 0)) * coalesce(p.cache_read_usd_per_token, 0)
            + CAST(coalesce(c.logged_cache_write, 0) AS DECIMAL(20, 0)) * coalesce(p.cache_write_usd_per_token, 0)
            + CAST(coalesce(c.logged_output, 0) AS DECIMAL(20, 0)) * coalesce(p.output_usd_per_token, 0) AS logged_list_cost,
        fx.usd_per_unit
    FROM n AS c
    LEFT JOIN price_map AS p
        ON c.provider = p.provider AND c.model = p.model AND c.price_id = p.price_id
    LEFT JOIN fx_rates AS fx
        ON c.currency = fx.currency
)
SELECT
    dept, project, task, provider, model, price_id, currency, cache_hit,
    requests, errors, input_tokens, output_tokens, uncached_input, cache_read, cache_write,
    CASE
        WHEN price_id IS NULL THEN NULL
        WHEN cache_hit THEN CAST(0 AS DECIMAL(38, 23))
        ELSE list_cost
    END AS cost_usd,
    CASE
        WHEN price_id IS NULL THEN NULL
        WHEN cache_hit THEN list_cost
        ELSE CAST(0 AS DECIMAL(38, 23))
    END AS cache_savings_usd,
    CASE WHEN price_id IS NOT NULL AND NOT cache_hit THEN input_tokens + output_tokens ELSE 0 END AS priced_tokens,
    CASE
        WHEN price_id IS NULL THEN NULL
        WHEN cache_hit THEN CAST(0 AS DECIMAL(38, 23))
        ELSE uncached_input_cost
    END AS cost_uncached_input_usd,
    CASE
        WHEN price_id IS NULL THEN NULL
        WHEN cache_hit THEN CAST(0 AS DECIMAL(38, 23))
        ELSE cache_read_cost
    END AS cost_cache_read_usd,
    CASE
        WHEN price_id IS NULL THEN NULL
        WHEN cache_hit THEN CAST(0 AS DECIMAL(38, 23))
        ELSE cache_write_cost
    END AS cost_cache_write_usd,
    CASE
        WHEN price_id IS NULL THEN NULL
        WHEN cache_hit THEN CAST(0 AS DECIMAL(38, 23))
        ELSE output_cost
    END AS cost_output_usd,
    CASE WHEN price_id IS NOT NULL AND usd_per_unit IS NOT NULL THEN logged_requests ELSE 0 END AS logged_compared_requests,
    CASE WHEN price_id IS NOT NULL AND usd_per_unit IS NOT NULL AND logged_requests > 0 THEN logged_amount * usd_per_unit END AS logged_compared_usd,
    CASE
        WHEN price_id IS NULL OR usd_per_unit IS NULL OR logged_requests = 0 THEN NULL
        WHEN cache_hit THEN CAST(0 AS DECIMAL(38, 23))
        ELSE logged_list_cost
    END AS computed_compared_usd,
    logged_amount * usd_per_unit AS logged_cost_usd,
    CASE WHEN logged_requests > 0 AND usd_per_unit IS NULL THEN logged_requests ELSE 0 END AS logged_unconverted,
    logged_invalid, citation_sum, citation_requests, citation_invalid, reviewed, approved,
    token_violations, total_tokens_mismatch
FROM c
