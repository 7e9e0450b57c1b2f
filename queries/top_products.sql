-- top_products: products by net revenue (the amount of all their lines, cancellations and stock
-- adjustments included; ties by stock_code), non-product stock codes (postage, fees,
-- vouchers, …) excluded; beside it placed sales, cancelled value, units (quantity over
-- non-cancellation lines), purchase invoices, and the code's most frequent description.
-- The top products are chosen on net revenue first; purchase invoices and names are found for
-- those only.
-- A CTE read twice is materialised by DuckDB unless told not to: every product line copied
-- (1.0 GiB at 10M lines, and spilling at 100M, against 0.2 GiB streamed).
WITH products AS NOT MATERIALIZED (
    SELECT
        stock_code,
        description,
        invoice_no,
        quantity,
        quantity * unit_price AS amount,
        starts_with(invoice_no, 'C') AS cancel
    FROM invoice_lines
    WHERE NOT regexp_matches(stock_code, getvariable('non_product'))
),
top AS (
    SELECT
        row_number() OVER (ORDER BY sum(amount) DESC, stock_code)::BIGINT AS rank,
        stock_code,
        sum(amount) AS net_revenue,
        coalesce(sum(amount) FILTER (WHERE NOT cancel), 0.0) AS placed_sales,
        coalesce(sum(amount) FILTER (WHERE cancel), 0.0) AS cancelled_value,
        coalesce(sum(quantity) FILTER (WHERE NOT cancel), 0)::BIGINT AS quantity
    FROM products
    GROUP BY stock_code
    ORDER BY rank
    LIMIT getvariable('top')
),
chosen AS (
    SELECT * FROM products WHERE stock_code IN (SELECT stock_code FROM top)
),
invoices AS (
    SELECT stock_code, count(DISTINCT invoice_no)::BIGINT AS purchase_invoices
    FROM chosen
    WHERE NOT cancel
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
SELECT
    t.rank,
    t.stock_code,
    n.description,
    t.net_revenue,
    t.placed_sales,
    t.cancelled_value,
    t.quantity,
    coalesce(i.purchase_invoices, 0)::BIGINT AS purchase_invoices
FROM top AS t
LEFT JOIN invoices AS i USING (stock_code)
LEFT JOIN names AS n USING (stock_code)
ORDER BY t.rank
