-- invoice_histogram: equal-width bins over [min, max] of invoice_totals in whole pence, for the
-- views `all` and `le_p85` (from invoice_views); every bin is listed, empty ones with count 0. A
-- total of p pence is in bin floor((p - min) * bins / (max - min)), the last bin closed: integer
-- arithmetic, so no engine's float rounding can move a total across an edge. Edge k is min + k
-- (max - min) / bins in whole millionths of a pound (rounded half up), in integers too, turned
-- into pounds once.
WITH bounds AS (
    SELECT view, ord, min(pence) AS lo, max(pence) - min(pence) AS span
    FROM invoice_views
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
    FROM invoice_views
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
