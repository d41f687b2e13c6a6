-- The Dify documents of knowledge base $1: source_key, dataset_id, document_id, sha256.
SELECT d.source_key, d.dataset_id, d.document_id, d.sha256
FROM kb_dify_documents d JOIN knowledge_bases k ON k.id = d.kb_id
WHERE k.name = $1
