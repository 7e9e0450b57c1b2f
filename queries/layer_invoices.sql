-- layer_invoices: the invoice layer (lgs_fast/layers.py, the definition) of the lines in view
-- `layer_lines`: one row per (invoice_no, customer_id, country, invoice_date) with its lines,
-- amount (float sum of quantity * unit_price), micro (exact sum in millionths of a pound, each
-- line rounded half away from zero, as rfm_at.sql did line by line) and the cancellation flag.
-- The DuckDB engine builds it for what the lake's stored layers do not cover (lgs_fast/sql.py).
SELECT
    invoice_no,
    customer_id,
    country,
    invoice_date,
    starts_with(invoice_no, 'C') AS cancellation,
    count(*)::BIGINT AS lines,
    sum(quantity * unit_price) AS amount,
    sum(round(quantity * unit_price * 1000000)::BIGINT) AS micro  -- HUGEINT: no overflow
FROM layer_lines
GROUP BY invoice_no, customer_id, country, invoice_date
