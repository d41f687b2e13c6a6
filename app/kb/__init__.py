"""Knowledge bases: sources to chunks to embeddings in pgvector, rebuilt as generations and switched atomically."""
