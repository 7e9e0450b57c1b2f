-- layer_invoices: the invoice layer (lgs_fast/layers.py, the definition) of the lines in view
-- `layer_lines`: one row per (invoice_no, customer_id, country, invoice_date) with its lines,
-- micro (exact sum of quantity * unit_price in millionths of a pound, each line rounded half
-- away from zero) and the cancellation flag.
-- The DuckDB engine builds it for what the lake's stored layers do not cover (lgs_fast/sql.py).
SELECT
    invoice_no,
    customer_id,
    country,
    invoice_date,
    starts_with(invoice_no, 'C') AS cancellation,
    count(*)::BIGINT AS lines,
    sum(round(quantity * unit_price * 1000000)::BIGINT) AS micro  -- HUGEINT: no overflow
FROM layer_lines
GROUP BY invoice_no, customer_id, country, invoice_date
