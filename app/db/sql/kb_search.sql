-- The $3 chunks of generation $1 nearest query vector $2 (pgvector text) by cosine distance.
-- {dims} is the query's length, filled in by app/kb/store.py: a partition's HNSW index is on
-- embedding::vector(n) (migration 0007), and only that same expression in ORDER BY uses it. The generation's row
-- comes back even without hits, to tell a dropped generation or a query of other dimensions from an empty one;
-- the one-time filter on its dims keeps the cast away from rows of another size.
SELECT g.id AS generation, g.dims, g.embedder_id, g.dropped_at, h.chunk_id, h.source_key, h.text, h.metadata, h.distance
FROM kb_generations g
LEFT JOIN LATERAL (
    SELECT c.chunk_id, c.source_key, c.text, c.metadata, c.embedding::vector({dims}) <=> $2::text::vector({dims}) AS distance
    FROM kb_chunks c
    WHERE c.generation = g.id AND g.dims = {dims} AND g.dropped_at IS NULL
    ORDER BY distance
    LIMIT $3
) h ON true
WHERE g.id = $1
ORDER BY h.distance
