-- A generation, locked until the transaction ends: no other switch, drop or finish changes it meanwhile.
SELECT g.*, k.name AS kb FROM kb_generations g JOIN knowledge_bases k ON k.id = g.kb_id WHERE g.id = $1
FOR UPDATE OF g
