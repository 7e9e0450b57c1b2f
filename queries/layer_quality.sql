-- layer_quality: the data-quality counts that add up line by line (lgs_fast/layers.py), one
-- row, over the lines in view `layer_lines`.
-- Equal lines have equal hashes, so only lines whose hash repeats can be duplicates; those few
-- are compared in full, which keeps the count exact and cheap. Repeats are found by sorting
-- the hashes (neighbours equal): a group-by over every hash took 15 s and 3.3 GiB at 100M
-- lines, sorting 10 s and 2.5 GiB. `hashed` is read twice and NOT MATERIALIZED, as in
-- top_products.sql.
WITH hashed AS NOT MATERIALIZED (
    SELECT *, hash(invoice_no, stock_code, description, quantity, invoice_date, unit_price,
        customer_id, country) AS h
    FROM layer_lines
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
)
SELECT
    count(*)::BIGINT AS lines,
    count(*) FILTER (WHERE customer_id IS NULL)::BIGINT AS no_customer_id,
    count(*) FILTER (WHERE description IS NULL)::BIGINT AS no_description,
    count(*) FILTER (WHERE starts_with(invoice_no, 'C'))::BIGINT AS cancellation_lines,
    count(*) FILTER (WHERE quantity < 0 AND NOT starts_with(invoice_no, 'C'))::BIGINT
        AS stock_adjustment_lines,
    count(*) FILTER (WHERE unit_price = 0)::BIGINT AS zero_price_lines,
    count(*) FILTER (WHERE unit_price < 0)::BIGINT AS negative_price_lines,
    count(*) FILTER (WHERE regexp_matches(stock_code, getvariable('non_product')))::BIGINT
        AS non_product_lines,
    (SELECT count(*) - count(DISTINCT candidates) FROM candidates)::BIGINT
        AS exact_duplicate_lines
FROM layer_lines
