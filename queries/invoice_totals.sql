-- invoice_totals: the values whose distribution is reported, one column `amount`.
-- standard: totals of non-cancellation invoices with total > 0;
-- notebook: line amounts with quantity > 0 and unit_price > 0.
SELECT quantity * unit_price AS amount
FROM invoice_lines
WHERE getvariable('notebook') AND quantity > 0 AND unit_price > 0
UNION ALL
SELECT total
FROM (
    SELECT sum(quantity * unit_price) AS total
    FROM invoice_lines
    WHERE NOT getvariable('notebook') AND NOT starts_with(invoice_no, 'C')
    GROUP BY invoice_no
)
WHERE total > 0
