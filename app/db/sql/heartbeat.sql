-- The worker's heartbeat for the runs it is running: renew their leases, and say which were asked to stop.
WITH renewed AS (
    UPDATE run_locks SET expires_at = now() + $2::interval WHERE run_id = ANY ($1::bigint[])
)
SELECT id FROM runs WHERE id = ANY ($1::bigint[]) AND cancel_requested
