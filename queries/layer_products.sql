-- layer_products: the products layer (lgs_fast/layers.py) of the lines in view `layer_lines`:
-- per stock_code, lines, net revenue (all lines), placed sales and units (non-cancellation
-- lines) and cancelled value (cancellation lines).
SELECT
    stock_code,
    count(*)::BIGINT AS lines,
    sum(quantity * unit_price) AS net_revenue,
    coalesce(sum(quantity * unit_price) FILTER (WHERE NOT starts_with(invoice_no, 'C')), 0.0)
        AS placed_sales,
    coalesce(sum(quantity * unit_price) FILTER (WHERE starts_with(invoice_no, 'C')), 0.0)
        AS cancelled_value,
    coalesce(sum(quantity) FILTER (WHERE NOT starts_with(invoice_no, 'C')), 0)::BIGINT
        AS quantity
FROM layer_lines
GROUP BY stock_code
