-- invoice_histogram: equal-width bins over [min, max] of invoice_totals in whole pence, for the
-- views `all` and `le_p85`; every bin is listed, empty ones with count 0. A total of p pence is
-- in bin floor((p - min) * bins / (max - min)), the last bin closed: integer arithmetic, so no
-- engine's float rounding can move a total across an edge. Edge k is min + k (max - min) / bins
-- in whole millionths of a pound (rounded half up), in integers too, turned into pounds once.
WITH p85 AS (  -- 100 × the 85th percentile of all totals, exactly (invoice_amounts.sql)
    SELECT 100 * v[(n - 1) * 85 // 100 + 1] + (n - 1) * 85 % 100
        * (v[least((n - 1) * 85 // 100 + 2, n)] - v[(n - 1) * 85 // 100 + 1]) AS x100
    FROM (SELECT count(*) AS n, list(micro ORDER BY micro) AS v FROM invoice_totals)
),
views AS (
    SELECT
        'all' AS view,
        1 AS ord,
        CASE WHEN micro >= 0 THEN (micro + 5000) // 10000
            ELSE -((5000 - micro) // 10000) END AS pence
    FROM invoice_totals
    UNION ALL
    SELECT
        'le_p85',
        2,
        CASE WHEN micro >= 0 THEN (micro + 5000) // 10000
            ELSE -((5000 - micro) // 10000) END
    FROM invoice_totals
    WHERE 100 * micro <= (SELECT x100 FROM p85)
),
bounds AS (
    SELECT view, ord, min(pence) AS lo, max(pence) - min(pence) AS span
    FROM views
    GROUP BY view, ord
),
binned AS (
    SELECT
        view,
        CASE WHEN span > 0
            THEN least((pence - lo) * getvariable('histogram_bins') // span,
                getvariable('histogram_bins') - 1)
            ELSE 0
        END::INTEGER AS bin,
        count(*)::BIGINT AS count
    FROM views
    JOIN bounds USING (view)
    GROUP BY ALL
)
SELECT
    b.view,
    g.bin::INTEGER AS bin,
    (b.lo * 10000 + (b.span * g.bin * 10000 + getvariable('histogram_bins') // 2)
        // getvariable('histogram_bins'))::DOUBLE / 1000000 AS bin_start,
    (b.lo * 10000 + (b.span * (g.bin + 1) * 10000 + getvariable('histogram_bins') // 2)
        // getvariable('histogram_bins'))::DOUBLE / 1000000 AS bin_end,
    coalesce(n.count, 0)::BIGINT AS count
FROM bounds AS b
CROSS JOIN (SELECT unnest(range(0, getvariable('histogram_bins'))) AS bin) AS g
LEFT JOIN binned AS n ON n.view = b.view AND n.bin = g.bin
ORDER BY b.ord, g.bin
