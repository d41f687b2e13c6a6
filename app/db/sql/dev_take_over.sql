-- `punchclock dev`, at start (app/dev_handover.py): take over what the previous dev on this database left. Only a
-- dead dev can have left it (one dev per data directory, app/dev_lock.py), and its in-memory broker died with it:
-- every message it held is gone and every attempt it ran has no worker left. So production's rules apply, with
-- their waits known to be over:
--   * running: the attempt's lease (alive_until) and its run lock end now; the sweep's own rule for an attempt
--     past alive_until (lost: cancelled if `runs cancel` asked, failed if no retry is left, else back to the
--     outbox) then resolves it, as it would after PUNCHCLOCK_LOCK_TTL_SECONDS;
--   * enqueued (but not waiting in a lease's queue slot, which is no message) or retrying: back to the outbox,
--     as the sweep does once a message is PUNCHCLOCK_REPUBLISH_AFTER_SECONDS overdue; a retry is sent at once
--     rather than after the rest of its backoff.
WITH running AS (
    UPDATE runs SET alive_until = now()
    WHERE state = 'running'
    RETURNING id
), leases AS (
    UPDATE run_locks SET expires_at = now()
    WHERE run_id IN (SELECT id FROM running) AND expires_at > now()
    RETURNING lock_key
), resent AS (
    UPDATE runs r SET state = 'scheduled', next_attempt_at = NULL
    WHERE (r.state = 'enqueued' AND NOT EXISTS (SELECT 1 FROM run_locks l WHERE l.waiting_run_id = r.id))
       OR r.state = 'retrying'
    RETURNING r.id
)
SELECT (SELECT count(*) FROM running) AS expired, (SELECT count(*) FROM resent) AS resent,
       (SELECT count(*) FROM leases) AS leases
