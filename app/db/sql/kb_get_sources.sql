SELECT s.* FROM kb_sources s JOIN knowledge_bases k ON k.id = s.kb_id WHERE k.name = $1 ORDER BY s.source_key
