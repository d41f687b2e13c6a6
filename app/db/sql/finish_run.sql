-- One round trip: the run's state, its attempt row, its lease freed when final, its follow-ups marked due
-- (see migration 0005). $2: the attempt that ends (NULL: the running one).
SELECT released_waiting_run, has_dependents, followups_due FROM punchclock_finish_run($1, $2, $3, $4, $5, $6)
