"""Running a suite's cells on a Ray cluster: which nodes are which hardware, how artifacts and
results travel, and the dispatch that keeps one cell per machine. Only ``dispatch`` imports Ray."""
