-- $1 run ids: those runs, oldest first.
SELECT * FROM runs WHERE id = ANY($1::bigint[]) ORDER BY id
