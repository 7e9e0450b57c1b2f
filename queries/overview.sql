-- overview (DESIGN.md "Definitions"): one row of counts, the date span, total revenue, and the
-- mean invoice total over invoices whose total > 0.
WITH totals AS (
    SELECT invoice_no, sum(quantity * unit_price) AS total
    FROM invoice_lines
    GROUP BY invoice_no
)
SELECT
    count(*)::BIGINT AS lines,
    count(DISTINCT invoice_no)::BIGINT AS invoices,
    count(DISTINCT customer_id)::BIGINT AS customers,
    count(DISTINCT stock_code)::BIGINT AS stock_codes,
    count(DISTINCT country)::BIGINT AS countries,
    min(invoice_date) AS first_invoice,
    max(invoice_date) AS last_invoice,
    coalesce(sum(quantity * unit_price), 0.0) AS revenue,
    (SELECT avg(total) FROM totals WHERE total > 0) AS mean_invoice_total
FROM invoice_lines
