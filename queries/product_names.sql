-- product_names: every product of customer_products with its most frequent non-null
-- description over the same purchase lines (smallest on ties; null when it has none).
-- One pass over the lines: each (product, description) pair counted, the null description
-- too, so that a product without any is kept; a null is chosen only when it is all there is.
SELECT stock_code, description
FROM (
    SELECT stock_code, description, count(*) AS n
    FROM invoice_lines
    WHERE customer_id IS NOT NULL
        AND NOT starts_with(invoice_no, 'C')
        AND quantity > 0
        AND NOT regexp_matches(stock_code, getvariable('non_product'))
        AND (getvariable('as_of') IS NULL OR invoice_date <= getvariable('as_of')::TIMESTAMP)
        AND array_length(getvariable('recommend_segments')) > 0
    GROUP BY ALL
)
QUALIFY row_number() OVER (
    PARTITION BY stock_code ORDER BY description IS NULL, n DESC, description
) = 1
ORDER BY stock_code
