-- invoice_amounts: distribution of invoice_totals, view `all` and view `le_p85` (totals at or
-- below the 85th percentile). Quantiles interpolate linearly; the mode is the most frequent
-- total in whole pence (half away from zero), the smallest on ties.
WITH views AS (
    SELECT 'all' AS view, amount FROM invoice_totals
    UNION ALL
    SELECT 'le_p85', amount FROM invoice_totals
    WHERE amount <= (SELECT quantile_cont(amount, 0.85) FROM invoice_totals)
),
stats AS (
    SELECT
        view,
        count(*)::BIGINT AS count,
        min(amount) AS min,
        avg(amount) AS mean,
        quantile_cont(amount, 0.5) AS median,
        max(amount) AS max,
        quantile_cont(amount, 0.25) AS p25,
        quantile_cont(amount, 0.75) AS p75,
        quantile_cont(amount, 0.85) AS p85,
        quantile_cont(amount, 0.95) AS p95,
        quantile_cont(amount, 0.99) AS p99
    FROM views
    GROUP BY view
),
modes AS (
    SELECT view, pence / 100 AS mode
    FROM (
        SELECT view, round(amount * 100)::BIGINT AS pence, count(*) AS n
        FROM views
        GROUP BY ALL
    )
    QUALIFY row_number() OVER (PARTITION BY view ORDER BY n DESC, pence) = 1
)
SELECT
    v.view,
    coalesce(s.count, 0)::BIGINT AS count,
    s.min, s.mean, s.median, m.mode, s.max, s.p25, s.p75, s.p85, s.p95, s.p99
FROM (VALUES ('all', 1), ('le_p85', 2)) AS v(view, ord)
LEFT JOIN stats AS s USING (view)
LEFT JOIN modes AS m USING (view)
ORDER BY v.ord
