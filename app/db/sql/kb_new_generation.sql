-- $1 knowledge base name, $2 embedder_id, $3 dims, $4 run id or NULL: the new generation's id (its partition of
-- kb_chunks created, its HNSW index not yet: kb_index_generation, once it is filled; see migration 0007).
SELECT punchclock_kb_new_generation($1, $2, $3, $4)
