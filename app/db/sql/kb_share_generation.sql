-- A generation whose chunks are being written, share-locked until the transaction ends: it cannot be finished,
-- switched or dropped meanwhile, while other builders may write to it too.
SELECT g.*, k.name AS kb FROM kb_generations g JOIN knowledge_bases k ON k.id = g.kb_id WHERE g.id = $1
FOR SHARE OF g
