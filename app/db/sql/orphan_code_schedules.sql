-- Code schedules no longer declared in schedules.py: paused and marked, never deleted (history stays).
UPDATE schedules SET paused = true, orphaned = true, updated_at = now()
WHERE source = 'code' AND NOT orphaned AND NOT (name = ANY($1::text[]))
RETURNING name
