-- recommendations: for each customer of the segments in recommend_segments (read from the rfm
-- table), the `recommendations` products they have not bought that are bought most with what
-- they did buy. baskets = the distinct product codes of each purchase invoice (purchase lines
-- with quantity > 0, non-product codes left out, none after as_of); co(a, p) = the purchase
-- invoices holding both a and p; score(c, p) = sum over the customer's codes a of co(a, p), for
-- p they have not bought, score > 0; ties by the purchase invoices holding p (more first), then
-- stock_code. description: the code's most frequent one over its basket lines (smallest on
-- ties).
-- Scoring every product for every customer would join each customer's codes with their whole
-- co-occurrence rows (10^8 rows at 1M lines, 10^10 at 100M), so lgs_fast/recommend.py's bounds
-- are used, exactly as there: each code a keeps its partners with co above next(a), the
-- (neighbours + 1)-th largest of its row; from those lists, `low` bounds a candidate's score
-- from below and low + reach - listed from above (reach = sum of next(a) over the customer's
-- codes). Only candidates whose upper bound reaches `bar`, the N-th best lower bound, are
-- scored exactly; a customer whose reach is not below bar (a product on none of the lists
-- could still make the N best) is scored in full. The result does not depend on neighbours.
WITH purchases AS NOT MATERIALIZED (
    SELECT invoice_no, customer_id, stock_code, description
    FROM invoice_lines
    WHERE customer_id IS NOT NULL
        AND NOT starts_with(invoice_no, 'C')
        AND quantity > 0
        AND NOT regexp_matches(stock_code, getvariable('non_product'))
        AND (getvariable('as_of') IS NULL OR invoice_date <= getvariable('as_of')::TIMESTAMP)
        -- no segment to recommend to: no basket is read (the constant filter prunes the scan)
        AND array_length(getvariable('recommend_segments')) > 0
),
-- Codes as integers (their rank) for the pairs: counting them by two integers rather than two
-- strings (10M lines: 1.6 * 10^8 pairs) takes 5.8 s instead of 8.9.
codes AS (
    SELECT stock_code, (row_number() OVER (ORDER BY stock_code))::INTEGER AS code
    FROM (SELECT DISTINCT stock_code FROM purchases)
),
baskets AS (
    SELECT DISTINCT p.invoice_no, p.customer_id, c.code
    FROM purchases AS p
    JOIN codes AS c USING (stock_code)
),
targets AS (
    SELECT customer_id, segment
    FROM rfm
    WHERE list_contains(getvariable('recommend_segments')::VARCHAR[], segment)
),
bought AS (
    SELECT DISTINCT customer_id, code FROM baskets SEMI JOIN targets USING (customer_id)
),
-- Each pair counted once, as a < p, then mirrored: the pairs made grow with the square of the
-- codes per invoice, and this halves them.
half AS (
    SELECT a.code, p.code AS other, count(*) AS co
    FROM baskets AS a
    JOIN baskets AS p ON p.invoice_no = a.invoice_no AND a.code < p.code
    GROUP BY ALL
),
co AS (
    SELECT code, other, co FROM half
    UNION ALL
    SELECT other, code, co FROM half
),
cut AS (
    SELECT
        code,
        CASE WHEN count(*) > getvariable('neighbours')
            THEN max(co, getvariable('neighbours') + 1)[-1] ELSE 0 END AS next
    FROM co
    GROUP BY code
),
-- MATERIALIZED: a barrier to join reordering, which from its estimates would join the
-- customers' codes with their whole co-occurrence rows before the filter that keeps a few.
kept AS MATERIALIZED (
    SELECT k.code, k.other, k.co, c.next
    FROM co AS k
    JOIN cut AS c USING (code)
    WHERE k.co > c.next
),
-- Summed first, then the customer's own codes dropped: the anti join then sees one row per
-- pair instead of one per term (10 times fewer).
bounds AS (
    SELECT s.*
    FROM (
        SELECT b.customer_id, k.other, sum(k.co) AS low, sum(k.next) AS listed
        FROM bought AS b
        JOIN kept AS k USING (code)
        GROUP BY ALL
    ) AS s
    ANTI JOIN bought AS o ON o.customer_id = s.customer_id AND o.code = s.other
),
bars AS (
    SELECT
        customer_id,
        CASE WHEN count(*) >= getvariable('recommendations')
            THEN max(low, getvariable('recommendations'))[-1] ELSE 1 END AS bar
    FROM bounds
    GROUP BY customer_id
),
customers AS (
    SELECT
        b.customer_id,
        sum(coalesce(c.next, 0)) AS reach,
        coalesce(any_value(r.bar), 1) AS bar
    FROM bought AS b
    LEFT JOIN cut AS c USING (code)
    LEFT JOIN bars AS r USING (customer_id)
    GROUP BY b.customer_id
),
candidates AS (
    SELECT customer_id, other
    FROM bounds
    JOIN customers USING (customer_id)
    WHERE reach < bar AND low + reach - listed >= bar
),
terms AS MATERIALIZED (
    SELECT c.customer_id, c.other, b.code
    FROM candidates AS c
    JOIN bought AS b USING (customer_id)
),
exact AS (
    SELECT t.customer_id, t.other, co.co
    FROM terms AS t
    JOIN co ON co.code = t.code AND co.other = t.other
),
unsettled AS MATERIALIZED (
    SELECT b.customer_id, b.code
    FROM bought AS b
    JOIN customers AS u USING (customer_id)
    WHERE u.reach >= u.bar
),
full_rows AS (
    SELECT u.customer_id, co.other, co.co
    FROM unsettled AS u
    JOIN co USING (code)
    ANTI JOIN bought AS b ON b.customer_id = u.customer_id AND b.code = co.other
),
scored AS (
    SELECT customer_id, other AS code, sum(co) AS score
    FROM (SELECT * FROM exact UNION ALL SELECT * FROM full_rows)
    GROUP BY ALL
),
held AS (
    SELECT code, count(*) AS invoices FROM baskets GROUP BY code
),
best AS (
    SELECT
        s.customer_id,
        row_number() OVER (
            PARTITION BY s.customer_id ORDER BY s.score DESC, h.invoices DESC, c.stock_code
        ) AS rank,
        c.stock_code,
        s.score
    FROM scored AS s
    JOIN held AS h USING (code)
    JOIN codes AS c USING (code)
    QUALIFY rank <= getvariable('recommendations')
),
names AS (
    SELECT stock_code, description
    FROM (
        SELECT stock_code, description, count(*) AS n
        FROM purchases
        WHERE description IS NOT NULL AND stock_code IN (SELECT stock_code FROM best)
        GROUP BY ALL
    )
    QUALIFY row_number() OVER (PARTITION BY stock_code ORDER BY n DESC, description) = 1
)
SELECT
    b.customer_id,
    t.segment,
    b.rank::BIGINT AS rank,
    b.stock_code,
    n.description,
    b.score::BIGINT AS score
FROM best AS b
JOIN targets AS t USING (customer_id)
LEFT JOIN names AS n USING (stock_code)
ORDER BY b.customer_id, b.rank
