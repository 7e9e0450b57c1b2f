"""Models: they take the small tables an engine aggregates and do the statistics and linear
algebra (DESIGN.md "Models"); none of them reads a line of the lake."""
