-- The cached embeddings of embedder $1 among chunk hashes $2, as pgvector text ('[1,2,3]').
SELECT chunk_hash, embedding::text AS embedding
FROM kb_embedding_cache
WHERE embedder_id = $1 AND chunk_hash = ANY ($2::text[])
