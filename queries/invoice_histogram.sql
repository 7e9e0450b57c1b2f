-- invoice_histogram: equal-width bins over [min, max] of invoice_totals, for the views `all`
-- and `le_p85`; every bin is listed, empty ones with count 0.
WITH views AS (
    SELECT 'all' AS view, 1 AS ord, amount FROM invoice_totals
    UNION ALL
    SELECT 'le_p85', 2, amount FROM invoice_totals
    WHERE amount <= (SELECT quantile_cont(amount, 0.85) FROM invoice_totals)
),
bounds AS (
    SELECT view, ord, min(amount) AS lo, max(amount) AS hi,
        (max(amount) - min(amount)) / getvariable('histogram_bins') AS width
    FROM views
    GROUP BY view, ord
),
binned AS (
    SELECT
        view,
        CASE WHEN hi > lo
            THEN least(floor((amount - lo) / width)::INTEGER, getvariable('histogram_bins') - 1)
            ELSE 0
        END AS bin,
        count(*)::BIGINT AS count
    FROM views
    JOIN bounds USING (view)
    GROUP BY ALL
)
SELECT
    b.view,
    g.bin::INTEGER AS bin,
    b.lo + g.bin * b.width AS bin_start,
    b.lo + (g.bin + 1) * b.width AS bin_end,
    coalesce(n.count, 0)::BIGINT AS count
FROM bounds AS b
CROSS JOIN range(0, getvariable('histogram_bins')) AS g(bin)
LEFT JOIN binned AS n ON n.view = b.view AND n.bin = g.bin
ORDER BY b.ord, g.bin
