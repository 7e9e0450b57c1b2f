-- data_quality: the counts of shared/data/README.md, as (check, count) rows: the quality
-- layer's counts added up (layer_quality.sql), and the credit notes (distinct cancellation
-- invoices) from the invoice layer.
WITH counts AS (
    SELECT
        coalesce(sum(lines), 0) AS lines,
        coalesce(sum(no_customer_id), 0) AS no_customer_id,
        coalesce(sum(no_description), 0) AS no_description,
        coalesce(sum(cancellation_lines), 0) AS cancellation_lines,
        (SELECT count(DISTINCT invoice_no) FROM invoices WHERE cancellation)
            AS cancelled_invoices,
        coalesce(sum(stock_adjustment_lines), 0) AS stock_adjustment_lines,
        coalesce(sum(zero_price_lines), 0) AS zero_price_lines,
        coalesce(sum(negative_price_lines), 0) AS negative_price_lines,
        coalesce(sum(non_product_lines), 0) AS non_product_lines,
        coalesce(sum(exact_duplicate_lines), 0) AS exact_duplicate_lines
    FROM quality
)
SELECT "check", "count"::BIGINT AS "count"
FROM counts UNPIVOT ("count" FOR "check" IN (
    lines, no_customer_id, no_description, cancellation_lines, cancelled_invoices,
    stock_adjustment_lines, zero_price_lines, negative_price_lines, non_product_lines,
    exact_duplicate_lines
))
