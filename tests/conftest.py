from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import asyncpg
import pika
import pytest

from app import redaction
from app.db.pool import create_pool
from tests import services


@pytest.fixture(autouse=True)
def no_secrets_left_registered() -> Iterator[None]:
    """Secrets registered for redaction are process-wide: each test starts with none from another."""
    redaction.forget_secrets()
    yield
    redaction.forget_secrets()


@pytest.fixture(scope="session")
def pg_admin_url() -> Iterator[str]:
    url = services.admin_url()
    asyncio.run(services.prepare_template(url))
    yield url


@pytest.fixture
def database_url(pg_admin_url: str) -> Iterator[str]:
    """A fresh, migrated database for this test only."""
    url = asyncio.run(services.create_test_database(pg_admin_url))
    yield url
    asyncio.run(services.drop_test_database(pg_admin_url, url))


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool[Any]]:
    p = await create_pool(database_url, 10)
    yield p
    await p.close()


@pytest.fixture(scope="session")
def rabbitmq_url() -> str:
    try:
        pika.BlockingConnection(pika.URLParameters(services.RABBITMQ_URL)).close()
    except pika.exceptions.AMQPError as exc:
        pytest.fail(
            f"RabbitMQ is not reachable at {services.RABBITMQ_URL}: {exc}; start it with rabbitmq-server -detached"
        )
    return services.RABBITMQ_URL


@pytest.fixture
def punchclock_env(monkeypatch: pytest.MonkeyPatch, database_url: str, rabbitmq_url: str) -> dict[str, str]:
    """Environment for punchclock processes and the CLI: this test's database, no code schedules."""
    env = {
        "PUNCHCLOCK_DATABASE_URL": database_url,
        "PUNCHCLOCK_BROKER_URL": rabbitmq_url,
        "PUNCHCLOCK_SCHEDULES_MODULE": "",
        "PUNCHCLOCK_LOG_LEVEL": "INFO",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


QUEUES = ("default", "default.DQ", "default.XQ", "clock", "clock.DQ", "clock.XQ")


def purge_queues(url: str) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        channel = connection.channel()
        for queue in QUEUES:
            try:
                channel.queue_purge(queue)
            except pika.exceptions.ChannelClosedByBroker:  # not declared yet: nothing to purge
                channel = connection.channel()
    finally:
        connection.close()


def consumers(url: str, queue: str = "default") -> int:
    """How many consumers RabbitMQ counts on ``queue`` (0 when it is not declared)."""
    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        return int(connection.channel().queue_declare(queue, passive=True).method.consumer_count)
    except pika.exceptions.ChannelClosedByBroker:
        return 0
    finally:
        if connection.is_open:
            connection.close()


def drain_queue(url: str, queue: str = "default") -> list[dict[str, Any]]:
    """Consume (and ack) every message waiting in ``queue``; the decoded Dramatiq messages."""
    import json

    connection = pika.BlockingConnection(pika.URLParameters(url))
    messages = []
    try:
        channel = connection.channel()
        while True:
            method, _, body = channel.basic_get(queue, auto_ack=True)
            if method is None:
                return messages
            messages.append(json.loads(body))
    finally:
        connection.close()


@pytest.fixture
def clean_queues(rabbitmq_url: str) -> Iterator[str]:
    purge_queues(rabbitmq_url)
    yield rabbitmq_url
    purge_queues(rabbitmq_url)


@pytest.fixture
def rabbit_publisher(clean_queues: str) -> Iterator[Any]:
    """A Publisher on the real RabbitMQ (publisher confirms on) knowing a ``probe`` actor on ``default``."""
    import dramatiq
    from dramatiq.brokers.rabbitmq import RabbitmqBroker

    from app.publisher import Publisher

    broker = RabbitmqBroker(url=clean_queues, confirm_delivery=True, middleware=[])
    dramatiq.actor(lambda **kwargs: None, actor_name="probe", broker=broker)
    yield Publisher(broker, threads=4)
    broker.close()
