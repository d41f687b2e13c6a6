"""AWS Signature V4 against the examples AWS publishes in the S3 API reference ("Signature Calculations for the
Authorization Header: Transferring Payload in a Single Chunk"): bucket examplebucket, us-east-1, 2013-05-24,
the documentation's example key pair. Each expected signature is the one printed there."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from app.kb.sources.sigv4 import (
    EMPTY_SHA256,
    Credentials,
    canonical_query,
    canonical_uri,
    host_header,
    sign,
    signing_key,
)

EXAMPLE = Credentials("AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")
NOW = datetime(2013, 5, 24, tzinfo=UTC)
HOST = "https://examplebucket.s3.amazonaws.com"
SCOPE = "AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request"


def authorization(signed_headers: str, signature: str) -> str:
    return f"AWS4-HMAC-SHA256 Credential={SCOPE}, SignedHeaders={signed_headers}, Signature={signature}"


def test_get_object_with_a_range_header() -> None:
    headers = sign("GET", f"{HOST}/test.txt", {"Range": "bytes=0-9"}, EMPTY_SHA256, EXAMPLE, "us-east-1", "s3", NOW)
    assert headers["Authorization"] == authorization(
        "host;range;x-amz-content-sha256;x-amz-date",
        "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41",
    )
    assert headers["x-amz-date"] == "20130524T000000Z"
    assert headers["x-amz-content-sha256"] == EMPTY_SHA256
    assert headers["Range"] == "bytes=0-9"


def test_list_objects_with_a_query_string() -> None:
    headers = sign("GET", f"{HOST}/?max-keys=2&prefix=J", {}, EMPTY_SHA256, EXAMPLE, "us-east-1", "s3", NOW)
    assert headers["Authorization"] == authorization(
        "host;x-amz-content-sha256;x-amz-date", "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7"
    )


def test_the_query_order_as_written_does_not_matter() -> None:
    one = sign("GET", f"{HOST}/?prefix=J&max-keys=2", {}, EMPTY_SHA256, EXAMPLE, "us-east-1", "s3", NOW)
    other = sign("GET", f"{HOST}/?max-keys=2&prefix=J", {}, EMPTY_SHA256, EXAMPLE, "us-east-1", "s3", NOW)
    assert one["Authorization"] == other["Authorization"]


def test_a_subresource_without_a_value() -> None:
    headers = sign("GET", f"{HOST}/?lifecycle", {}, EMPTY_SHA256, EXAMPLE, "us-east-1", "s3", NOW)
    assert headers["Authorization"] == authorization(
        "host;x-amz-content-sha256;x-amz-date", "fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543"
    )


def test_put_object_with_a_key_to_encode_and_a_payload() -> None:
    headers = sign(
        "PUT",
        f"{HOST}/test$file.text",
        {"Date": "Fri, 24 May 2013 00:00:00 GMT", "x-amz-storage-class": "REDUCED_REDUNDANCY"},
        "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072",  # sha256 of "Welcome to Amazon S3."
        EXAMPLE,
        "us-east-1",
        "s3",
        NOW,
    )
    assert headers["Authorization"] == authorization(
        "date;host;x-amz-content-sha256;x-amz-date;x-amz-storage-class",
        "98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd",
    )


def test_the_signing_key_of_the_iam_example() -> None:
    # AWS's "Deriving a signing key" example (IAM, 2015-08-30)
    key = signing_key("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "20150830", "us-east-1", "iam")
    assert key.hex() == "c4afb1cc5771d871763a393e44b703571b55cc28424d1a5e86da6ed3c154a4b9"


def test_now_in_another_zone_is_the_same_instant() -> None:
    beijing = NOW.astimezone(timezone(timedelta(hours=8)))
    headers = sign("GET", f"{HOST}/?max-keys=2&prefix=J", {}, EMPTY_SHA256, EXAMPLE, "us-east-1", "s3", beijing)
    assert headers["Authorization"].endswith("34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7")


def test_a_naive_now_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        sign("GET", f"{HOST}/", {}, EMPTY_SHA256, EXAMPLE, "us-east-1", "s3", datetime(2013, 5, 24))


def test_temporary_credentials_sign_their_session_token() -> None:
    temporary = Credentials("ASIAEXAMPLE", "secret", session_token="token-1")
    headers = sign("GET", f"{HOST}/", {}, EMPTY_SHA256, temporary, "us-east-1", "s3", NOW)
    assert headers["x-amz-security-token"] == "token-1"
    assert "x-amz-security-token" in headers["Authorization"].split("SignedHeaders=")[1].split(",")[0]


def test_canonical_forms() -> None:
    assert canonical_uri("") == "/"
    assert canonical_uri("/docs/a b/é.md") == "/docs/a%20b/%C3%A9.md"
    assert canonical_uri("/docs/a%20b/%C3%A9.md") == "/docs/a%20b/%C3%A9.md"  # encoded once, never twice
    assert canonical_query("prefix=docs/&list-type=2&continuation-token=a%2Bb%3D") == (
        "continuation-token=a%2Bb%3D&list-type=2&prefix=docs%2F"
    )
    assert canonical_query("") == ""


def test_the_host_header_as_a_client_sends_it() -> None:
    assert host_header("http://127.0.0.1:9000/bucket") == "127.0.0.1:9000"
    assert host_header("https://s3.amazonaws.com:443/bucket") == "s3.amazonaws.com"
    assert host_header("http://[::1]:9000/") == "[::1]:9000"
