-- The sweep: running runs whose attempt stopped proving it is alive, resolved (migration 0005), at most $1.
SELECT run_id, state FROM punchclock_recover_lost($1)
