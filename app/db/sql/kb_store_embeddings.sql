-- Cache embeddings of embedder $1: chunk hashes $2 and their vectors $3 as pgvector text. One already cached is
-- kept (the same embedder gives the same chunk the same embedding).
INSERT INTO kb_embedding_cache (embedder_id, chunk_hash, embedding)
SELECT $1, u.chunk_hash, u.embedding::vector
FROM unnest($2::text[], $3::text[]) AS u (chunk_hash, embedding)
ON CONFLICT (embedder_id, chunk_hash) DO NOTHING
