-- overview (DESIGN.md "Definitions"): one row of counts (lines; invoices, of which purchase
-- invoices and credit notes; customers, and those with a purchase line; stock codes;
-- countries), the date span, placed sales (non-cancellation lines), cancelled value
-- (cancellation lines), net revenue (all lines), and the mean invoice total over invoices whose
-- total > 0. From the invoice layer (stock codes from the products layer), which holds every
-- line's invoice, customer, country, date and exact amount (micro: millionths of a pound,
-- summed as integers and turned into pounds once, lgs_fast/lake/layers.py "Money").
WITH per_row AS (
    SELECT
        coalesce(sum(lines), 0)::BIGINT AS lines,
        min(invoice_date) AS first_invoice,
        max(invoice_date) AS last_invoice,
        coalesce(sum(micro) FILTER (WHERE NOT cancellation), 0)::DOUBLE / 1000000 AS placed_sales,
        coalesce(sum(micro) FILTER (WHERE cancellation), 0)::DOUBLE / 1000000 AS cancelled_value,
        coalesce(sum(micro), 0)::DOUBLE / 1000000 AS net_revenue,
        count(DISTINCT customer_id)::BIGINT AS customers,
        count(DISTINCT customer_id) FILTER (WHERE NOT cancellation)::BIGINT
            AS customers_with_purchase,
        count(DISTINCT country)::BIGINT AS countries
    FROM invoices
),
per_invoice AS (
    SELECT
        count(*)::BIGINT AS invoices,
        count(*) FILTER (WHERE NOT cancellation)::BIGINT AS purchase_invoices,
        count(*) FILTER (WHERE cancellation)::BIGINT AS credit_notes,
        (sum(total) FILTER (WHERE total > 0))::DOUBLE / 1000000
            / nullif(count(*) FILTER (WHERE total > 0), 0) AS mean_invoice_total
    FROM (
        SELECT invoice_no, cancellation, sum(micro) AS total
        FROM invoices
        GROUP BY invoice_no, cancellation
    )
)
SELECT
    lines, invoices, purchase_invoices, credit_notes, customers, customers_with_purchase,
    (SELECT count(DISTINCT stock_code) FROM products)::BIGINT AS stock_codes,
    countries, first_invoice, last_invoice, placed_sales, cancelled_value, net_revenue,
    mean_invoice_total
FROM per_row
CROSS JOIN per_invoice
