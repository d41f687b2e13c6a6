-- The $4 chunks nearest query vector $2 (pgvector text, embedded by embedder $3) in the active generation of
-- knowledge base $1. One statement reads the pointer and searches, in one snapshot: a search sees the generation
-- active when it started, whole, whatever switch commits meanwhile.
-- {dims} as in kb_search.sql. The generation's row comes back even without hits, to tell a query embedded by
-- another embedder (or of other dimensions) from an empty generation; no row: no such knowledge base, or none
-- of its generations is active yet.
SELECT g.id AS generation, g.dims, g.embedder_id, h.chunk_id, h.source_key, h.text, h.metadata, h.distance
FROM knowledge_bases k
JOIN kb_generations g ON g.id = k.active_generation
LEFT JOIN LATERAL (
    SELECT c.chunk_id, c.source_key, c.text, c.metadata, c.embedding::vector({dims}) <=> $2::text::vector({dims}) AS distance
    FROM kb_chunks c
    WHERE c.generation = g.id AND g.embedder_id = $3 AND g.dims = {dims}
    ORDER BY distance
    LIMIT $4
) h ON true
WHERE k.name = $1
ORDER BY h.distance
