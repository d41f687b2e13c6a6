-- One pending notification per target of a run's event, in the order given ($3: masked targets).
-- A redelivered call finds the rows of the first one and returns their ids instead of adding more.
WITH existing AS (
    SELECT id FROM notifications WHERE run_id = $1 AND event = $2
), inserted AS (
    INSERT INTO notifications (run_id, event, target)
    SELECT $1, $2, t.target
    FROM unnest($3::text[]) WITH ORDINALITY AS t (target, position)
    WHERE NOT EXISTS (SELECT 1 FROM existing)
    ORDER BY t.position
    RETURNING id
)
SELECT id FROM existing
UNION ALL
SELECT id FROM inserted
ORDER BY id
