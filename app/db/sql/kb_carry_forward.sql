-- Copy the chunks of documents $3 (source keys) from generation $1 into generation $2, embeddings included.
INSERT INTO kb_chunks (generation, source_key, seq, chunk_id, text, metadata, embedding)
SELECT $2, c.source_key, c.seq, c.chunk_id, c.text, c.metadata, c.embedding
FROM kb_chunks c
WHERE c.generation = $1 AND c.source_key = ANY ($3::text[])
