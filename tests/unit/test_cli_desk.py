"""ca/cli/desk.py (issue #12): shares from files or hidden prompts, what an approver is shown,
and a command that needs an officer stopped before any request when nobody signed in."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import httpx
import pytest

from ca.cli import desk
from ca.cli.main import _sign_in_hint
from ca.client.http import Client, ServiceError
from ca.core.errors import BadInput
from ca.ops import city as city_ops
from hsm.sm.sm3 import sm3


def test_shares_from_files_one_each(tmp_path: Path) -> None:
    files = []
    for i, share in enumerate(("JTCA1-a", "JTCA1-b")):
        path = tmp_path / f"s{i}"
        path.write_text(f"\n  {share}  \n", encoding="utf-8")
        files.append(path)
    assert desk.read_shares(files) == ["JTCA1-a", "JTCA1-b"]

    two = tmp_path / "two"
    two.write_text("JTCA1-a\nJTCA1-b\n", encoding="utf-8")
    with pytest.raises(BadInput, match=r"holds 2 lines; a share file holds exactly one"):
        desk.read_shares([two])
    with pytest.raises(BadInput, match=r"--share-file .*missing: cannot read it"):
        desk.read_shares([tmp_path / "missing"])
    with pytest.raises(BadInput, match="at most 16"):
        desk.read_shares([files[0]] * 17)


def test_shares_at_hidden_prompts_until_an_empty_one() -> None:
    asked: list[str] = []
    typed = iter(["JTCA1-a", " JTCA1-b ", ""])

    def ask(prompt: str) -> str:
        asked.append(prompt)
        return next(typed)

    assert desk.read_shares(None, ask=ask) == ["JTCA1-a", "JTCA1-b"]
    assert asked[0].startswith("Share 1 of the root token's PIN (hidden")
    assert asked[2].startswith("Share 3 ")
    with pytest.raises(desk.NoShares, match="no share of the secret entered"):
        desk.read_shares([], what="the secret", ask=lambda _: "")


def test_what_an_approver_is_shown() -> None:
    point = bytes([4]) + bytes(range(64))
    body = json.dumps(
        {
            "officer_id": "gd-1",
            "public_key": base64.urlsafe_b64encode(point).decode().rstrip("="),
            "proof": "AAAA",
            "province": "440000",
            "name": "",
            "reason": "x" * 300,
        }
    ).encode()
    lines = desk.request_lines(body)
    assert "officer_id: gd-1" in lines
    assert f"public_key SM3: {sm3(point).hex()}" in lines
    assert not [line for line in lines if line.startswith(("proof", "name"))]
    assert next(line for line in lines if line.startswith("reason")).endswith("…")
    assert desk.request_lines(b"\xff not json") == ["\ufffd not json"]


def _nowhere(request: httpx.Request) -> httpx.Response:
    raise AssertionError(f"no request may be sent: {request.url}")


def test_no_session_no_request() -> None:
    client = Client(httpx.Client(transport=httpx.MockTransport(_nowhere), base_url="http://x"))
    with pytest.raises(desk.NotSignedIn) as refused:
        desk.call(city_ops.APPLY, city_ops.ApplyRequest(cities=["440100"]), client)
    assert refused.value.exit_code == 6
    assert refused.value.message.startswith("city.apply needs a signed-in officer")
    assert "jtca login --officer ID" in refused.value.message


def test_an_ended_session_says_how_to_sign_in_again() -> None:
    ended = ServiceError("the session has expired", "Not authenticated", 6, status=401,
                         reason="session-expired")  # fmt: skip
    assert _sign_in_hint(ended) == " (jtca login --officer ID)"
    forged = ServiceError("bad signature", "Not authenticated", 6, status=401, reason="forged")
    assert _sign_in_hint(forged) == ""
