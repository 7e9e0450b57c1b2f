-- weekly_sales: one row per Monday-starting week from the first to the last week of the lines,
-- empty weeks as zeros (DESIGN.md "weekly sales and forecast"). net_revenue is the amount of all
-- lines, placed_sales that of non-cancellation lines, invoices the distinct invoice numbers.
-- complete: the data covers the week from its Monday to its Sunday, judged as coverage.sql
-- judges months: every week between the first and the last is; those two are when the lines
-- reach their ends. The forecast (lgs_fast/forecast.py) reads the complete weeks.
WITH rows AS (  -- from the invoice layer
    SELECT
        date_trunc('week', invoice_date)::DATE AS week,
        invoice_no,
        cancellation AS cancel,
        micro
    FROM invoices
),
per_week AS (
    SELECT
        week,
        sum(micro)::DOUBLE / 1000000 AS net_revenue,
        (sum(micro) FILTER (WHERE NOT cancel))::DOUBLE / 1000000 AS placed_sales,
        count(DISTINCT invoice_no) AS invoices
    FROM rows
    GROUP BY week
),
week_coverage AS (
    SELECT
        date_trunc('week', min(invoice_date))::DATE AS first_week,
        date_trunc('week', max(invoice_date))::DATE AS last_week,
        isodow(min(invoice_date)) = 1 AS starts_whole,
        isodow(max(invoice_date)) = 7 AS ends_whole
    FROM invoices
),
spine AS (
    SELECT unnest(generate_series(first_week, last_week, INTERVAL 1 WEEK))::DATE AS week, *
    FROM week_coverage
)
SELECT
    week,
    coalesce(net_revenue, 0.0) AS net_revenue,
    coalesce(placed_sales, 0.0) AS placed_sales,
    coalesce(invoices, 0)::BIGINT AS invoices,
    (week > first_week OR starts_whole) AND (week < last_week OR ends_whole) AS complete
FROM spine
LEFT JOIN per_week USING (week)
ORDER BY week
