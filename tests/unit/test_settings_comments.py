"""The service names, at start, each setting whose value carries a '#' comment copied with its line: by name only."""

from __future__ import annotations

import logging

import pytest

from app.settings import Settings, carries_comment, warn_about_comments

SECRET = "key-9f2c-value"  # pragma: allowlist secret


@pytest.mark.parametrize(
    ("value", "commented"),
    [
        ("paddleocr-vl  # explicit", True),
        ("abc\t# note", True),
        ("# text or json", True),
        ("#", True),
        ("#starts-with-a-hash", False),
        ("https://example.com/page#part", False),
        ("a#b", False),
        ("", False),
    ],
)
def test_what_counts_as_a_comment(value: str, commented: bool) -> None:
    assert carries_comment(value) is commented


def test_each_commented_value_is_named_and_no_value_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        api_key=f"{SECRET}  # the service's own key",
        vl_iam_key_id="<key_id> # the service account's",
        cloudru_s3_bucket="ocr-results",
        cors_origins="https://a.example#x",
    )
    log = logging.getLogger("test.settings.comments")
    with caplog.at_level(logging.WARNING, logger=log.name):
        warn_about_comments(settings, log)
    named = sorted(record.getMessage().split(":")[0] for record in caplog.records)
    assert named == ["API_KEY", "VL_IAM_KEY_ID"]
    assert all(record.levelno == logging.WARNING for record in caplog.records)
    assert SECRET not in caplog.text and "service account" not in caplog.text


def test_clean_settings_say_nothing(caplog: pytest.LogCaptureFixture) -> None:
    log = logging.getLogger("test.settings.clean")
    with caplog.at_level(logging.WARNING, logger=log.name):
        warn_about_comments(Settings(_env_file=None), log)  # type: ignore[call-arg]
    assert caplog.records == []
