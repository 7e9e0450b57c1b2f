-- data_quality: the counts of shared/data/README.md, as (check, count) rows.
WITH counts AS (
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
        count(*) - (SELECT count(*) FROM (SELECT DISTINCT * FROM invoice_lines))
            AS exact_duplicate_lines
    FROM invoice_lines
)
SELECT "check", "count"::BIGINT AS "count"
FROM (UNPIVOT counts ON COLUMNS(*) INTO NAME "check" VALUE "count")
