"""Progress of long work (issue #17, point 1): the service's board (``ca.service.progress``)
and the command line's bar while it waits for one service call (``ca.cli.progress.awaited``)."""

from __future__ import annotations

import io
import secrets
import time

import pytest

from ca.cli import progress as cli_progress
from ca.cli.progress import awaited
from ca.core.errors import BadInput
from ca.ops.system import ProgressView
from ca.service.progress import Board, check_token


def test_the_board_keeps_the_newest_report_and_the_end() -> None:
    board, token = Board(), secrets.token_urlsafe(32)
    assert board.read(token) is None
    board.report(token, "generating keys", 0, 12)
    board.report(token, "generating keys", 5, 12)
    step = ProgressView(what="generating keys", done=5, total=12, finished=False)
    assert board.read(token) == step
    board.finish(token)
    assert board.read(token) == step.model_copy(update={"finished": True})
    board.report("", "nothing", 1, 1)  # a request without a token reports nowhere
    assert len(board) == 1


def test_the_board_is_bounded_and_forgets() -> None:
    board = Board(capacity=3, keep=600.0)
    tokens = [secrets.token_urlsafe(32) for _ in range(5)]
    for t in tokens[:3]:
        board.report(t, "w", 0, 1)
    board.finish(tokens[1])
    board.report(tokens[3], "w", 0, 1)  # full: the oldest finished goes first
    assert board.read(tokens[1]) is None
    assert board.read(tokens[0]) is not None
    board.report(tokens[4], "w", 0, 1)  # full, none finished: the oldest goes
    assert board.read(tokens[0]) is None
    assert len(board) == 3
    old = Board(keep=0.0)
    old.report(tokens[0], "w", 0, 1)
    time.sleep(0.01)
    assert old.read(tokens[0]) is None  # forgotten after ``keep`` seconds


@pytest.mark.parametrize("bad", ["short", "x" * 44, "a" * 42 + "!", "a b" + "c" * 40])
def test_a_malformed_token_is_refused_by_name(bad: str) -> None:
    with pytest.raises(BadInput) as refused:
        check_token(bad)
    assert refused.value.message.startswith("Jtca-Progress: ")
    assert getattr(refused.value, "field", None) == "Jtca-Progress"
    assert check_token("") == ""
    good = secrets.token_urlsafe(32)
    assert check_token(f" {good} ") == good


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_awaited_draws_what_the_service_reports_on_a_terminal(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(cli_progress, "QUIET_SECONDS", 0.0)
    monkeypatch.setattr(cli_progress, "REDRAW_SECONDS", 0.0)
    sent: list[str] = []
    started = time.monotonic()

    def call(token: str) -> str:
        sent.append(token)
        time.sleep(1.0)
        return "the result"

    def poll(token: str) -> ProgressView | None:
        assert token == sent[0]
        done = min(int((time.monotonic() - started) * 10), 10)
        return ProgressView(what="generating keys", done=done, total=10, finished=False)

    screen = Terminal()
    assert awaited(call, poll, stream=screen) == "the result"
    assert len(sent[0]) == 43  # a fresh token went with the call
    drawn = screen.getvalue()
    assert "generating keys [" in drawn
    assert "/10" in drawn
    assert drawn.endswith("\r")  # erased when the call answered


def test_awaited_sends_no_token_and_draws_nothing_off_a_terminal_or_with_json() -> None:
    for stream, json_output in ((io.StringIO(), False), (Terminal(), True)):
        sent: list[str] = []

        def call(token: str, sent: list[str] = sent) -> int:
            sent.append(token)
            return 7

        assert awaited(call, lambda t: None, stream=stream, json_output=json_output) == 7
        assert sent == [""]
        assert stream.getvalue() == ""


def test_awaited_raises_the_calls_error_in_the_callers_thread(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(cli_progress, "QUIET_SECONDS", 0.0)

    def call(token: str) -> None:
        time.sleep(0.3)
        raise BadInput("refused by the service")

    with pytest.raises(BadInput, match="refused by the service"):
        awaited(call, lambda t: None, stream=Terminal())
