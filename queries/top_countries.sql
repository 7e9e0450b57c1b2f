-- top_countries: countries by sales over non-cancellation lines, with distinct orders and
-- customers and the share of all sales (exact totals divided as doubles); ties by country name.
WITH per_country AS (
    SELECT
        country,
        sum(micro) AS micro,
        count(DISTINCT invoice_no)::BIGINT AS orders,
        count(DISTINCT customer_id)::BIGINT AS customers
    FROM invoices  -- the invoice layer
    WHERE NOT cancellation
    GROUP BY country
)
SELECT
    row_number() OVER (ORDER BY micro DESC, country ASC NULLS LAST)::BIGINT AS rank,
    country,
    micro::DOUBLE / 1000000 AS sales,
    micro::DOUBLE / (sum(micro) OVER ())::DOUBLE AS share,
    orders,
    customers
FROM per_country
ORDER BY rank
LIMIT getvariable('top')
