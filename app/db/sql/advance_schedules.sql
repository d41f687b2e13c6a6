UPDATE schedules AS s
SET next_fire_at = u.next_fire_at
FROM unnest($1::bigint[], $2::timestamptz[]) AS u (id, next_fire_at)
WHERE s.id = u.id
