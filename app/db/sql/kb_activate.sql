-- The second half of a switch: generation $2 becomes active and knowledge base $1's pointer names it. Readers
-- resolve the pointer in the statement that searches (kb_search_active.sql), so they see the old generation
-- until this transaction commits and the new one after, never a mixture.
WITH activated AS (
    UPDATE kb_generations SET state = 'active', activated_at = now(), finished_at = coalesce(finished_at, now())
    WHERE id = $2 AND kb_id = $1
    RETURNING id
)
UPDATE knowledge_bases SET active_generation = (SELECT id FROM activated), updated_at = now()
WHERE id = $1
