-- Record what sources of knowledge base $1 looked like at this reindex: $2, one jsonb record per source keyed by
-- column. Returns the knowledge base's id (no row: no such knowledge base).
WITH kb AS (SELECT id FROM knowledge_bases WHERE name = $1),
put AS (
    INSERT INTO kb_sources AS s (kb_id, source_key, etag, last_modified, sha256, size, last_seen_at, skipped, error)
    SELECT kb.id, r.source_key, r.etag, r.last_modified, r.sha256, r.size, r.last_seen_at, r.skipped, r.error
    FROM kb, jsonb_populate_recordset(NULL::kb_sources, $2::jsonb) AS r
    ON CONFLICT (kb_id, source_key) DO UPDATE SET
        (etag, last_modified, sha256, size, last_seen_at, skipped, error, updated_at) =
        (excluded.etag, excluded.last_modified, excluded.sha256, excluded.size, excluded.last_seen_at,
         excluded.skipped, excluded.error, now())
)
SELECT id FROM kb
