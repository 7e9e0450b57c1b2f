-- segment_transitions: one row per (segment_then, segment) pair of segment_movement that
-- occurs: customers, and net_revenue = their net spend up to T (rfm's monetary, whole
-- millionths, so round(monetary * 10^6) is exact and the sum is taken in integers). Sorted by
-- segment_then, then segment, in code point order (`new` after the capitalised names).
SELECT
    m.segment_then,
    m.segment,
    count(*)::BIGINT AS customers,
    sum(round(r.monetary * 1000000)::HUGEINT)::DOUBLE / 1000000 AS net_revenue
FROM segment_movement AS m
JOIN rfm AS r USING (customer_id)
GROUP BY m.segment_then, m.segment
ORDER BY m.segment_then, m.segment
