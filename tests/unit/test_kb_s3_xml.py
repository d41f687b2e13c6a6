"""Reading S3's XML answers, and the S3 source's checks of its definition (pure: no server)."""

from __future__ import annotations

from typing import Any

import pytest

from app.errors import InvalidInput
from app.kb.sources.s3 import S3Source, bucket_url
from app.kb.sources.s3_xml import ListPage, S3Error, S3Object, UnreadableAnswer, parse_error, parse_list_page

# shaped as AWS's ListObjectsV2 documentation shows it
PAGE = b"""<?xml version="1.0" encoding="UTF-8"?>
<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
  <Name>bucket</Name><Prefix>docs/</Prefix><KeyCount>2</KeyCount><MaxKeys>2</MaxKeys>
  <IsTruncated>true</IsTruncated>
  <NextContinuationToken>1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=</NextContinuationToken>
  <Contents>
    <Key>docs/a.md</Key><LastModified>2026-11-30T08:00:00.000Z</LastModified>
    <ETag>&quot;599bab3ed2c697f1d26842727561fd94&quot;</ETag><Size>142863</Size><StorageClass>STANDARD</StorageClass>
  </Contents>
  <Contents>
    <Key>docs/b &amp; c.md</Key><LastModified>2026-11-30T09:00:00.000Z</LastModified>
    <ETag>"ceb8853ddc5086cc4ab9e149f8f09c88-2"</ETag><Size>0</Size>
  </Contents>
</ListBucketResult>"""


def test_a_page_with_a_continuation_token() -> None:
    assert parse_list_page(PAGE) == ListPage(
        (
            S3Object("docs/a.md", '"599bab3ed2c697f1d26842727561fd94"', 142863, "2026-11-30T08:00:00.000Z"),
            S3Object("docs/b & c.md", '"ceb8853ddc5086cc4ab9e149f8f09c88-2"', 0, "2026-11-30T09:00:00.000Z"),
        ),
        "1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=",
    )


def test_the_last_page_and_no_namespace() -> None:
    page = parse_list_page(b"<ListBucketResult><IsTruncated>false</IsTruncated></ListBucketResult>")
    assert page == ListPage((), None)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"<ListBucketResult><IsTruncated>true</IsTruncated></ListBucketResult>", "no <NextContinuationToken>"),
        (b"<html>gateway</html>", "expected a ListBucketResult, got <html>"),
        (b"not xml", "expected a ListBucketResult XML document"),
        (b"<ListBucketResult><Contents><Size>1</Size></Contents></ListBucketResult>", "without a <Key>"),
        (b"<ListBucketResult><Contents><Key>k</Key><Size>-1</Size></Contents></ListBucketResult>", "not a number"),
    ],
)
def test_unreadable_pages_say_what_was_expected(body: bytes, message: str) -> None:
    with pytest.raises(UnreadableAnswer, match=message):
        parse_list_page(body)


def test_an_error_document() -> None:
    body = b"""<?xml version="1.0" encoding="UTF-8"?>
<Error><Code>NoSuchBucket</Code><Message>The specified bucket does not exist</Message>
<BucketName>kb-docs</BucketName><RequestId>4442587FB7D0A2F9</RequestId></Error>"""
    assert parse_error(body) == S3Error("NoSuchBucket", "The specified bucket does not exist")
    assert parse_error(b"") is None
    assert parse_error(b"<html>502 Bad Gateway</html>") is None


def test_bucket_urls() -> None:
    assert bucket_url("kb-docs", "us-east-1", "http://127.0.0.1:9000/") == "http://127.0.0.1:9000/kb-docs"
    assert bucket_url("kb-docs", "eu-west-1", None) == "https://kb-docs.s3.eu-west-1.amazonaws.com"
    assert bucket_url("kb.docs", "eu-west-1", None) == "https://s3.eu-west-1.amazonaws.com/kb.docs"
    assert bucket_url("kb-docs", "cn-north-1", None) == "https://kb-docs.s3.cn-north-1.amazonaws.com.cn"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"bucket": "KB_Docs"}, 'bucket "KB_Docs": not an S3 bucket name'),
        ({"bucket": "kb..docs"}, 'bucket "kb..docs"'),
        ({"prefix": "/docs/"}, 'prefix "/docs/": S3 keys do not start with "/"; write "docs/"'),
        ({"endpoint_url": "ftp://minio.local"}, 'URL "ftp://minio.local": only http'),
        ({"endpoint_url": "http://minio.local/?x=1"}, "give the base URL only"),
        ({"region": "US East"}, 'region "US East"'),
        ({"secret_key_env": "MY-SECRET"}, 'secret_key_env="MY-SECRET": name an environment variable'),
        ({"max_keys": 0}, "max_keys=0: must be 1 to 1000"),
        ({"suffixes": ".md"}, "give a list of suffixes"),
        ({"attempts": 0}, "attempts=0: must be 1 or more"),
    ],
)
def test_a_bad_definition_is_refused_by_name(options: dict[str, Any], message: str) -> None:
    arguments: dict[str, Any] = {"bucket": "kb-docs", **options}
    with pytest.raises(InvalidInput, match=message.replace("?", r"\?")):
        S3Source(**arguments)


def test_describe_names_no_secret() -> None:
    source = S3Source(
        "kb-docs", "docs/", endpoint_url="http://minio.local:9000", environ={"AWS_SECRET_ACCESS_KEY": "s"}
    )
    assert source.describe() == "s3: s3://kb-docs/docs/ at http://minio.local:9000/kb-docs"
