-- rfm_at(rfm_time): a table macro (lgs_fast/sql.py creates it from this file): RFM at the time
-- rfm_time over the lines up to it. `rfm` is rfm_at at the reference time T (reference_time.sql);
-- segment movement calls it a second time, at T0. One row per customer with recency (whole days
-- before rfm_time), frequency, monetary (net spend over all the customer's lines), quintile
-- scores and segment.
-- standard: customers with a purchase line (non-cancellation); recency from the last purchase;
--           frequency = distinct purchase invoices.
-- notebook: every customer with any line; recency from any line; frequency = lines.
-- monetary is summed exactly, as integers in millionths of a pound, so the total does not
-- depend on the order of addition (lgs_fast/metrics.py explains; the two engines give the same
-- value to the bit), and scored in whole pence (half away from zero).
-- Scores: bin = 1 + number of inner edges e_k = quantile(x, k/B) strictly below x (pandas
-- qcut, repeated edges allowed); frequency is binned by its ordinal rank (ties by customer_id).
-- Evaluated exactly on integers (whole days, ranks, pence): with the n values sorted,
-- v_0 <= ... <= v_{n-1}, and k(n-1) = jB + r, e_k = v_j + (r/B)(v_{j+1} - v_j), so
-- x > e_k  <=>  B(x - v_j) > r(v_{j+1} - v_j). No float quantile, no rounding at the edges.
WITH reference AS (
    -- the parameter once: a subquery passed in is then evaluated once
    SELECT rfm_time::TIMESTAMP AS t
),
customers AS (  -- the customers' rows of the invoice layer
    SELECT customer_id, invoice_no, invoice_date, country, lines, micro, cancellation AS cancel
    FROM invoices
    WHERE customer_id IS NOT NULL AND invoice_date <= (SELECT t FROM reference)
),
-- Each invoice of a customer once (the layer has a row per invoice, country and date), then
-- each customer: counting invoices needs no DISTINCT, which Spark computes by copying every row
-- once per aggregate and shuffling three times. For Spark (DuckDB reads the hint as a comment),
-- the rows are sent to tasks by customer once, so neither grouping shuffles again.
per_invoice AS (
    SELECT
        customer_id,
        invoice_no,
        cancel,
        max(invoice_date) AS last,
        sum(lines) AS lines,
        sum(micro) AS micro  -- HUGEINT: 128 bits, no overflow
    FROM (SELECT /*+ REPARTITION(customer_id) */ * FROM customers)
    GROUP BY customer_id, invoice_no, cancel
),
per_customer AS (
    SELECT
        customer_id,
        CASE WHEN getvariable('notebook') THEN max(last)
            ELSE max(last) FILTER (WHERE NOT cancel) END AS last,
        CASE WHEN getvariable('notebook') THEN sum(lines)
            ELSE count(*) FILTER (WHERE NOT cancel) END::BIGINT AS frequency,
        sum(micro) AS micro
    FROM per_invoice
    GROUP BY customer_id
    HAVING getvariable('notebook') OR count(*) FILTER (WHERE NOT cancel) > 0
),
ranked AS (
    SELECT
        p.*,
        floor((epoch_us(r.t) - epoch_us(p.last)) / 86400000000)::BIGINT AS recency,
        row_number() OVER (ORDER BY p.frequency, p.customer_id) AS f_rank,
        p.micro::DOUBLE / 1000000 AS monetary,
        (CASE WHEN p.micro >= 0 THEN (p.micro + 5000) // 10000
            ELSE -((5000 - p.micro) // 10000) END)::BIGINT AS pence
    FROM per_customer AS p
    CROSS JOIN reference AS r
),
sorted AS (
    SELECT
        count(*) AS n,
        list(recency ORDER BY recency) AS r_values,
        list(f_rank ORDER BY f_rank) AS f_values,
        list(pence ORDER BY pence) AS m_values
    FROM ranked
),
positions AS (
    -- for each inner edge k = 1 .. B-1: j + 1 (lists count from 1) and r
    SELECT
        *,
        list_transform(
            range(1, getvariable('bins')),
            lambda k: {
                'j': k * (n - 1) // getvariable('bins') + 1,
                'r': k * (n - 1) % getvariable('bins')
            }
        ) AS ks
    FROM sorted
),
edges AS (
    SELECT
        list_transform(ks, lambda p: {
            'lo': r_values[p.j], 'hi': r_values[least(p.j + 1, n)], 'r': p.r
        }) AS r_edges,
        list_transform(ks, lambda p: {
            'lo': f_values[p.j], 'hi': f_values[least(p.j + 1, n)], 'r': p.r
        }) AS f_edges,
        list_transform(ks, lambda p: {
            'lo': m_values[p.j], 'hi': m_values[least(p.j + 1, n)], 'r': p.r
        }) AS m_edges
    FROM positions
),
scored AS (
    SELECT
        ranked.*,
        (getvariable('bins') - array_length(list_filter(
            r_edges, lambda e: getvariable('bins') * (recency - e.lo) > e.r * (e.hi - e.lo)
        )))::INTEGER AS r_score,
        (1 + array_length(list_filter(
            f_edges, lambda e: getvariable('bins') * (f_rank - e.lo) > e.r * (e.hi - e.lo)
        )))::INTEGER AS f_score,
        (1 + array_length(list_filter(
            m_edges, lambda e: getvariable('bins') * (pence - e.lo) > e.r * (e.hi - e.lo)
        )))::INTEGER AS m_score
    FROM ranked
    CROSS JOIN edges
),
-- The first rule matching each (r_score, f_score) pair that occurs (at most bins^2 of them),
-- then joined to the customers by the pair: matching every customer against every rule's
-- pattern cost 1.3 s at 10M lines, this a few milliseconds.
pairs AS (
    SELECT rf, coalesce(r.segment, 'Unclassified') AS segment
    FROM (SELECT DISTINCT r_score::VARCHAR || f_score::VARCHAR AS rf FROM scored) AS p
    LEFT JOIN segment_rules AS r ON regexp_full_match(p.rf, r.pattern)
    QUALIFY row_number() OVER (PARTITION BY p.rf ORDER BY r.priority) = 1
),
segmented AS (
    SELECT s.*, p.segment
    FROM scored AS s
    JOIN pairs AS p ON p.rf = s.r_score::VARCHAR || s.f_score::VARCHAR
),
main_country AS (
    SELECT customer_id, country
    FROM (SELECT customer_id, country, sum(lines) AS n FROM customers GROUP BY ALL)
    QUALIFY row_number() OVER (
        PARTITION BY customer_id ORDER BY n DESC, country ASC NULLS LAST
    ) = 1
)
SELECT
    s.customer_id,
    c.country,
    s.recency,
    s.frequency,
    s.monetary,
    s.r_score,
    s.f_score,
    s.m_score,
    s.r_score::VARCHAR || s.f_score::VARCHAR || s.m_score::VARCHAR AS rfm_score,
    s.segment
FROM segmented AS s
LEFT JOIN main_country AS c USING (customer_id)
ORDER BY s.customer_id
