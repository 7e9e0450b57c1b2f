-- cohorts: monthly retention. A customer's cohort is the month of their first line; for each
-- cohort and each k = 0 .. (last month - cohort), the customers active k months later, and
-- whether that activity month is complete (as in monthly.sql, from coverage.sql).
WITH active AS (
    SELECT DISTINCT customer_id, date_trunc('month', invoice_date)::DATE AS month
    FROM invoices  -- the invoice layer
    WHERE customer_id IS NOT NULL
),
firsts AS (
    SELECT customer_id, min(month) AS cohort FROM active GROUP BY customer_id
),
sizes AS (
    SELECT cohort, count(*)::BIGINT AS cohort_size FROM firsts GROUP BY cohort
),
grid AS (
    SELECT
        cohort,
        cohort_size,
        unnest(range(0, last - (year(cohort) * 12 + month(cohort)) + 1)) AS months_since
    FROM sizes
    CROSS JOIN (SELECT max(year(month) * 12 + month(month)) AS last FROM active)
),
kept AS (
    SELECT
        f.cohort,
        (year(a.month) * 12 + month(a.month)) - (year(f.cohort) * 12 + month(f.cohort))
            AS months_since,
        count(*)::BIGINT AS customers
    FROM active AS a
    JOIN firsts AS f USING (customer_id)
    GROUP BY ALL
)
SELECT
    cohort,
    (year(cohort) * 100 + month(cohort))::INTEGER AS cohort_yyyymm,
    months_since::INTEGER AS months_since,
    cohort_size,
    coalesce(customers, 0)::BIGINT AS customers,
    coalesce(customers, 0) / cohort_size AS retention,
    (activity > c.first_month OR c.starts_whole) AND (activity < c.last_month OR c.ends_whole)
        AS complete
FROM (SELECT *, (cohort + to_months(months_since))::DATE AS activity FROM grid)
CROSS JOIN coverage AS c
LEFT JOIN kept USING (cohort, months_since)
ORDER BY cohort, months_since
