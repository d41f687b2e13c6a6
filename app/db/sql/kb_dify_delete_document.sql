-- Forget the Dify document of source $2 of knowledge base $1 (deleted from Dify).
DELETE FROM kb_dify_documents d USING knowledge_bases k
WHERE k.id = d.kb_id AND k.name = $1 AND d.source_key = $2
