-- clv_summary: per customer with a purchase line, the input of the CLV models, in days.
-- purchase days = distinct calendar days with a purchase line (non-cancellation, with a
-- customer); frequency = purchase days - 1 (repeat purchases); recency = days from the first to
-- the last purchase day; T = days from the first purchase day to the reference time's day
-- (rfm's T: as_of, else the latest line, or for the notebook preset the latest line with a
-- customer; as_of drops later lines); monetary_value = mean over the repeat purchase days (all
-- but the first) of the day's placed sales, NULL when there is none. A day's sales are summed
-- exactly in millionths of a pound, as in rfm.sql, so both engines divide the same numbers.
WITH scope AS (  -- the invoice layer: every line's customer, time and exact amount
    SELECT * FROM invoices
    WHERE getvariable('as_of') IS NULL OR invoice_date <= getvariable('as_of')::TIMESTAMP
),
reference AS (
    SELECT coalesce(
        getvariable('as_of')::TIMESTAMP,
        CASE WHEN getvariable('notebook')
            THEN (SELECT max(invoice_date) FROM scope WHERE customer_id IS NOT NULL)
            ELSE (SELECT max(invoice_date) FROM scope)
        END
    )::DATE AS end_day
),
days AS (
    SELECT
        customer_id,
        invoice_date::DATE AS day,
        sum(micro) AS micro  -- HUGEINT: no overflow
    FROM scope
    WHERE customer_id IS NOT NULL AND NOT cancellation
    GROUP BY customer_id, day
),
per_customer AS (
    SELECT
        customer_id,
        min(day) AS first_purchase,
        max(day) AS last_purchase,
        (count(*) - 1)::BIGINT AS frequency,
        sum(micro) - arg_min(micro, day) AS repeat_micro
    FROM days
    GROUP BY customer_id
)
SELECT
    p.customer_id,
    p.first_purchase,
    p.last_purchase,
    p.frequency,
    (p.last_purchase - p.first_purchase)::BIGINT AS recency,
    (r.end_day - p.first_purchase)::BIGINT AS "T",
    CASE WHEN p.frequency > 0 THEN p.repeat_micro::DOUBLE / 1000000 / p.frequency END AS monetary_value
FROM per_customer AS p
CROSS JOIN reference AS r
ORDER BY p.customer_id
