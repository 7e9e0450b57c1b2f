-- data_quality: the counts of shared/data/README.md, as (check, count) rows.
-- Equal lines have equal hashes, so only lines whose hash repeats can be duplicates; those few
-- are compared in full, which keeps the count exact and cheap.
WITH hashed AS (
    SELECT *, hash(invoice_no, stock_code, description, quantity, invoice_date, unit_price,
        customer_id, country) AS h
    FROM invoice_lines
),
candidates AS (
    SELECT invoice_no, stock_code, description, quantity, invoice_date, unit_price,
        customer_id, country
    FROM hashed
    WHERE h IN (SELECT h FROM hashed GROUP BY h HAVING count(*) > 1)
),
counts AS (
    SELECT
        count(*) AS lines,
        count(*) FILTER (WHERE customer_id IS NULL) AS no_customer_id,
        count(*) FILTER (WHERE description IS NULL) AS no_description,
        count(*) FILTER (WHERE starts_with(invoice_no, 'C')) AS cancellation_lines,
        count(DISTINCT invoice_no) FILTER (WHERE starts_with(invoice_no, 'C'))
            AS cancelled_invoices,
        count(*) FILTER (WHERE quantity < 0 AND NOT starts_with(invoice_no, 'C'))
            AS stock_adjustment_lines,
        count(*) FILTER (WHERE unit_price = 0) AS zero_price_lines,
        count(*) FILTER (WHERE unit_price < 0) AS negative_price_lines,
        count(*) FILTER (WHERE regexp_matches(stock_code, getvariable('non_product')))
            AS non_product_lines,
        (SELECT count(*) - count(DISTINCT candidates) FROM candidates) AS exact_duplicate_lines
    FROM invoice_lines
)
SELECT "check", "count"::BIGINT AS "count"
FROM (UNPIVOT counts ON COLUMNS(*) INTO NAME "check" VALUE "count")
