-- top_products: products by net revenue (the amount of all their lines, cancellations and stock
-- adjustments included; ties by stock_code), non-product stock codes (postage, fees,
-- vouchers, …) excluded; beside it placed sales, cancelled value, units (quantity over
-- non-cancellation lines), purchase invoices, and the code's most frequent description.
-- The top products are chosen on the products layer; purchase invoices and names are then
-- found in the lines of those few only.
WITH top AS (
    SELECT
        row_number() OVER (ORDER BY sum(net_micro) DESC, stock_code)::BIGINT AS rank,
        stock_code,
        sum(net_micro) AS net_micro,  -- HUGEINT: exact
        sum(placed_micro) AS placed_micro,
        sum(cancelled_micro) AS cancelled_micro,
        sum(quantity)::BIGINT AS quantity
    FROM products
    WHERE NOT regexp_matches(stock_code, getvariable('non_product'))
    GROUP BY stock_code
    ORDER BY rank
    LIMIT getvariable('top')
),
-- The lines of those few products, each (product, description, invoice) once with its count:
-- read twice below, and small, so computed once (Spark read all the lines twice when each of
-- the two below filtered them).
chosen AS (
    SELECT stock_code, description, invoice_no, count(*) AS n
    FROM invoice_lines
    WHERE stock_code IN (SELECT stock_code FROM top)
    GROUP BY ALL
),
purchases AS (
    SELECT stock_code, count(DISTINCT invoice_no)::BIGINT AS purchase_invoices
    FROM chosen
    WHERE NOT starts_with(invoice_no, 'C')
    GROUP BY stock_code
),
names AS (
    SELECT stock_code, description
    FROM (
        SELECT stock_code, description, sum(n) AS n
        FROM chosen
        WHERE description IS NOT NULL
        GROUP BY ALL
    )
    QUALIFY row_number() OVER (PARTITION BY stock_code ORDER BY n DESC, description) = 1
)
SELECT
    t.rank,
    t.stock_code,
    n.description,
    t.net_micro::DOUBLE / 1000000 AS net_revenue,
    t.placed_micro::DOUBLE / 1000000 AS placed_sales,
    t.cancelled_micro::DOUBLE / 1000000 AS cancelled_value,
    t.quantity,
    coalesce(p.purchase_invoices, 0)::BIGINT AS purchase_invoices
FROM top AS t
LEFT JOIN purchases AS p USING (stock_code)
LEFT JOIN names AS n USING (stock_code)
ORDER BY t.rank
