-- The priced day, aggregated once by (dept, project, task, provider, model,
-- price_id, currency, cache_hit) with every additive measure: the finance
-- outputs and the ops rates derive from this small table. Money is priced
-- afterwards from the token sums (exact: sum(tokens) * price = sum(tokens *
-- price)). Latency and per-minute counts come from ops_counts.sql.
--
-- Reads `cube_groups` (day_sums.sql's sums of the day's kept rows by the
-- cube's keys and price_key; of the rows but the duplicate candidates and
-- of the candidates kept, two rows where both hold a group: summed here)
-- and prices groups, not rows: the price row a request finds (priced.sql,
-- SPEC 1.2) depends only on its (provider, model), on which stretch
-- between two price changes holds its ts ($price_cuts are every instant
-- where a price row in force during the day begins or ends, so within a
-- stretch each price_map row is in force throughout or not at all) and on
-- four tests of its tokens, exactly priced.sql's. price_key packs the
-- stretch and the tests in one integer (stretch * 16, plus 8 for output,
-- 4 cache read, 2 cache write, 1 uncached input tokens; a null test is
-- no, as in priced.sql's CASE). Each group is priced once, at the first
-- instant of its stretch (price_key_instant), by priced.sql's rule, and
-- the groups are summed again by price_id. A unit test holds this to
-- priced.sql row by row.
WITH g AS (
    SELECT * FROM cube_groups
),
priced_groups AS (
    SELECT
        g.*,
        -- priced.sql's rule, on the group's tests
        CASE
            WHEN p.complete OR p.price_id IS NULL THEN p.price_id
            WHEN NOT p.has_output AND (g.price_key & 8) <> 0 THEN NULL
            WHEN NOT p.has_cache_read AND (g.price_key & 4) <> 0 THEN NULL
            WHEN NOT p.has_cache_write AND (g.price_key & 2) <> 0 THEN NULL
            WHEN NOT p.has_input AND (g.price_key & 1) <> 0 THEN NULL
            ELSE p.price_id
        END AS price_id
    FROM g
    LEFT JOIN price_map AS p
        ON g.provider = p.provider
        AND g.model = p.model
        AND price_key_instant(g.price_key, $price_cuts) >= p.valid_from
        AND price_key_instant(g.price_key, $price_cuts) < p.valid_to
)
SELECT
    dept, project, task, provider, model, price_id, currency, cache_hit,
    -- counts of non-empty groups: never null
    coalesce(sum(requests), 0) AS requests,
    coalesce(sum(errors), 0) AS errors,
    sum(input_tokens) AS input_tokens,
    sum(output_tokens) AS output_tokens,
    sum(uncached_input) AS uncached_input,
    sum(cache_read) AS cache_read,
    sum(cache_write) AS cache_write,
    sum(logged_amount) AS logged_amount,
    coalesce(sum(logged_requests), 0) AS logged_requests,
    sum(logged_uncached_input) AS logged_uncached_input,
    sum(logged_cache_read) AS logged_cache_read,
    sum(logged_cache_write) AS logged_cache_write,
    sum(logged_output) AS logged_output,
    coalesce(sum(logged_invalid), 0) AS logged_invalid,
    sum(citation_sum) AS citation_sum,
    coalesce(sum(citation_requests), 0) AS citation_requests,
    coalesce(sum(citation_invalid), 0) AS citation_invalid,
    coalesce(sum(reviewed), 0) AS reviewed,
    coalesce(sum(approved), 0) AS approved,
    coalesce(sum(token_violations), 0) AS token_violations,
    coalesce(sum(total_tokens_mismatch), 0) AS total_tokens_mismatch
FROM priced_groups
GROUP BY dept, project, task, provider, model, price_id, currency, cache_hit
