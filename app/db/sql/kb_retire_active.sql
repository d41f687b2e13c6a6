-- The first half of a switch: knowledge base $1's active generation, if any, becomes retired (before the new one
-- becomes active: at most one is active, kb_generations_one_active).
UPDATE kb_generations SET state = 'retired' WHERE kb_id = $1 AND state = 'active'
