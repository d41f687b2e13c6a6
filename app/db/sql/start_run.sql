-- One round trip: the run's state, its attempt row and its overlap lease (see migrations 0003 and 0005).
SELECT outcome, attempt, holder, wait_ms FROM punchclock_start_run($1, $2, $3, $4, $5)
