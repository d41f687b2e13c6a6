-- Moves pending changes of the final runs into the stats rollup (punchclock_run_stats_rollup, migration 0006):
-- the (schedule, hour) groups of the first $1 pending rows, whole. Returns how many pending rows it took, or -1
-- when another process is rolling up at this moment.
SELECT punchclock_run_stats_rollup($1)
