-- Knowledge bases pushed to a Dify dataset (app/kb/dify_sync.py): which Dify document holds each source.
--
-- A table of its own rather than a column of kb_sources: kb_sources rows describe the active generation and are
-- written only with an activation, but a Dify document exists the moment Dify creates it. Its id is written right
-- after each push, so a run that fails later (Dify's gate, an outage) does not forget it and the next run updates
-- the document instead of creating a duplicate.
CREATE TABLE kb_dify_documents (
    kb_id        bigint NOT NULL REFERENCES knowledge_bases (id) ON DELETE CASCADE,
    source_key   text NOT NULL,   -- the document's name in Dify too
    dataset_id   text NOT NULL,   -- ids of another dataset (the definition changed) are not this one's documents
    document_id  text NOT NULL,
    sha256       text NOT NULL,   -- of the text last pushed: the same text is not pushed (and indexed) again
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (kb_id, source_key)
);
