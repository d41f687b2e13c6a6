SELECT g.*, k.name AS kb FROM kb_generations g JOIN knowledge_bases k ON k.id = g.kb_id WHERE g.id = $1
