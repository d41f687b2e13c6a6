"""The Dify target's pure parts: request bodies, reply parsing, status mapping (app/kb/dify_dataset.py), the sync
plan (app/kb/dify_sync.py), DifyTarget in a definition; and the indexing wait on ``httpx.MockTransport``."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from tenacity import wait_none

from app.errors import InvalidInput
from app.kb.definition import DifyTarget, Folder, KnowledgeBase
from app.kb.dify_dataset import (
    MAX_QUERY_CHARS,
    DifyDatasetClient,
    DifyDocumentMissing,
    IndexingStatus,
    Record,
    create_body,
    indexing_done,
    indexing_outcome,
    parse_indexing,
    parse_pushed,
    parse_records,
    retrieve_body,
    status_error,
    update_body,
)
from app.kb.dify_sync import DifyDocument, plan_sync, to_retrieved
from app.kb.gate import Retrieved
from app.transient import PermanentError, TransientError

BASE = "https://dify.example.com"
DATASET = "6f1c1d52-4d1a-4b0e-9a54-2b1f3c7d8e90"
KEY = "dataset-unit-key-abcdef"
TARGET = DifyTarget(BASE, DATASET, "DIFY_KB_KEY")


# --- bodies --------------------------------------------------------------------------------------------------------


def test_create_body_sends_name_text_technique_and_the_automatic_rule() -> None:
    assert create_body("docs/a.md", "Alpha.", "economy") == {
        "name": "docs/a.md",
        "text": "Alpha.",
        "indexing_technique": "economy",
        "doc_form": "text_model",
        "process_rule": {"mode": "automatic"},
    }


def test_update_body_leaves_the_indexing_technique_to_the_dataset() -> None:
    assert update_body("a.md", "New.") == {"name": "a.md", "text": "New.", "process_rule": {"mode": "automatic"}}


def test_retrieve_body_carries_every_field_dify_requires_and_cuts_the_query_to_its_limit() -> None:
    body = retrieve_body("q" * 300, 5, "hybrid_search")
    assert len(body["query"]) == MAX_QUERY_CHARS
    assert body["retrieval_model"] == {
        "search_method": "hybrid_search",
        "reranking_enable": False,
        "top_k": 5,
        "score_threshold_enabled": False,
    }


# --- replies -------------------------------------------------------------------------------------------------------


def test_parse_pushed_reads_the_document_id_and_batch() -> None:
    pushed = parse_pushed({"document": {"id": "doc-1", "name": "a.md"}, "batch": "20250101"})
    assert (pushed.document_id, pushed.batch) == ("doc-1", "20250101")


@pytest.mark.parametrize("body", [None, [], {"batch": "b"}, {"document": {"id": ""}, "batch": "b"}, {"document": {}}])
def test_parse_pushed_refuses_what_is_not_a_document_reply(body: Any) -> None:
    with pytest.raises(ValueError):
        parse_pushed(body)


def test_indexing_statuses_done_stopped_or_running() -> None:
    statuses = parse_indexing(
        {"data": [{"id": "d1", "indexing_status": "completed"}, {"id": "d2", "indexing_status": "splitting"}]}
    )
    assert statuses == [IndexingStatus("d1", "completed", None), IndexingStatus("d2", "splitting", None)]
    assert not indexing_done(statuses) and indexing_outcome(statuses) is None
    done = [IndexingStatus("d1", "completed", None)]
    assert indexing_done(done)
    failed = parse_indexing({"data": [{"id": "d3", "indexing_status": "error", "error": "quota exceeded"}]})
    assert indexing_outcome(failed) == IndexingStatus("d3", "error", "quota exceeded")
    assert indexing_outcome([IndexingStatus("d4", "paused", None)]) is not None


@pytest.mark.parametrize("body", [{}, {"data": []}, {"data": [{"id": "x"}]}, "text"])
def test_parse_indexing_refuses_what_is_not_a_status_reply(body: Any) -> None:
    with pytest.raises(ValueError):
        parse_indexing(body)


def test_parse_records_keeps_rank_order_document_and_content() -> None:
    body = {
        "query": {"content": "vacuum"},
        "records": [
            {"segment": {"content": "Vacuum runs.", "document": {"id": "d1", "name": "pg.md"}}, "score": 0.9},
            {"segment": {"content": "Other.", "document_id": "d2", "document": {"name": "x.md"}}, "score": None},
        ],
    }
    assert parse_records(body) == [Record("d1", "pg.md", "Vacuum runs.", 0.9), Record("d2", "x.md", "Other.", None)]
    with pytest.raises(ValueError):
        parse_records({"records": [{"segment": {"content": "no document"}}]})


# --- status mapping ------------------------------------------------------------------------------------------------


def response(status: int, body: Any = None, headers: dict[str, str] | None = None) -> httpx.Response:
    request = httpx.Request("POST", f"{BASE}/v1/datasets/{DATASET}/retrieve")
    content = json.dumps(body).encode() if body is not None else b""
    return httpx.Response(status, content=content, headers=headers, request=request)


@pytest.mark.parametrize(
    ("status", "body", "kind", "text"),
    [
        (429, {"code": "too_many_requests", "message": "slow down"}, TransientError, "HTTP 429: too_many_requests"),
        (503, {"code": "unavailable", "message": "down"}, TransientError, "HTTP 503: unavailable: down"),
        (400, {"code": "invalid_param", "message": "name is required"}, PermanentError, "invalid_param: name is"),
        (400, {"code": "document_indexing", "message": "Cannot delete"}, TransientError, "document_indexing"),
        (401, {"code": "unauthorized", "message": "Access token is invalid"}, PermanentError, "check the dataset"),
        (404, {"code": "not_found", "message": "Document Not Exists."}, DifyDocumentMissing, "Document Not Exists."),
        (413, None, PermanentError, "HTTP 413"),
    ],
)
def test_status_errors_are_transient_or_permanent_with_difys_message(
    status: int, body: Any, kind: type[Exception], text: str
) -> None:
    error = status_error("Dify dataset x: create", response(status, body), KEY)
    assert type(error) is kind
    assert text in str(error)


def test_retry_after_is_kept_and_the_key_scrubbed_from_the_message() -> None:
    error = status_error(
        "w", response(429, {"code": "rate", "message": f"key {KEY} is over its limit"}, {"Retry-After": "7"}), KEY
    )
    assert isinstance(error, TransientError) and error.retry_after == 7.0
    assert KEY not in str(error)


# --- the sync plan -------------------------------------------------------------------------------------------------


def doc(key: str, digest: str = "h", dataset: str = DATASET) -> DifyDocument:
    return DifyDocument(key, dataset, f"id-{key}", digest)


def test_plan_creates_new_updates_changed_skips_same_and_deletes_gone_or_textless() -> None:
    known = {"a": doc("a", "old"), "b": doc("b", "same"), "gone": doc("gone"), "binary": doc("binary")}
    plan = plan_sync(
        DATASET,
        known,
        texts={"a": "new", "b": "same", "c": "fresh"},
        seen={"a", "b", "c", "binary", "failed", "unchanged-never-pushed"},
        skipped={"binary"},
    )
    assert plan.create == (("c", "fresh"),)
    assert plan.update == (("a", "new", "id-a"),)
    assert plan.same == ("b",)
    assert plan.delete == (("binary", "id-binary"), ("gone", "id-gone"))
    assert plan.missing == ("failed", "unchanged-never-pushed")


def test_documents_of_another_dataset_are_not_this_ones() -> None:
    known = {"a": doc("a", "h", dataset="old-dataset"), "gone": doc("gone", dataset="old-dataset")}
    plan = plan_sync(DATASET, known, texts={"a": "h"}, seen={"a"})
    assert plan.create == (("a", "h"),)
    assert plan.delete == ()
    assert plan.forget == ("gone",)


def test_retrieved_sources_come_from_the_stored_ids_else_the_document_name() -> None:
    records = [Record("id-1", "truncated-na", "one", 0.5), Record("id-x", "b.md", "two", 0.4)]
    assert to_retrieved(records, {"id-1": "a-very-long-name.md"}) == [
        Retrieved("a-very-long-name.md", "one"),
        Retrieved("b.md", "two"),
    ]


# --- the definition ------------------------------------------------------------------------------------------------


def test_a_dify_target_round_trips_through_the_definitions_json() -> None:
    target = DifyTarget(BASE, DATASET, "DIFY_KB_KEY", gate=False, search_method="keyword_search")
    kb = KnowledgeBase("docs", sources=[Folder("docs")], dify=target)
    data = json.loads(json.dumps(kb.to_json()))
    assert data["dify"]["api_key_env"] == "DIFY_KB_KEY"
    assert KnowledgeBase.from_json(data) == kb
    plain = KnowledgeBase("docs", sources=[Folder("docs")])
    assert "dify" not in plain.to_json()
    assert KnowledgeBase.from_json(plain.to_json()).dify is None


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: DifyTarget("ftp://dify", DATASET, "K"), "http"),
        (lambda: DifyTarget(f"{BASE}/v1", DATASET, "K"), "ends with /v1"),
        (lambda: DifyTarget("https://u:p@dify.example.com", DATASET, "K"), "credentials"),
        (lambda: DifyTarget(BASE, "a/b", "K"), "dataset_id"),
        (lambda: DifyTarget(BASE, DATASET, "dataset-abc-123"), "not an environment variable name"),
        (lambda: DifyTarget(BASE, DATASET, "K", search_method="vector"), "search_method"),
        (lambda: DifyTarget(BASE, DATASET, "K", gate="yes"), "gate"),  # type: ignore[arg-type]
        (lambda: KnowledgeBase("docs", sources=[Folder("d")], dify={"base_url": BASE}), "DifyTarget"),  # type: ignore[arg-type]
    ],
)
def test_a_bad_dify_target_is_refused_where_it_is_written(build: Callable[[], Any], message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        build()


# --- the indexing wait ---------------------------------------------------------------------------------------------


def polling_client(statuses: list[str], clock: list[float], index_timeout: float = 600.0) -> DifyDatasetClient:
    answers = iter(statuses)

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.path == f"/v1/datasets/{DATASET}/documents/batch-1/indexing-status"
        status = next(answers)
        return httpx.Response(200, json={"data": [{"id": "d1", "indexing_status": status, "error": "no quota"}]})

    async def sleep(seconds: float) -> None:
        clock[0] += seconds

    return DifyDatasetClient(
        httpx.AsyncClient(transport=httpx.MockTransport(handler)),
        TARGET,
        {"DIFY_KB_KEY": KEY},
        backoff=wait_none(),
        sleep=sleep,
        clock=lambda: clock[0],
        index_timeout=index_timeout,
    )


async def test_wait_indexed_polls_with_growing_intervals_until_completed() -> None:
    clock = [0.0]
    await polling_client(["waiting", "parsing", "indexing", "completed"], clock).wait_indexed("batch-1")
    assert clock[0] == 1.0 + 2.0 + 4.0


async def test_wait_indexed_fails_permanently_on_an_indexing_error_with_difys_message() -> None:
    with pytest.raises(PermanentError, match="indexing of document d1 ended error: no quota"):
        await polling_client(["indexing", "error"], [0.0]).wait_indexed("batch-1")


async def test_wait_indexed_gives_up_after_its_bound_as_a_transient_failure() -> None:
    with pytest.raises(TransientError, match="still indexing after 5 s"):
        await polling_client(["indexing"] * 10, [0.0], index_timeout=5.0).wait_indexed("batch-1")
