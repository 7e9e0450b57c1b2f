-- invoice_totals: the values whose distribution is reported, one column `micro`: exact amounts
-- in millionths of a pound (lgs_fast/lake/layers.py "Money").
-- standard: totals of non-cancellation invoices with total > 0 (from the invoice layer);
-- notebook: line amounts with quantity > 0 and unit_price > 0 (from the lines).
SELECT round(quantity * unit_price * 1000000)::HUGEINT AS micro
FROM invoice_lines
WHERE getvariable('notebook') AND quantity > 0 AND unit_price > 0
UNION ALL
SELECT total
FROM (
    SELECT sum(micro) AS total
    FROM invoices
    WHERE NOT getvariable('notebook') AND NOT cancellation
    GROUP BY invoice_no
)
WHERE total > 0
