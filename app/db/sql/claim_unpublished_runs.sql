-- The outbox: runs committed but not yet published, locked so that one publisher sends each. A run back in the
-- outbox after attempts (recovered by the sweep) is sent at once, counting its attempts as retries, so that its
-- schedule's max_retries still bounds it.
SELECT id, actor, args,
       CASE WHEN attempts > 0 THEN options || jsonb_build_object('retries', attempts) ELSE options END AS options,
       CASE WHEN attempts > 0 THEN 0 ELSE delay_ms END AS delay_ms
FROM runs
WHERE state = 'scheduled'
ORDER BY id
LIMIT $1
FOR UPDATE SKIP LOCKED
