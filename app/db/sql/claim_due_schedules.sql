-- Lock a batch of due schedules; SKIP LOCKED lets concurrent ticks take disjoint batches.
SELECT id, name, actor, args, cron, timezone, misfire, catchup_window, next_fire_at,
       max_retries, min_backoff, max_backoff, timeout, overlap, lock_key, retry_timeouts, jitter, after
FROM schedules
WHERE NOT paused AND next_fire_at <= $1
ORDER BY next_fire_at
LIMIT $2
FOR UPDATE SKIP LOCKED
