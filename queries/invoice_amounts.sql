-- invoice_amounts: distribution of invoice_totals, view `all` and view `le_p85` (totals at or
-- below the 85th percentile), from invoice_views, in pounds. Everything is computed on the exact
-- totals in millionths: the mean is their exact sum over the count; a quantile interpolates
-- linearly, in integers (docs/analysis.md, "Quantiles"): with the n totals sorted, v_1 <= ... <=
-- v_n, and (n - 1) q = 100 j + r for q in percent, 100 × the quantile is 100 v_{j+1} + r (v_{j+2}
-- - v_{j+1}), turned into pounds once. The mode is the most frequent total in whole pence (half
-- away from zero), the smallest on ties.
WITH sorted AS (
    SELECT view, count(*) AS n, sum(micro) AS total, list(micro ORDER BY micro) AS v
    FROM invoice_views
    GROUP BY view
),
positions AS (
    -- for each percent q: j + 1 (lists count from 1) and r
    SELECT
        *,
        list_transform(
            [50, 25, 75, 85, 95, 99],
            lambda q: {'j': (n - 1) * q // 100 + 1, 'r': (n - 1) * q % 100}
        ) AS ps
    FROM sorted
),
stats AS (
    SELECT
        view,
        n::BIGINT AS count,
        v[1]::DOUBLE / 1000000 AS min,
        total::DOUBLE / 1000000 / n AS mean,
        v[n]::DOUBLE / 1000000 AS max,
        list_transform(
            ps, lambda p: (100 * v[p.j] + p.r * (v[least(p.j + 1, n)] - v[p.j]))::DOUBLE / 100000000
        ) AS q
    FROM positions
),
modes AS (
    SELECT view, pence::DOUBLE / 100 AS mode
    FROM (
        SELECT view, pence, count(*) AS n
        FROM invoice_views
        GROUP BY ALL
    )
    QUALIFY row_number() OVER (PARTITION BY view ORDER BY n DESC, pence) = 1
)
SELECT
    v.view,
    coalesce(s.count, 0)::BIGINT AS count,
    s.min, s.mean, s.q[1] AS median, m.mode, s.max, s.q[2] AS p25, s.q[3] AS p75,
    s.q[4] AS p85, s.q[5] AS p95, s.q[6] AS p99
FROM (VALUES ('all', 1), ('le_p85', 2)) AS v(view, ord)
LEFT JOIN stats AS s USING (view)
LEFT JOIN modes AS m USING (view)
ORDER BY v.ord
