-- reference_time: one row, t = the reference time T of RFM: as_of if given, else the latest
-- invoice_date (notebook: the latest of the lines that have a customer); null without lines.
SELECT coalesce(
    getvariable('as_of')::TIMESTAMP,
    CASE WHEN getvariable('notebook')
        THEN max(invoice_date) FILTER (WHERE customer_id IS NOT NULL)
        ELSE max(invoice_date)
    END
) AS t
FROM invoices  -- the invoice layer: every line's time and customer are there
