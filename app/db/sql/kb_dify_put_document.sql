-- Remember that source $2 of knowledge base $1 is document $4 of Dify dataset $3, holding text of sha256 $5.
INSERT INTO kb_dify_documents (kb_id, source_key, dataset_id, document_id, sha256)
SELECT k.id, $2, $3, $4, $5 FROM knowledge_bases k WHERE k.name = $1
ON CONFLICT (kb_id, source_key) DO UPDATE
SET dataset_id = excluded.dataset_id, document_id = excluded.document_id, sha256 = excluded.sha256, updated_at = now()
