-- focus_costs.csv: the day's computed cost as FinOps FOCUS 1.2 cost rows, so
-- that tools which ingest cloud bills ingest LLM spend the same way. One row
-- per (dept, project, task, provider, model, price row, token type) with
-- tokens: PricingQuantity in 1K tokens at ListUnitPrice per 1K tokens, the
-- price row as SkuPriceId, the token type as SkuMeter. BilledCost =
-- EffectiveCost = ListCost, exact (not rounded: FOCUS requires ListUnitPrice
-- x PricingQuantity = ListCost): tokenledger prices at list (no discounts
-- are known). Cache hits (no provider call) and unpriced requests (no cost)
-- have no row. The pipeline (report::focus) adds the billing account and
-- period, ChargeClass and ContractedCost, and turns dept, project and task
-- into the Tags JSON.
WITH t AS (
    SELECT dept, project, task, provider, model, price_id,
        'uncached_input' AS meter, uncached_input AS tokens, cost_uncached_input_usd AS cost
    FROM finance_lines WHERE price_id IS NOT NULL AND NOT cache_hit
    UNION ALL
    SELECT dept, project, task, provider, model, price_id,
        'cache_read', cache_read, cost_cache_read_usd
    FROM finance_lines WHERE price_id IS NOT NULL AND NOT cache_hit
    UNION ALL
    SELECT dept, project, task, provider, model, price_id,
        'cache_write', cache_write, cost_cache_write_usd
    FROM finance_lines WHERE price_id IS NOT NULL AND NOT cache_hit
    UNION ALL
    SELECT dept, project, task, provider, model, price_id,
        'output', output_tokens, cost_output_usd
    FROM finance_lines WHERE price_id IS NOT NULL AND NOT cache_hit
),
g AS (
    SELECT dept, project, task, provider, model, price_id, meter,
        sum(tokens) AS tokens, sum(cost) AS cost
    FROM t
    GROUP BY dept, project, task, provider, model, price_id, meter
    HAVING sum(tokens) <> 0
)
SELECT
    g.cost AS "BilledCost",
    g.cost AS "EffectiveCost",
    g.cost AS "ListCost",
    CAST(
        CASE g.meter
            WHEN 'uncached_input' THEN p.input_usd_per_token
            WHEN 'cache_read' THEN p.cache_read_usd_per_token
            WHEN 'cache_write' THEN p.cache_write_usd_per_token
            ELSE p.output_usd_per_token
        END * CAST(1000 AS DECIMAL(4, 0)) AS DECIMAL(38, 20)
    ) AS "ListUnitPrice",
    CAST(CAST(g.tokens AS DECIMAL(20, 0)) * CAST(0.001 AS DECIMAL(4, 3)) AS DECIMAL(38, 3)) AS "PricingQuantity",
    '1K Tokens' AS "PricingUnit",
    g.tokens AS "ConsumedQuantity",
    'Tokens' AS "ConsumedUnit",
    to_timestamp_nanos($day_start_ns) AS "ChargePeriodStart",
    to_timestamp_nanos($day_end_ns) AS "ChargePeriodEnd",
    'Usage' AS "ChargeCategory",
    'Usage-Based' AS "ChargeFrequency",
    concat(g.model, ' ', replace(g.meter, '_', ' '), ' tokens') AS "ChargeDescription",
    g.provider AS "ProviderName",
    g.provider AS "PublisherName",
    g.provider AS "InvoiceIssuerName",
    'LLM Inference' AS "ServiceName",
    'AI and Machine Learning' AS "ServiceCategory",
    g.model AS "SkuId",
    g.price_id AS "SkuPriceId",
    g.meter AS "SkuMeter",
    'USD' AS "BillingCurrency",
    g.dept, g.project, g.task
FROM g
JOIN price_map AS p
    ON g.provider = p.provider AND g.model = p.model AND g.price_id = p.price_id
ORDER BY g.dept, g.project, g.task, g.provider, g.model, g.price_id,
    CASE g.meter WHEN 'uncached_input' THEN 1 WHEN 'cache_read' THEN 2 WHEN 'cache_write' THEN 3 ELSE 4 END
