-- rfm: one row per customer with recency (whole days before the reference time T), frequency,
-- monetary (net spend over all the customer's lines), quintile scores and segment.
-- standard: customers with a purchase line (non-cancellation); recency from the last purchase;
--           frequency = distinct purchase invoices; T = as_of, else the latest line.
-- notebook: every customer with any line; recency from any line; frequency = lines;
--           T = as_of, else the latest line that has a customer.
-- Scores: bin = 1 + number of inner edges quantile(x, k/B) strictly below x (pandas qcut,
-- repeated edges allowed); frequency is binned by its ordinal rank (ties by customer_id).
WITH scope AS (
    SELECT * FROM invoice_lines
    WHERE getvariable('as_of') IS NULL OR invoice_date <= getvariable('as_of')::TIMESTAMP
),
customers AS (
    SELECT
        customer_id,
        invoice_no,
        invoice_date,
        country,
        quantity * unit_price AS amount,
        starts_with(invoice_no, 'C') AS cancel
    FROM scope
    WHERE customer_id IS NOT NULL
),
reference AS (
    SELECT coalesce(
        getvariable('as_of')::TIMESTAMP,
        CASE WHEN getvariable('notebook')
            THEN (SELECT max(invoice_date) FROM customers)
            ELSE (SELECT max(invoice_date) FROM scope)
        END
    ) AS t
),
per_customer AS (
    SELECT
        customer_id,
        CASE WHEN getvariable('notebook') THEN max(invoice_date)
            ELSE max(invoice_date) FILTER (WHERE NOT cancel) END AS last,
        CASE WHEN getvariable('notebook') THEN count(*)
            ELSE count(DISTINCT invoice_no) FILTER (WHERE NOT cancel) END::BIGINT AS frequency,
        sum(amount) AS monetary
    FROM customers
    GROUP BY customer_id
    HAVING getvariable('notebook') OR count(*) FILTER (WHERE NOT cancel) > 0
),
ranked AS (
    SELECT
        p.*,
        floor((epoch_us(r.t) - epoch_us(p.last)) / 86400000000)::BIGINT AS recency,
        row_number() OVER (ORDER BY p.frequency, p.customer_id) AS f_rank
    FROM per_customer AS p
    CROSS JOIN reference AS r
),
edges AS (
    SELECT
        quantile_cont(recency, getvariable('quantiles')) AS r_edges,
        quantile_cont(f_rank, getvariable('quantiles')) AS f_edges,
        quantile_cont(monetary, getvariable('quantiles')) AS m_edges
    FROM ranked
),
scored AS (
    SELECT
        ranked.*,
        (getvariable('bins') - len(list_filter(r_edges, lambda e: recency > e)))::INTEGER
            AS r_score,
        (1 + len(list_filter(f_edges, lambda e: f_rank > e)))::INTEGER AS f_score,
        (1 + len(list_filter(m_edges, lambda e: monetary > e)))::INTEGER AS m_score
    FROM ranked
    CROSS JOIN edges
),
segmented AS (
    SELECT s.*, coalesce(r.segment, 'Unclassified') AS segment
    FROM scored AS s
    LEFT JOIN segment_rules AS r
        ON regexp_full_match(s.r_score::VARCHAR || s.f_score::VARCHAR, r.pattern)
    QUALIFY row_number() OVER (PARTITION BY s.customer_id ORDER BY r.priority) = 1
),
main_country AS (
    SELECT customer_id, country
    FROM (SELECT customer_id, country, count(*) AS n FROM customers GROUP BY ALL)
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
