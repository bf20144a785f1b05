"""JSON-lines logs (issue #16, point 3, ``ca.obs.logs``): one JSON object per line with the
time, level, logger, message and the caller's context fields; fields whose name says secret are
never written whatever their value; exceptions as their type and traceback, still one line."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from ca.obs import logs


@pytest.fixture
def stream(monkeypatch: pytest.MonkeyPatch) -> Iterator[io.StringIO]:
    monkeypatch.delenv(logs.FORMAT_ENV, raising=False)
    monkeypatch.delenv(logs.LEVEL_ENV, raising=False)
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    out = io.StringIO()
    logs.configure(out)
    try:
        yield out
    finally:
        for handler in list(root.handlers):
            if handler not in handlers:
                root.removeHandler(handler)
        root.setLevel(level)


def lines(out: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_a_line_is_one_json_object_with_its_context(stream: io.StringIO) -> None:
    logging.getLogger("jtca.access").info(
        "GET %s %s",
        "/healthz",
        200,
        extra={"request_id": "r-1", "officer": "gd-1", "status": 200, "duration_ms": 1.5},
    )
    (line,) = lines(stream)
    assert line["message"] == "GET /healthz 200"
    assert line["logger"] == "jtca.access"
    assert line["level"] == "info"
    assert line["request_id"] == "r-1"
    assert line["officer"] == "gd-1"
    assert line["status"] == 200
    assert line["duration_ms"] == 1.5
    assert str(line["time"]).endswith("+00:00")


@pytest.mark.parametrize(
    "name",
    ["pin", "user_pin", "PIN", "shares", "share", "session_key", "session_id", "signature",
     "body", "wrapping_key", "password", "private_key", "Authorization"],
)  # fmt: skip
def test_fields_named_like_secrets_are_never_written(stream: io.StringIO, name: str) -> None:
    logging.getLogger("jtca.test").warning("x", extra={name: "S3CRET-VALUE", "city": "440100"})
    text = stream.getvalue()
    assert "S3CRET-VALUE" not in text
    (line,) = lines(stream)
    assert line["city"] == "440100"
    assert name not in line


def test_nested_values_lose_their_secret_keys_too(stream: io.StringIO) -> None:
    logging.getLogger("jtca.test").info(
        "x", extra={"details": {"pin": "1234", "list_type": "city-list", "n": [1, 2]}}
    )
    (line,) = lines(stream)
    assert line["details"] == {"list_type": "city-list", "n": [1, 2]}


def test_an_exception_stays_on_one_line(stream: io.StringIO) -> None:
    try:
        raise ValueError("bad\nthing")
    except ValueError:
        logging.getLogger("jtca.test").exception("failed", extra={"request_id": "r-2"})
    assert len(stream.getvalue().splitlines()) == 1
    (line,) = lines(stream)
    assert line["error"] == "ValueError"
    assert "bad\\nthing" in json.dumps(line["traceback"])
    assert line["request_id"] == "r-2"


def test_level_and_text_format_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    out = io.StringIO()
    monkeypatch.setenv(logs.LEVEL_ENV, "warning")
    monkeypatch.setenv(logs.FORMAT_ENV, "text")
    try:
        logs.configure(out)
        logging.getLogger("jtca.test").info("hidden")
        logging.getLogger("jtca.test").warning("shown")
        logs.configure(out)  # again: still one jtca handler, no line twice
        logging.getLogger("jtca.test").warning("once")
    finally:
        for handler in list(root.handlers):
            if handler not in handlers:
                root.removeHandler(handler)
        root.setLevel(level)
    text = out.getvalue()
    assert "hidden" not in text
    assert " WARNING jtca.test shown" in text
    assert text.count("once") == 1
    assert not text.lstrip().startswith("{")


def test_a_bad_level_falls_back_to_info_and_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    out = io.StringIO()
    monkeypatch.setenv(logs.LEVEL_ENV, "loud")
    monkeypatch.delenv(logs.FORMAT_ENV, raising=False)
    try:
        logs.configure(out)
        assert root.level == logging.INFO
    finally:
        for handler in list(root.handlers):
            if handler not in handlers:
                root.removeHandler(handler)
        root.setLevel(level)
    (line,) = lines(out)
    assert "JTCA_LOG_LEVEL='LOUD' is not a log level" in str(line["message"])


def test_lines_written_while_a_request_is_answered_name_it(stream: io.StringIO) -> None:
    """The request middleware binds the request id, the sign-in check the officer: a line the
    use case writes (the publisher's) names both without passing them; a line that names its
    own keeps its own; after the request, lines name neither."""
    import contextvars

    def answer() -> None:
        bound = logs.bind_request("req-42")
        logging.getLogger("jtca.publisher").info("before sign-in")
        logs.bind_officer("ca-op-1")
        logging.getLogger("jtca.publisher").info("published")
        logging.getLogger("jtca.test").info("own", extra={"request_id": "other"})
        logs.unbind_request(bound)

    contextvars.copy_context().run(answer)
    logging.getLogger("jtca.test").info("after")
    before, published, own, after = lines(stream)
    assert before["request_id"] == "req-42"
    assert "officer" not in before
    assert published["request_id"] == "req-42"
    assert published["officer"] == "ca-op-1"
    assert own["request_id"] == "other"
    assert "request_id" not in after
    assert "officer" not in after
