-- monthly: one row per calendar month from the first to the last, empty months as zeros.
-- Orders are distinct invoices, sales the exact amount of non-cancellation lines, new customers
-- those whose first line ever falls in the month. standard: new and existing customers are
-- NULL in the first month (nobody's history is known there); notebook: all of them are new.
-- complete: whether the data covers the month from its first to its last day (coverage.sql).
-- From the invoice layer: one row per invoice, customer, country and time, with its lines.
WITH rows AS (
    SELECT
        date_trunc('month', invoice_date)::DATE AS month,
        invoice_no,
        customer_id,
        cancellation AS cancel,
        lines,
        micro
    FROM invoices
),
per_month AS (
    SELECT
        month,
        count(DISTINCT invoice_no) FILTER (WHERE NOT cancel) AS placed_orders,
        count(DISTINCT invoice_no) FILTER (WHERE cancel) AS cancelled_orders,
        sum(lines) FILTER (WHERE NOT cancel) AS placed_lines,
        sum(lines) FILTER (WHERE cancel) AS cancelled_lines,
        (sum(micro) FILTER (WHERE NOT cancel))::DOUBLE / 1000000 AS sales,
        count(DISTINCT customer_id) AS active_customers
    FROM rows
    GROUP BY month
),
new AS (
    SELECT month, count(*) AS new_customers
    FROM (
        SELECT min(month) AS month FROM rows
        WHERE customer_id IS NOT NULL
        GROUP BY customer_id
    )
    GROUP BY month
),
spine AS (
    SELECT
        unnest(generate_series(first_month, last_month, INTERVAL 1 MONTH))::DATE AS month,
        *
    FROM coverage
),
filled AS (
    SELECT
        month,
        coalesce(placed_orders, 0)::BIGINT AS placed_orders,
        coalesce(cancelled_orders, 0)::BIGINT AS cancelled_orders,
        coalesce(placed_lines, 0)::BIGINT AS placed_lines,
        coalesce(cancelled_lines, 0)::BIGINT AS cancelled_lines,
        coalesce(sales, 0.0) AS sales,
        coalesce(active_customers, 0)::BIGINT AS active_customers,
        coalesce(new_customers, 0)::BIGINT AS new_customers,
        getvariable('notebook') OR month > first_month AS known,
        (month > first_month OR starts_whole) AND (month < last_month OR ends_whole) AS complete
    FROM spine
    LEFT JOIN per_month USING (month)
    LEFT JOIN new USING (month)
)
SELECT
    month,
    (year(month) * 100 + month(month))::INTEGER AS yyyymm,
    placed_orders,
    cancelled_orders,
    placed_lines,
    cancelled_lines,
    sales,
    CASE WHEN lag(sales) OVER w <> 0 THEN 100 * (sales / lag(sales) OVER w - 1) END
        AS sales_growth_pct,
    active_customers,
    CASE WHEN known THEN new_customers END AS new_customers,
    CASE WHEN known THEN active_customers - new_customers END AS existing_customers,
    complete
FROM filled
WINDOW w AS (ORDER BY month)
ORDER BY month
