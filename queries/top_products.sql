-- top_products: products by sales over non-cancellation lines, non-product stock codes
-- (postage, fees, vouchers, …) excluded; the description is the code's most frequent one.
-- The top products are chosen on sales first; orders and names are found for those only.
-- A CTE read twice is materialised by DuckDB unless told not to: every placed line copied
-- (1.0 GiB at 10M lines, and spilling at 100M, against 0.2 GiB streamed).
WITH placed AS NOT MATERIALIZED (
    SELECT stock_code, description, invoice_no, quantity, quantity * unit_price AS amount
    FROM invoice_lines
    WHERE NOT starts_with(invoice_no, 'C')
        AND NOT regexp_matches(stock_code, getvariable('non_product'))
),
top AS (
    SELECT
        row_number() OVER (ORDER BY sum(amount) DESC, stock_code)::BIGINT AS rank,
        stock_code,
        sum(amount) AS sales,
        sum(quantity)::BIGINT AS quantity
    FROM placed
    GROUP BY stock_code
    ORDER BY rank
    LIMIT getvariable('top')
),
chosen AS (
    SELECT * FROM placed WHERE stock_code IN (SELECT stock_code FROM top)
),
orders AS (
    SELECT stock_code, count(DISTINCT invoice_no)::BIGINT AS orders
    FROM chosen
    GROUP BY stock_code
),
names AS (
    SELECT stock_code, description
    FROM (
        SELECT stock_code, description, count(*) AS n
        FROM chosen
        WHERE description IS NOT NULL
        GROUP BY ALL
    )
    QUALIFY row_number() OVER (PARTITION BY stock_code ORDER BY n DESC, description) = 1
)
SELECT t.rank, t.stock_code, n.description, t.sales, t.quantity, o.orders
FROM top AS t
LEFT JOIN orders AS o USING (stock_code)
LEFT JOIN names AS n USING (stock_code)
ORDER BY t.rank
