-- segments: summary of the rfm view per segment; every segment of the map is listed (empty ones
-- with 0 customers), customers no rule matched as 'Unclassified'. Largest total net spend
-- first, then the empty ones by name: the one order of segments everywhere.
WITH rules AS (
    SELECT segment, min(priority) AS priority, arg_min(action, priority) AS action
    FROM segment_rules
    GROUP BY segment
),
sized AS (
    SELECT
        segment,
        count(*)::BIGINT AS customers,
        avg(recency) AS mean_recency,
        avg(frequency) AS mean_frequency,
        -- monetary is whole millionths: round(monetary * 10^6) is exact, the sum in integers
        sum(round(monetary * 1000000)::HUGEINT)::DOUBLE / 1000000 / count(*) AS mean_monetary,
        sum(round(monetary * 1000000)::HUGEINT)::DOUBLE / 1000000 AS total_monetary
    FROM rfm
    GROUP BY segment
)
SELECT
    segment,
    coalesce(customers, 0)::BIGINT AS customers,
    coalesce(customers, 0) / nullif(sum(coalesce(customers, 0)) OVER (), 0) AS share,
    mean_recency,
    mean_frequency,
    mean_monetary,
    coalesce(total_monetary, 0.0) AS total_monetary,
    coalesce(action, '') AS action
FROM rules
FULL JOIN sized USING (segment)
ORDER BY coalesce(customers, 0) > 0 DESC, coalesce(total_monetary, 0.0) DESC, segment
