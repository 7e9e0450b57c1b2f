-- top_countries: countries by sales over non-cancellation lines, with distinct orders and
-- customers and the share of all sales; ties by country name.
WITH per_country AS (
    SELECT
        country,
        sum(amount) AS sales,
        count(DISTINCT invoice_no)::BIGINT AS orders,
        count(DISTINCT customer_id)::BIGINT AS customers
    FROM invoices  -- the invoice layer
    WHERE NOT cancellation
    GROUP BY country
)
SELECT
    row_number() OVER (ORDER BY sales DESC, country ASC NULLS LAST)::BIGINT AS rank,
    country,
    sales,
    sales / sum(sales) OVER () AS share,
    orders,
    customers
FROM per_country
ORDER BY rank
LIMIT getvariable('top')
