-- Forget sources $2 of knowledge base $1 (gone from its definition or from the server).
DELETE FROM kb_sources s USING knowledge_bases k
WHERE k.id = s.kb_id AND k.name = $1 AND s.source_key = ANY ($2::text[])
