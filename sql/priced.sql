-- SPEC 1.2: each request finds the price row in force at its own ts, as a
-- range join on the logged (provider, model). `price_map` holds only the rows
-- in force during the report day for the pairs logged that day (alias rules
-- already applied), so each request meets one or two candidates. No match:
-- price_id is null and the request is unpriced.
SELECT k.*, p.price_id
FROM kept AS k
LEFT JOIN price_map AS p
    ON k.provider = p.provider
    AND k.model = p.model
    AND k.ts >= p.valid_from
    AND k.ts < p.valid_to
