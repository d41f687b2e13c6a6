-- A build is over: $2 'ready' (its gate passed) or 'failed'; $3 its counts as one jsonb record keyed by column,
-- $4 gate scores, $5 per-query gate results, $6 the error. Only a building generation finishes.
UPDATE kb_generations g SET
    state = $2,
    documents = c.documents,
    chunks = c.chunks,
    embedded = c.embedded,
    carried = c.carried,
    deleted = c.deleted,
    gate_scores = $4::jsonb,
    gate_results = $5::jsonb,
    error = $6,
    finished_at = now()
FROM jsonb_populate_record(NULL::kb_generations, $3::jsonb) AS c
WHERE g.id = $1 AND g.state = 'building'
RETURNING g.*, (SELECT name FROM knowledge_bases WHERE id = g.kb_id) AS kb
