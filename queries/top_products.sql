-- top_products: products by sales over non-cancellation lines, non-product stock codes
-- (postage, fees, vouchers, …) excluded; the description is the code's most frequent one.
WITH placed AS (
    SELECT stock_code, description, invoice_no, quantity, quantity * unit_price AS amount
    FROM invoice_lines
    WHERE NOT starts_with(invoice_no, 'C')
        AND NOT regexp_matches(stock_code, getvariable('non_product'))
),
names AS (
    SELECT stock_code, description
    FROM (
        SELECT stock_code, description, count(*) AS n
        FROM placed
        WHERE description IS NOT NULL
        GROUP BY ALL
    )
    QUALIFY row_number() OVER (PARTITION BY stock_code ORDER BY n DESC, description) = 1
),
per_product AS (
    SELECT
        stock_code,
        sum(amount) AS sales,
        sum(quantity)::BIGINT AS quantity,
        count(DISTINCT invoice_no)::BIGINT AS orders
    FROM placed
    GROUP BY stock_code
)
SELECT
    row_number() OVER (ORDER BY p.sales DESC, p.stock_code)::BIGINT AS rank,
    p.stock_code,
    n.description,
    p.sales,
    p.quantity,
    p.orders
FROM per_product AS p
LEFT JOIN names AS n USING (stock_code)
ORDER BY rank
LIMIT getvariable('top')
