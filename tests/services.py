"""The real services the tests run against: a PostgreSQL (embedded unless PUNCHCLOCK_TEST_DATABASE_URL says
otherwise) with one fresh database per test, and the machine's RabbitMQ with queues purged per test."""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from app.db.embedded import embedded_database_url
from app.db.migrate import migrate
from app.db.pool import connect

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = "punchclock_test_template"
RABBITMQ_URL = os.environ.get("PUNCHCLOCK_TEST_BROKER_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")


def admin_url() -> str:
    return os.environ.get("PUNCHCLOCK_TEST_DATABASE_URL") or embedded_database_url(ROOT / ".punchclock" / "test-pgdata")


def with_database(url: str, name: str) -> str:
    """``url`` pointing at database ``name`` (works for host and unix-socket URLs alike)."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


async def prepare_template(url: str) -> None:
    """A migrated template database, rebuilt each session so a changed migration is always picked up."""
    admin = await asyncpg.connect(url)
    try:
        await admin.execute(f"DROP DATABASE IF EXISTS {TEMPLATE} WITH (FORCE)")
        await admin.execute(f"CREATE DATABASE {TEMPLATE}")
    finally:
        await admin.close()
    conn = await connect(with_database(url, TEMPLATE))
    try:
        await migrate(conn)
    finally:
        await conn.close()


async def create_test_database(url: str) -> str:
    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(url)
    try:
        await admin.execute(f"CREATE DATABASE {name} TEMPLATE {TEMPLATE}")
    finally:
        await admin.close()
    return with_database(url, name)


async def drop_test_database(url: str, test_url: str) -> None:
    name = urlsplit(test_url).path.lstrip("/")
    admin = await asyncpg.connect(url)
    try:
        await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    finally:
        await admin.close()
