-- One round trip: the run's state, its attempt row and its overlap lease (see migration 0003).
SELECT outcome, attempt, holder FROM punchclock_start_run($1, $2, $3, $4, $5)
