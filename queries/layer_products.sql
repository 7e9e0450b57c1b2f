-- layer_products: the products layer (lgs_fast/layers.py) of the lines in view `layer_lines`:
-- per stock_code, lines, net revenue (all lines), placed sales and units (non-cancellation
-- lines) and cancelled value (cancellation lines), money exact in millionths of a pound.
SELECT
    stock_code,
    count(*)::BIGINT AS lines,
    sum(round(quantity * unit_price * 1000000)::BIGINT) AS net_micro,  -- HUGEINT: no overflow
    coalesce(sum(round(quantity * unit_price * 1000000)::BIGINT)
        FILTER (WHERE NOT starts_with(invoice_no, 'C')), 0) AS placed_micro,
    coalesce(sum(round(quantity * unit_price * 1000000)::BIGINT)
        FILTER (WHERE starts_with(invoice_no, 'C')), 0) AS cancelled_micro,
    coalesce(sum(quantity) FILTER (WHERE NOT starts_with(invoice_no, 'C')), 0)::BIGINT
        AS quantity
FROM layer_lines
GROUP BY stock_code
