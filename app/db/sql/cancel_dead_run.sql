-- `runs cancel` of a running run whose worker stopped heartbeating: punchclock_lose_attempt sees the cancel
-- request and ends the run `cancelled`. NULL when the run is not running or its attempt is still alive.
WITH dead AS (
    SELECT id FROM runs WHERE id = $1 AND state = 'running' AND alive_until < now() FOR UPDATE
)
SELECT punchclock_lose_attempt(id) FROM dead
