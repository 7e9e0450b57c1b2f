-- reversed_invoices (DESIGN.md "reversed invoices"): a purchase invoice (not C…, with a
-- customer) is reversed by a credit note (C…) of the same customer, dated at or after it (each
-- dated by its earliest line), whose net quantity per stock code is the negation of the
-- invoice's (the same stock codes on both) and whose total in whole pence (half away from zero)
-- is the negation of the invoice's. Each credit note reverses the latest such invoice (then the
-- greatest invoice_no); an invoice reversed by several is listed once, with the earliest (then
-- least numbered) credit note. One row per reversed invoice, largest total first.
-- Totals are summed exactly in millionths of a pound, as in rfm.sql, so that rounding to the
-- penny does not depend on the order of addition. Pairs are first found by customer and total,
-- which leaves few; only their lines are then compared stock code by stock code.
WITH known AS NOT MATERIALIZED (
    SELECT invoice_no, customer_id, stock_code, quantity, invoice_date, unit_price
    FROM invoice_lines
    WHERE customer_id IS NOT NULL
),
-- From the invoice layer. Not materialised either: the filters on `cancel` below reach through
-- the grouping to the scan, so invoices and credit notes are grouped apart.
documents AS NOT MATERIALIZED (
    SELECT
        *,
        (CASE WHEN micro >= 0 THEN (micro + 5000) // 10000
            ELSE -((5000 - micro) // 10000) END)::BIGINT AS pence
    FROM (
        SELECT
            invoice_no,
            customer_id,
            cancellation AS cancel,
            min(invoice_date) AS date,
            sum(micro) AS micro  -- HUGEINT
        FROM invoices
        WHERE customer_id IS NOT NULL
        GROUP BY invoice_no, customer_id, cancellation
    )
),
candidates AS (
    SELECT
        i.invoice_no,
        c.invoice_no AS credit_note,
        i.customer_id,
        i.date AS invoice_date,
        c.date AS credit_date,
        i.micro
    FROM documents AS i
    JOIN documents AS c
        ON c.customer_id = i.customer_id AND c.pence = -i.pence AND c.date >= i.date
    WHERE NOT i.cancel AND c.cancel
),
codes AS (
    SELECT invoice_no, stock_code, sum(quantity) AS quantity
    FROM known
    WHERE invoice_no IN (
        SELECT invoice_no FROM candidates UNION ALL SELECT credit_note FROM candidates
    )
    GROUP BY invoice_no, stock_code
),
sizes AS (
    SELECT invoice_no, count(*) AS codes FROM codes GROUP BY invoice_no
),
agreeing AS (
    SELECT p.invoice_no, p.credit_note, count(*) AS codes
    FROM candidates AS p
    JOIN codes AS i ON i.invoice_no = p.invoice_no
    JOIN codes AS c
        ON c.invoice_no = p.credit_note AND c.stock_code = i.stock_code
        AND c.quantity = -i.quantity
    GROUP BY p.invoice_no, p.credit_note
),
verified AS (
    SELECT p.*
    FROM candidates AS p
    JOIN agreeing AS a USING (invoice_no, credit_note)
    JOIN sizes AS i ON i.invoice_no = p.invoice_no AND i.codes = a.codes
    JOIN sizes AS c ON c.invoice_no = p.credit_note AND c.codes = a.codes
    QUALIFY row_number() OVER (
        PARTITION BY p.credit_note ORDER BY p.invoice_date DESC, p.invoice_no DESC
    ) = 1
)
SELECT invoice_no, credit_note, customer_id, invoice_date, credit_date, micro::DOUBLE / 1000000 AS total
FROM verified
QUALIFY row_number() OVER (PARTITION BY invoice_no ORDER BY credit_date, credit_note) = 1
ORDER BY total DESC, invoice_no
