-- Code knowledge bases no longer declared in schedules.py: marked, never deleted (their generations keep answering
-- searches, their history stays). $1: the names still declared.
UPDATE knowledge_bases SET orphaned = true, updated_at = now()
WHERE source = 'code' AND NOT orphaned AND NOT (name = ANY($1::text[]))
RETURNING name
