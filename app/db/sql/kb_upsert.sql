-- Create or update a knowledge base by name: $1 name, $2 definition (jsonb), $3 embedder_id, $4 dims, $5 source.
-- Its generations and active pointer are left alone: a changed embedder applies from the next generation.
INSERT INTO knowledge_bases AS k (name, definition, embedder_id, dims, source)
VALUES ($1, $2::jsonb, $3, $4, $5)
ON CONFLICT (name) DO UPDATE SET
    definition = excluded.definition,
    embedder_id = excluded.embedder_id,
    dims = excluded.dims,
    source = excluded.source,
    orphaned = false,  -- declared again
    updated_at = now()
RETURNING *
