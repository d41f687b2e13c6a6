"""The publisher's bookkeeping: what was sent, what cannot be, and where a broker failure stopped it."""

from __future__ import annotations

from typing import Any

import dramatiq
from dramatiq.brokers.stub import StubBroker

from app.publisher import PARALLEL_FROM, Publisher


class FlakyBroker(StubBroker):
    """Refuses the message of one run, as a broker that goes away mid-batch does."""

    def __init__(self, refuse_run_id: int) -> None:
        super().__init__(middleware=[])
        self.refuse_run_id = refuse_run_id

    def enqueue(self, message: dramatiq.Message[Any], *, delay: int | None = None) -> dramatiq.Message[Any]:
        if message.options["run_id"] == self.refuse_run_id:
            raise ConnectionError("broker went away")
        return super().enqueue(message, delay=delay)


def runs(count: int, actor: str = "probe") -> list[dict[str, Any]]:
    return [{"id": i, "actor": actor, "args": {"i": i}, "options": {"max_retries": 3}} for i in range(count)]


def sent_run_ids(broker: StubBroker) -> set[int]:
    queue = broker.queues["default"]
    return {dramatiq.Message.decode(queue.get_nowait()).options["run_id"] for _ in range(queue.qsize())}


def test_a_batch_spread_over_threads_is_sent_whole() -> None:
    broker = StubBroker(middleware=[])
    dramatiq.actor(lambda **kw: None, actor_name="probe", broker=broker)
    publisher = Publisher(broker, threads=4)
    outcome = publisher.publish(runs(100))
    publisher.close()
    assert sorted(outcome.published) == list(range(100))
    assert outcome.error is None and outcome.unpublishable == []
    assert sent_run_ids(broker) == set(range(100))


def test_a_failure_keeps_exactly_what_was_sent() -> None:
    broker = FlakyBroker(refuse_run_id=9)
    dramatiq.actor(lambda **kw: None, actor_name="probe", broker=broker)
    publisher = Publisher(broker, threads=4)
    outcome = publisher.publish(runs(4 * PARALLEL_FROM))
    publisher.close()
    assert isinstance(outcome.error, ConnectionError)
    assert 9 not in outcome.published
    # The other threads finished their shares.
    assert set(outcome.published) == sent_run_ids(broker)
    # Run 9's thread had runs 1, 5, 9, 13, ... (every 4th): it sent 1 and 5 and stopped at 9.
    assert set(outcome.published) == {i for i in range(32) if i % 4 != 1} | {1, 5}


def test_runs_of_an_unknown_actor_are_reported_not_sent() -> None:
    broker = StubBroker(middleware=[])
    dramatiq.actor(lambda **kw: None, actor_name="probe", broker=broker)
    outcome = Publisher(broker, threads=1).publish(runs(2) + runs(1, actor="gone"))
    assert outcome.published == [0, 1]
    assert outcome.unpublishable == [
        (
            0,
            'actor "gone" is not registered in this deployment:'
            " add it under actors/ or point the schedule at another actor",
        )
    ]
