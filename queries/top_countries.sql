-- top_countries: countries by sales over non-cancellation lines, with distinct orders and
-- customers and the share of all sales; ties by country name.
WITH per_country AS (
    SELECT
        country,
        sum(quantity * unit_price) AS sales,
        count(DISTINCT invoice_no)::BIGINT AS orders,
        count(DISTINCT customer_id)::BIGINT AS customers
    FROM invoice_lines
    WHERE NOT starts_with(invoice_no, 'C')
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
