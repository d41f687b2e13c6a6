SELECT * FROM knowledge_bases ORDER BY name
