-- One round trip: the run's state, its attempt row, its lease freed when final (see migration 0003).
SELECT released_waiting_run, previous_state, notify, notify_on_recovery, has_dependents
FROM punchclock_finish_run($1, $2, $3, $4, $5)
