-- invoice_views: the values of invoice_totals in the two views the distribution is reported for,
-- `all` (ord 1) and `le_p85` (ord 2: totals at or below the 85th percentile of all), each as
-- micro (exact millionths of a pound) and in whole pence (half away from zero). Read by
-- invoice_amounts and invoice_histogram, computed once. The 85th percentile interpolates
-- linearly, in integers (docs/analysis.md, "Quantiles"): with the n totals sorted,
-- v_1 <= ... <= v_n, and (n - 1) 85 = 100 j + r, 100 × the percentile is
-- 100 v_{j+1} + r (v_{j+2} - v_{j+1}).
WITH p85 AS (
    SELECT 100 * v[(n - 1) * 85 // 100 + 1] + (n - 1) * 85 % 100
        * (v[least((n - 1) * 85 // 100 + 2, n)] - v[(n - 1) * 85 // 100 + 1]) AS x100
    FROM (SELECT count(*) AS n, list(micro ORDER BY micro) AS v FROM invoice_totals)
),
views AS (
    SELECT 'all' AS view, 1 AS ord, micro FROM invoice_totals
    UNION ALL
    SELECT 'le_p85', 2, micro FROM invoice_totals
    WHERE 100 * micro <= (SELECT x100 FROM p85)
)
SELECT
    view,
    ord,
    micro,
    CASE WHEN micro >= 0 THEN (micro + 5000) // 10000
        ELSE -((5000 - micro) // 10000) END AS pence
FROM views
