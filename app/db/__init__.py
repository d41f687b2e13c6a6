"""PostgreSQL: the pool, the embedded server, migrations and the named queries in ``sql/``."""
