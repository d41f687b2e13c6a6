SELECT * FROM knowledge_bases WHERE name = $1
