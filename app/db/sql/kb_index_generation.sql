-- $1 generation id: build its HNSW index, now that its chunks are in (see migration 0007).
SELECT punchclock_kb_index_generation($1)
