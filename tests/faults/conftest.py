"""Fixtures of the fault tier: private RabbitMQ and PostgreSQL servers that a test may stop, kill and restart.

- ``broker``: the session's :class:`BrokerNode` (one boot, about 4 s), brought back up however the previous test
  left it (stopped, killed, paused, app stopped) and emptied (``reset``, about 1 s) before each test.
- ``postgres``: a :class:`PostgresNode` of the test's own (``initdb`` and start, about half a second).
- ``database_url`` and ``rabbitmq_url`` override the root conftest's, so ``punchclock_env``, ``pool`` and
  ``clean_queues`` point at those private servers here: no fault test can stop the machine's services by mistake.
- ``fault_nodes``: more nodes, or nodes with other settings (``fault_nodes.broker(consumer_timeout_ms=5000)``).
- ``record_path``: where ``probe(record=...)`` writes, read back with :func:`read_executions`.

Nodes are killed after their test whatever happened. When a test fails, their folders (with the servers' logs)
are kept and listed at the end of the session.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.faults.nodes import BrokerNode, PostgresNode, reap_orphans

FAILED = pytest.StashKey[bool]()
KEPT_FOLDERS = pytest.StashKey[list[str]]()
SHARED_BROKER_FAILED = pytest.StashKey[bool]()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.failed:
        item.stash[FAILED] = True
    return report


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    kept = config.stash.get(KEPT_FOLDERS, [])
    if kept:
        terminalreporter.section("fault nodes kept for failed tests (logs inside; remove them by hand)")
        for line in kept:
            terminalreporter.write_line(line)


def _failed(request: pytest.FixtureRequest) -> bool:
    return bool(request.node.stash.get(FAILED, False))


def _keep(config: pytest.Config, what: str, node: BrokerNode | PostgresNode) -> None:
    config.stash.setdefault(KEPT_FOLDERS, []).append(f"{what}: {node.root}")


@pytest.fixture(scope="session", autouse=True)
def _reap_orphans() -> None:
    """Kill the nodes of earlier sessions that died without cleaning up: each holds ports and ~150 MB."""
    reap_orphans()


@pytest.fixture(scope="session")
def broker_node(request: pytest.FixtureRequest) -> Iterator[BrokerNode]:
    """The session's RabbitMQ node: use ``broker``, which readies and empties it for each test."""
    node = BrokerNode()
    try:
        node.start()
        yield node
    finally:
        node.close(keep_files=request.config.stash.get(SHARED_BROKER_FAILED, False))


@pytest.fixture
def broker(broker_node: BrokerNode, request: pytest.FixtureRequest) -> Iterator[BrokerNode]:
    """A running private RabbitMQ node with nothing in it (queues, messages, vhosts and users of earlier tests
    reset away); stop, kill, pause or restart it at will."""
    try:
        broker_node.ensure_ready()
        broker_node.reset()
    except BaseException:
        request.config.stash[SHARED_BROKER_FAILED] = True
        _keep(request.config, f"broker (shared by the session), failed to ready for {request.node.nodeid}", broker_node)
        raise
    yield broker_node
    if broker_node.paused:  # a stopped process would stall the next test's reset and the session's close
        broker_node.resume()
    if _failed(request):
        request.config.stash[SHARED_BROKER_FAILED] = True
        _keep(request.config, f"broker (shared by the session) of {request.node.nodeid}", broker_node)


@pytest.fixture
def postgres(request: pytest.FixtureRequest) -> Iterator[PostgresNode]:
    """A running private PostgreSQL server for this test alone; stop, kill, pause or restart it at will."""
    node = PostgresNode()
    try:
        node.start()
        yield node
    finally:
        failed = _failed(request)
        if failed:
            _keep(request.config, f"postgres of {request.node.nodeid}", node)
        node.close(keep_files=failed)


class FaultNodes:
    """Extra private nodes for one test, started on creation and killed at its end."""

    def __init__(self) -> None:
        self.nodes: list[BrokerNode | PostgresNode] = []

    def broker(self, **options: Any) -> BrokerNode:
        """A new RabbitMQ node (``BrokerNode`` options: ``consumer_timeout_ms``); a boot is about 4 s."""
        node = BrokerNode(**options)
        self.nodes.append(node)
        node.start()
        return node

    def postgres(self, **options: Any) -> PostgresNode:
        """A new PostgreSQL server (``PostgresNode`` options: ``settings``)."""
        node = PostgresNode(**options)
        self.nodes.append(node)
        node.start()
        return node


@pytest.fixture
def fault_nodes(request: pytest.FixtureRequest) -> Iterator[FaultNodes]:
    nodes = FaultNodes()
    try:
        yield nodes
    finally:
        failed = _failed(request)
        for node in nodes.nodes:
            if failed:
                _keep(request.config, f"{node!r} of {request.node.nodeid}", node)
            node.close(keep_files=failed)


@pytest.fixture
def database_url(postgres: PostgresNode) -> str:
    """This test's migrated database, on its private PostgreSQL (overrides the root conftest's)."""
    return postgres.create_database()


@pytest.fixture
def rabbitmq_url(broker: BrokerNode) -> str:
    """The private, emptied RabbitMQ node (overrides the root conftest's, which is the machine's)."""
    return broker.url


@pytest.fixture
def record_path(tmp_path: Path) -> Path:
    """Where ``probe(record=...)`` appends its execution records for this test."""
    return tmp_path / "executions.jsonl"
