-- Knowledge bases (RAG): their definitions, what their sources looked like at the last reindex, their generations,
-- the chunks of each generation with their embeddings, and the embeddings already paid for.
--
-- A reindex builds a new generation beside the active one, which keeps answering; a quality gate passes it; one
-- update of knowledge_bases.active_generation switches readers to it (app/kb/store.py). Readers resolve the
-- pointer and search in one statement, so a search never mixes two generations.

CREATE EXTENSION IF NOT EXISTS vector;

CREATE TABLE knowledge_bases (
    id                 bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name               text NOT NULL UNIQUE,
    -- sources, chunking, embedder, gate, keep_generations, notify: as declared, read by the reindex actor
    definition         jsonb NOT NULL DEFAULT '{}'::jsonb,
    -- the embedder the next generation is built with; each generation records its own (the active one may differ)
    embedder_id        text NOT NULL,
    -- 2000: the most dimensions pgvector's HNSW index takes for the vector type
    dims               integer NOT NULL CHECK (dims BETWEEN 1 AND 2000),
    -- 'code': declared in code and synced at boot; 'cli': stored only here (as for schedules)
    source             text NOT NULL DEFAULT 'cli' CHECK (source IN ('code', 'cli')),
    -- a code knowledge base no longer declared in schedules.py: kept (its generations still answer), never deleted
    orphaned           boolean NOT NULL DEFAULT false,
    -- the generation readers search; NULL until the first one passes its gate. The foreign key is added below.
    active_generation  bigint,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now()
);

-- What each source was at the last reindex, so the next one can ask "changed since?" (etag, last_modified: the
-- validators exactly as the server sent them, to send back) and skip what hashes the same.
CREATE TABLE kb_sources (
    kb_id          bigint NOT NULL REFERENCES knowledge_bases (id) ON DELETE CASCADE,
    source_key     text NOT NULL,   -- a URL or a path
    etag           text,
    last_modified  text,
    sha256         text,            -- of the content last read
    size           bigint,
    last_seen_at   timestamptz,
    skipped        text,            -- why the source was left out (too large, unsupported format), or NULL
    error          text,            -- why the last read failed, or NULL
    updated_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (kb_id, source_key)
);

-- A generation: one build of a knowledge base. Its rows are never deleted (the history of builds, gate scores and
-- costs); its chunks live in a partition of kb_chunks of its own, dropped with it.
--   building ─▶ ready ─▶ active ─▶ retired ─▶ dropped        (rollback: retired ─▶ active)
--      └──────▶ failed (its partition dropped later, the row kept)
CREATE TABLE kb_generations (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kb_id         bigint NOT NULL REFERENCES knowledge_bases (id) ON DELETE CASCADE,
    number        integer NOT NULL,   -- 1, 2, 3... per knowledge base: what `kb rollback NAME GEN` names
    state         text NOT NULL DEFAULT 'building'
                  CHECK (state IN ('building', 'ready', 'active', 'retired', 'failed', 'dropped')),
    embedder_id   text NOT NULL,
    dims          integer NOT NULL CHECK (dims BETWEEN 1 AND 2000),
    documents     integer NOT NULL DEFAULT 0,
    chunks        integer NOT NULL DEFAULT 0,
    embedded      integer NOT NULL DEFAULT 0,   -- chunks embedded by this build (embedding cache misses)
    carried       integer NOT NULL DEFAULT 0,   -- chunks carried forward from the previous generation
    deleted       integer NOT NULL DEFAULT 0,   -- documents gone since the previous generation
    gate_scores   jsonb,
    gate_results  jsonb,                        -- per golden query
    error         text,
    run_id        bigint REFERENCES runs (id) ON DELETE SET NULL,
    started_at    timestamptz NOT NULL DEFAULT now(),
    finished_at   timestamptz,
    activated_at  timestamptz,
    dropped_at    timestamptz,                  -- set when its partition was dropped
    UNIQUE (kb_id, number),
    UNIQUE (kb_id, id)
);
-- at most one active generation per knowledge base (activate retires the previous one first)
CREATE UNIQUE INDEX kb_generations_one_active ON kb_generations (kb_id) WHERE state = 'active';
-- retention deletes runs: the SET NULL above looks generations up by run
CREATE INDEX kb_generations_run ON kb_generations (run_id) WHERE run_id IS NOT NULL;

-- The pointer may only name a generation of the same knowledge base.
ALTER TABLE knowledge_bases ADD CONSTRAINT knowledge_bases_active_generation
    FOREIGN KEY (id, active_generation) REFERENCES kb_generations (kb_id, id);

-- The chunks, LIST-partitioned by generation, one partition per generation, each with its own HNSW index:
-- - a search of one generation scans exactly its partition's index. With one index over every generation, HNSW
--   would return its ef_search nearest candidates over all generations and the generation filter would then
--   discard most of them: searches would lose recall as generations pile up;
-- - a generation is built in its own table while readers search another, and dropping one is DROP TABLE, with no
--   dead rows left for vacuum.
-- The embedding column has no dimensions here because generations differ in them (a changed embedder). HNSW needs
-- them, and a partition cannot have its own: PostgreSQL refuses to alter a partition's column to vector(n)
-- ("cannot alter inherited column") and to attach a table whose column is vector(n) ("different type for column").
-- So each partition's index is on the expression embedding::vector(n) (pgvector 0.6 accepts it), searches order by
-- that same expression (app/db/sql/kb_search*.sql; a plain `embedding <=> q` would not use the index), and a
-- CHECK on the partition keeps every row at n dimensions.
-- No foreign key to kb_generations: the partitions are created only by punchclock_kb_new_generation below, and a
-- foreign key would make dropping a partition lock kb_generations too.
CREATE TABLE kb_chunks (
    generation  bigint NOT NULL,
    source_key  text NOT NULL,    -- the document the chunk is from: its URL or path, as in kb_sources
    seq         integer NOT NULL, -- its place in the document
    chunk_id    text NOT NULL,    -- sha256 of its text: the embedding cache key
    text        text NOT NULL,
    metadata    jsonb NOT NULL DEFAULT '{}'::jsonb,
    embedding   vector NOT NULL,
    PRIMARY KEY (generation, source_key, seq)
) PARTITION BY LIST (generation);

-- Embeddings by (embedder, chunk hash): a reindex embeds only the chunks not found here.
CREATE TABLE kb_embedding_cache (
    embedder_id  text NOT NULL,
    chunk_hash   text NOT NULL,
    embedding    vector NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (embedder_id, chunk_hash)
);

-- A new generation of knowledge base `kb` (by name), numbered after the last one, with its partition (its index
-- comes once it is filled: punchclock_kb_index_generation);
-- returns its id. The partition is created apart and then attached: CREATE TABLE ... PARTITION OF would lock
-- kb_chunks ACCESS EXCLUSIVE (every search waits), ATTACH PARTITION takes SHARE UPDATE EXCLUSIVE, which readers
-- do not conflict with; the CHECK (matching the partition bound) spares ATTACH a scan of the table.
CREATE FUNCTION punchclock_kb_new_generation(kb text, embedder_id text, dims integer, run_id bigint DEFAULT NULL)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    kb_key  bigint;
    num     integer;
    gen     bigint;
    part    text;
BEGIN
    IF dims IS NULL OR dims NOT BETWEEN 1 AND 2000 THEN
        RAISE EXCEPTION 'invalid dimensions % for knowledge base "%": pgvector''s HNSW index takes 1 to 2000', dims, kb
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- the row lock numbers generations one at a time
    SELECT k.id INTO kb_key FROM knowledge_bases k WHERE k.name = kb FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no knowledge base named "%"', kb USING ERRCODE = 'no_data_found';
    END IF;
    SELECT coalesce(max(g.number), 0) + 1 INTO num FROM kb_generations g WHERE g.kb_id = kb_key;
    INSERT INTO kb_generations (kb_id, number, embedder_id, dims, run_id)
    VALUES (kb_key, num, embedder_id, dims, run_id)
    RETURNING id INTO gen;
    part := 'kb_chunks_' || gen;
    EXECUTE format('CREATE TABLE %I (LIKE kb_chunks INCLUDING DEFAULTS INCLUDING CONSTRAINTS)', part);
    EXECUTE format('ALTER TABLE %I ADD CONSTRAINT %I CHECK (generation = %s)', part, part || '_generation', gen);
    EXECUTE format('ALTER TABLE %I ADD CONSTRAINT %I CHECK (vector_dims(embedding) = %s)', part, part || '_dims', dims);
    EXECUTE format('ALTER TABLE kb_chunks ATTACH PARTITION %I FOR VALUES IN (%s)', part, gen);
    RETURN gen;
END $$;

-- Build generation `gen`'s HNSW index, once its chunks are in (punchclock_kb_new_generation creates none). Filling
-- an indexed partition inserts every row into the graph one at a time: 25,000 carried chunks took 61 s that
-- way, 8.6 s inserted first and indexed after (bench/reindex.py). Only a building generation is indexed; a
-- ready one always has its index (store.finish_generation builds it first), so nothing unindexed is activated.
-- HNSW needs a fixed dimension and the parent's column has none: the index is on the expression
-- embedding::vector(dims), and searches order by that same expression.
CREATE FUNCTION punchclock_kb_index_generation(gen bigint) RETURNS void LANGUAGE plpgsql
SET maintenance_work_mem = '256MB' AS $$
DECLARE
    g  kb_generations;
BEGIN
    SELECT * INTO g FROM kb_generations WHERE id = gen;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no knowledge base generation with id %', gen USING ERRCODE = 'no_data_found';
    END IF;
    IF g.state <> 'building' THEN
        RAISE EXCEPTION 'generation % (id %) is %: only a building generation is indexed', g.number, gen, g.state
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    EXECUTE format('CREATE INDEX IF NOT EXISTS %I ON %I USING hnsw ((embedding::vector(%s)) vector_cosine_ops)',
                   'kb_chunks_' || gen || '_embedding', 'kb_chunks_' || gen, g.dims);
END $$;

-- Drop generation `gen`'s partition; its row stays, as `dropped` (a failed one stays `failed`). The active
-- generation is refused. Dropping a partition locks kb_chunks ACCESS EXCLUSIVE for an instant, so it gives up
-- after lock_timeout rather than queue every search behind a long one (the caller tries again later).
CREATE FUNCTION punchclock_kb_drop_generation(gen bigint) RETURNS void LANGUAGE plpgsql
SET lock_timeout = '5s' AS $$
DECLARE
    g  kb_generations;
BEGIN
    SELECT * INTO g FROM kb_generations WHERE id = gen FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no knowledge base generation with id %', gen USING ERRCODE = 'no_data_found';
    END IF;
    IF g.state = 'active' THEN
        RAISE EXCEPTION 'generation % (id %) is active: activate another one before dropping it', g.number, gen
            USING ERRCODE = 'object_in_use';
    END IF;
    EXECUTE format('DROP TABLE IF EXISTS %I', 'kb_chunks_' || gen);
    UPDATE kb_generations
    SET state = CASE WHEN state = 'failed' THEN 'failed' ELSE 'dropped' END,
        dropped_at = coalesce(dropped_at, now()),
        finished_at = coalesce(finished_at, now())
    WHERE id = gen;
END $$;
