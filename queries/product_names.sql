-- product_names: every product of customer_products with its most frequent non-null
-- description over the same purchase lines (smallest on ties; null when it has none).
WITH bought AS NOT MATERIALIZED (
    SELECT stock_code, description
    FROM invoice_lines
    WHERE customer_id IS NOT NULL
        AND NOT starts_with(invoice_no, 'C')
        AND quantity > 0
        AND NOT regexp_matches(stock_code, getvariable('non_product'))
        AND (getvariable('as_of') IS NULL OR invoice_date <= getvariable('as_of')::TIMESTAMP)
        AND array_length(getvariable('recommend_segments')) > 0
),
names AS (
    SELECT stock_code, description
    FROM (
        SELECT stock_code, description, count(*) AS n
        FROM bought
        WHERE description IS NOT NULL
        GROUP BY ALL
    )
    QUALIFY row_number() OVER (PARTITION BY stock_code ORDER BY n DESC, description) = 1
)
SELECT c.stock_code, n.description
FROM (SELECT DISTINCT stock_code FROM bought) AS c
LEFT JOIN names AS n USING (stock_code)
ORDER BY c.stock_code
