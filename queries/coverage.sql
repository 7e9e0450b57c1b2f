-- coverage: one row, the first and last months of the analysed lines, and whether the lines
-- cover the first month from its first day (starts_whole) and the last month to its last day
-- (ends_whole). A month is complete (DESIGN.md) when it lies between those two, or is one of
-- them and the data reaches its end; monthly and cohorts flag each month with it.
SELECT
    date_trunc('month', min(invoice_date))::DATE AS first_month,
    date_trunc('month', max(invoice_date))::DATE AS last_month,
    day(min(invoice_date)) = 1 AS starts_whole,
    last_day(max(invoice_date)) = max(invoice_date)::DATE AS ends_whole
FROM invoices  -- the invoice layer: every line's time is there
