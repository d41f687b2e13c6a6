-- The knowledge base's row, locked: switches of its active generation happen one at a time.
SELECT * FROM knowledge_bases WHERE name = $1 FOR UPDATE
