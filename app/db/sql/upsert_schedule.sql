-- Create or update a schedule by name. A changed cron or time zone restarts the schedule's clock at
-- $19 (the next instant after now); an unchanged one keeps its next_fire_at so no pending instant is lost.
-- A code sync ($17 = 'code') never unpauses what an operator paused, unless the schedule was orphaned.
INSERT INTO schedules AS s (name, actor, args, cron, timezone, paused, misfire, catchup_window, overlap,
                            lock_key, max_retries, min_backoff, max_backoff, timeout, jitter, notify, source,
                            description, next_fire_at, after, retry_timeouts, notify_on_recovery)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22)
ON CONFLICT (name) DO UPDATE SET
    actor = excluded.actor,
    args = excluded.args,
    cron = excluded.cron,
    timezone = excluded.timezone,
    paused = excluded.paused OR (s.paused AND NOT s.orphaned),
    misfire = excluded.misfire,
    catchup_window = excluded.catchup_window,
    overlap = excluded.overlap,
    lock_key = excluded.lock_key,
    max_retries = excluded.max_retries,
    min_backoff = excluded.min_backoff,
    max_backoff = excluded.max_backoff,
    timeout = excluded.timeout,
    jitter = excluded.jitter,
    notify = excluded.notify,
    after = excluded.after,
    source = excluded.source,
    description = excluded.description,
    retry_timeouts = excluded.retry_timeouts,
    notify_on_recovery = excluded.notify_on_recovery,
    orphaned = false,
    next_fire_at = CASE
        WHEN s.cron IS DISTINCT FROM excluded.cron OR s.timezone <> excluded.timezone OR s.next_fire_at IS NULL
            OR s.orphaned
        THEN excluded.next_fire_at
        ELSE s.next_fire_at END,
    updated_at = now()
RETURNING *
