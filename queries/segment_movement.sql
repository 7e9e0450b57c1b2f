-- segment_movement: each customer of rfm (at the reference time T) with its segment at the
-- earlier time T0 = compare_as_of, else compare_days before T, never after T (a later T0 is T:
-- everyone `same`). RFM at T0 is rfm_at over the lines up to T0. segment_then is 'new' for a
-- customer rfm_at(T0) does not score (no purchase by then; notebook: no line); movement is
-- 'new', 'same', or 'THEN → NOW'.
WITH compare AS (
    SELECT least(
        coalesce(
            getvariable('compare_as_of')::TIMESTAMP,
            t - to_days(getvariable('compare_days')::INTEGER)
        ),
        t
    ) AS t0
    FROM reference_time
),
earlier AS (
    SELECT customer_id, segment FROM rfm_at((SELECT t0 FROM compare))
)
SELECT
    now.customer_id,
    coalesce(earlier.segment, 'new') AS segment_then,
    now.segment,
    CASE
        WHEN earlier.segment IS NULL THEN 'new'
        WHEN earlier.segment = now.segment THEN 'same'
        ELSE earlier.segment || ' → ' || now.segment
    END AS movement
FROM rfm AS now
LEFT JOIN earlier USING (customer_id)
ORDER BY now.customer_id
