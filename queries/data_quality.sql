-- data_quality: the counts of shared/data/README.md, as (check, count) rows.
-- Equal lines have equal hashes, so only lines whose hash repeats can be duplicates; those few
-- are compared in full, which keeps the count exact and cheap. Repeats are found by sorting
-- the hashes (neighbours equal): a group-by over every hash took 15 s and 3.3 GiB at 100M
-- lines, sorting 10 s and 2.5 GiB. `hashed` is read twice and NOT MATERIALIZED, as in
-- top_products.sql.
WITH hashed AS NOT MATERIALIZED (
    SELECT *, hash(invoice_no, stock_code, description, quantity, invoice_date, unit_price,
        customer_id, country) AS h
    FROM invoice_lines
),
repeated AS (
    SELECT DISTINCT h
    FROM (SELECT h, lag(h) OVER (ORDER BY h) AS previous FROM hashed)
    WHERE h = previous
),
candidates AS (
    SELECT invoice_no, stock_code, description, quantity, invoice_date, unit_price,
        customer_id, country
    FROM hashed
    WHERE h IN (SELECT h FROM repeated)
),
counts AS (
    SELECT
        count(*) AS lines,
        count(*) FILTER (WHERE customer_id IS NULL) AS no_customer_id,
        count(*) FILTER (WHERE description IS NULL) AS no_description,
        count(*) FILTER (WHERE starts_with(invoice_no, 'C')) AS cancellation_lines,
        -- its own SELECT: a distinct count among plain ones buffers the lines (overview.sql)
        (SELECT count(DISTINCT invoice_no) FROM invoice_lines WHERE starts_with(invoice_no, 'C'))
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
