UPDATE runs SET state = 'enqueued', enqueued_at = now()
WHERE id = ANY($1::bigint[]) AND state = 'scheduled'
