-- Chunks of generation $1, one array per column; metadata as json text and embeddings as pgvector text, so no
-- client-side codec is needed for either.
INSERT INTO kb_chunks (generation, source_key, seq, chunk_id, text, metadata, embedding)
SELECT $1, u.source_key, u.seq, u.chunk_id, u.text, u.metadata::jsonb, u.embedding::vector
FROM unnest($2::text[], $3::integer[], $4::text[], $5::text[], $6::text[], $7::text[])
    AS u (source_key, seq, chunk_id, text, metadata, embedding)
