"""Witnesses of the audit log (issue #13, point 3; docs/witness.md): ``jtca witness``.

How a split view is made here, honestly. A split view is the log's operator showing two
different logs under the one audit key; the witness's defence is that it trusts nothing but the
audit certificate and its own copies. Forging a checkpoint without the audit key is impossible
(that is the point), so the tests play the operator who *has* the key:

- in-process (``test_a_witness_refuses_every_other_view``): two services on two state folders
  and databases, their checkpoints signed by the same audit key, which the test holds (a
  software key certified by a software root, both written as certificate files). The witness
  cosigns log A, then is shown log B: a smaller tree (rollback), the same size with another
  root, a larger tree that does not extend A's. Each is refused, its evidence written, and the
  witness goes on cosigning A's growth, never B's.
- end to end (``test_witnesses_cosign_and_catch_a_copied_log``): the real ``jtca`` against the
  real embedded service after a real root ceremony (the audit key in the service's own SoftHSM2
  token ``MOT-LOG``, certified by the root key, checkpoints signed by its checkpointer thread).
  The operator stops the service, copies its whole state folder — database and tokens, the
  audit key with them — and runs the copy as a second service: the two logs share a prefix and
  then diverge (each process registers its own seal key, and each grows on its own). Witnesses
  pointed at both, as a split-view attack would do, catch it.

Witness keys live in real SoftHSM2 tokens of their own (``jtca witness init --create-token``).
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from cli_desks import Desks, run, share_args, write_shares
from service_fixtures import in_process
from test_cli_city import EXAMPLE, cli_service
from test_log_http import Log, register_officer

from ca.cli.main import main as jtca_main
from ca.client.config import socket_path
from ca.log.anchors import audit_verifiers
from ca.log.checkpoint_folder import CheckpointFolder
from ca.log.note import (
    COSIGNATURE_TYPE,
    SignedNote,
    Verifier,
    verify_checkpoint,
    verify_cosignature,
)
from ca.ops import log as log_ops
from ca.pki.x509 import LOG_SIGNING_EKU, issue_certificate, key_identifier, pem, self_signed_root
from ca.policy.in_force import load_policy
from ca.witness.folder import WitnessFolder
from ca.witness.round import EXIT_SPLIT_VIEW, LogRefused, ServiceLog, SplitView, Witness
from ca.witness.token import WitnessToken
from hsm.pkcs11.token import EnvPin
from hsm.signer import SoftwareSigner
from hsm.sm.sm2 import SM2PublicKey

ORIGIN = load_policy().log.origin
NOW = datetime.now(UTC).replace(microsecond=0)
ROOT_SUBJECT = {"C": "CN", "O": "中华人民共和国交通运输部", "CN": "测试根CA"}
WITNESS_PIN = "WITNESS_PIN"


# -- in-process: the witness's rules against two logs under one key ------------------------------
def certificates(folder: Path, audit_key: SoftwareSigner) -> tuple[Path, Path]:
    """A software root and the audit key's certificate (log-signing EKU), as PEM files."""
    root = SoftwareSigner.generate()
    root_der = self_signed_root(
        root,
        subject=ROOT_SUBJECT,
        serial=1,
        not_before=NOW - timedelta(days=1),
        not_after=NOW + timedelta(days=3650),
        path_length=1,
        key_usage=frozenset({"key_cert_sign", "crl_sign", "digital_signature"}),
    )
    audit_der = issue_certificate(
        root,
        subject={"C": "CN", "O": "中华人民共和国交通运输部", "CN": "审计日志签名"},
        subject_public_key=audit_key.public_key,
        issuer_name=ROOT_SUBJECT,
        serial=2,
        not_before=NOW - timedelta(days=1),
        not_after=NOW + timedelta(days=365),
        ca=False,
        path_length=None,
        key_usage={"digital_signature"},
        extended_key_usage=[LOG_SIGNING_EKU],
        issuer_key_id=key_identifier(root.public_key),
    )
    folder.mkdir(parents=True, exist_ok=True)
    root_pem, audit_pem = folder / "root.pem", folder / "audit.pem"
    root_pem.write_bytes(pem(root_der))
    audit_pem.write_bytes(pem(audit_der))
    return root_pem, audit_pem


@pytest.fixture
def two_logs(tmp_path: Path) -> Iterator[tuple[Log, Log]]:
    """Logs A and B: two services, two databases, one audit key (held by the test)."""
    from ca.log import audit

    key = SoftwareSigner.generate()
    previous = audit.current_sealer()
    audit.install_sealer(None)
    try:
        with (
            in_process(tmp_path / "a") as (client_a, runtime_a),
            in_process(tmp_path / "b") as (client_b, runtime_b),
        ):
            yield Log(client_a, runtime_a, key), Log(client_b, runtime_b, key)
    finally:
        audit.install_sealer(previous)


def own_roots(folder: Path) -> dict[int, bytes]:
    """size → root of every checkpoint the witness kept (its own copies)."""
    kept = {}
    for path, data in CheckpointFolder(folder).read_all():
        if path.parent.name == "checkpoints":
            checkpoint = SignedNote.parse(data).checkpoint()
            kept[checkpoint.size] = checkpoint.root
    return kept


def test_a_witness_refuses_every_other_view(
    two_logs: tuple[Log, Log], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = two_logs
    root_pem, audit_pem = certificates(tmp_path / "anchors", a.key)
    folder_path = tmp_path / "witness"
    monkeypatch.setenv("JTCA_STATE", str(a.runtime.state))
    monkeypatch.setenv(WITNESS_PIN, "witness-pin-1")
    name = "witness.gd.gov.cn/jtca"
    made = jtca_main(
        ["witness", "init", "--name", name, "--dir", str(folder_path),
         "--audit-cert", str(audit_pem), "--root-cert", str(root_pem),
         "--create-token", "--pin-source", f"env:{WITNESS_PIN}", "--json"]
    )  # fmt: skip
    assert made == 0
    folder = WitnessFolder(folder_path)
    config = folder.load()
    assert (config.name, config.token_label, config.origin) == (
        name,
        "witness-witness.gd.gov.cn-jtca",
        None,
    )
    assert config.softhsm == str((a.runtime.state / "softhsm2").resolve())
    assert (folder_path / config.audit_certs[0]).read_bytes() == audit_pem.read_bytes()
    token = WitnessToken(
        config.token_label, EnvPin(WITNESS_PIN), module=None, softhsm=Path(config.softhsm)
    )
    assert token.public_key.uncompressed.hex() == config.public_key

    register_officer(a.runtime, "mot-root-1", "ministry-root-officer", None)
    a.client.as_officer("mot-root-1").call(
        log_ops.WITNESS_ADD, log_ops.WitnessAddRequest(name=name, public_key=config.public_key)
    )
    at_a = Witness(folder, token, ServiceLog(a.client.signed_in(None)))
    at_b = Witness(folder, token, ServiceLog(b.client.signed_in(None)))

    # log A: the first checkpoint (trusted on first sight), the same again, then its growth
    a.fill(9, "a")
    first = a.checkpoint()
    one = at_a.round()
    assert (one.size, one.previous, one.new, one.submit_error) == (first.size, None, True, None)
    assert one.accepted is not None
    assert (one.accepted.cosigners, one.accepted.witnessed) == (
        1,
        True,
    )
    assert folder.load().origin == ORIGIN  # pinned by the first verified checkpoint
    again = at_a.round()
    assert (again.new, again.previous, again.accepted is not None) == (False, first.size, True)
    a.fill(6, "a")
    grown = a.checkpoint()
    two = at_a.round()
    assert (two.size, two.previous, two.new) == (grown.size, first.size, True)
    kept = SignedNote.parse(folder.newest() or b"")
    verify_checkpoint(kept.text(), [Verifier(ORIGIN, a.key.public_key)])
    me = Verifier(name, token.public_key, COSIGNATURE_TYPE)
    assert verify_cosignature(kept, me) > 0
    assert [s.name for s in kept.signatures] == [ORIGIN, name]

    # log B, the same key: a smaller tree first — a rollback
    b.fill(grown.size - 4, "b")
    smaller = b.checkpoint()
    with pytest.raises(SplitView) as caught:
        at_b.round()
    assert caught.value.headline == (
        f"the log went back from size {grown.size} to size {smaller.size}"
    )
    assert caught.value.exit_code == EXIT_SPLIT_VIEW
    rollback = caught.value.evidence
    assert rollback.name.startswith(f"split-view-{smaller.size:012d}-")
    assert (rollback / "offered.note").read_text() == smaller.note
    assert (rollback / "cosigned.note").read_bytes() == folder.newest()

    # the same size as the witness's last, another root
    b.fill(4, "b")
    same = b.checkpoint()
    assert same.size == grown.size
    assert same.root != grown.root
    with pytest.raises(SplitView) as caught:
        at_b.round()
    assert caught.value.headline == f"the log showed two different trees of size {grown.size}"
    evidence = caught.value.evidence
    assert (evidence / "offered.note").read_text() == same.note
    offered = SignedNote.parse((evidence / "offered.note").read_bytes()).checkpoint()
    cosigned = SignedNote.parse((evidence / "cosigned.note").read_bytes()).checkpoint()
    assert (offered.size, cosigned.size) == (grown.size, grown.size)
    assert (offered.root.hex(), cosigned.root.hex()) == (same.root, grown.root)
    assert "SPLIT VIEW" in (evidence / "README.txt").read_text()

    # a larger tree that does not extend A's: the consistency proof fails
    b.fill(3, "b")
    larger = b.checkpoint()
    with pytest.raises(SplitView) as caught:
        at_b.round()
    assert caught.value.headline == (
        f"the log's tree of size {larger.size} does not extend the tree of size {grown.size} "
        "it showed before"
    )
    proof = json.loads((caught.value.evidence / "consistency-proof.json").read_text())
    assert (proof["from"], proof["to"]) == (grown.size, larger.size)
    assert proof["proof"]
    assert "does not extend" in proof["error"]

    # a checkpoint signed by another key is no split view: refused, nothing written
    a.fill(2, "a")
    rogue = Log(a.client, a.runtime, SoftwareSigner.generate()).checkpoint()
    with pytest.raises(LogRefused) as refused:
        at_a.round()
    assert "signed by no trusted audit key" in refused.value.message
    assert rogue.size not in own_roots(folder_path)

    # losing its newest-copy file does not make it start afresh: the copies by size remain
    (folder_path / "checkpoint").unlink()
    with pytest.raises(SplitView) as caught:
        at_b.round()
    assert "does not extend the tree of size" in caught.value.headline

    # A goes on growing: cosigned; B's view never was, at any size
    a.fill(3, "a")
    onward = a.checkpoint()
    three = at_a.round()
    assert (three.size, three.previous, three.new) == (onward.size, grown.size, True)
    assert own_roots(folder_path) == {
        first.size: bytes.fromhex(first.root),
        grown.size: bytes.fromhex(grown.root),
        onward.size: bytes.fromhex(onward.root),
    }
    assert len(folder.split_views()) == 4
    assert not any(r == bytes.fromhex(c.root) for c in (smaller, same, larger)
                   for r in own_roots(folder_path).values())  # fmt: skip
    token.close()


def test_witness_folder_refusals_are_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Errors are titled lines, never tracebacks: no folder, a bad name, a folder made twice."""
    status = jtca_main(["witness", "show", "--dir", str(tmp_path / "none")])
    assert status == 3
    assert "Witness folder" in capsys.readouterr().err
    status = jtca_main(
        ["witness", "init", "--name", "has space", "--dir", str(tmp_path / "w"),
         "--audit-cert", str(tmp_path / "a.pem")]
    )  # fmt: skip
    err = capsys.readouterr().err
    assert status == 3
    assert "--name:" in err
    assert "Traceback" not in err
    (tmp_path / "w2").mkdir()
    (tmp_path / "w2" / "witness.json").write_text("{}")
    status = jtca_main(
        ["witness", "init", "--name", "w", "--dir", str(tmp_path / "w2"),
         "--audit-cert", str(tmp_path / "a.pem")]
    )  # fmt: skip
    assert status == 3
    assert "already the folder of a witness" in capsys.readouterr().err
    (tmp_path / "a.pem").write_text("not a certificate")
    status = jtca_main(
        ["witness", "init", "--name", "w", "--dir", str(tmp_path / "w3"),
         "--audit-cert", str(tmp_path / "a.pem")]
    )  # fmt: skip
    err = capsys.readouterr().err
    assert status == 3  # a certificate that cannot be trusted is bad input (Trust anchor refused)
    assert "Trust anchor refused" in err
    assert "a.pem" in err
    assert "Traceback" not in err
    assert not (tmp_path / "w3" / "witness.json").exists()


# -- end to end: the real jtca, the real embedded service, a copied state --------------------------
class Service:
    """The embedded service of one state folder, reached as a client (``jtca``) and as a bare
    HTTP client on its socket (for the public reads, and to append entries: see ``grow``)."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.state = Path(env["JTCA_STATE"])

    def jtca(self, *args: str, ok: bool = True, **extra: str) -> subprocess.CompletedProcess[str]:
        return run(dict(self.env, **extra), *args, ok=ok)

    def http(self) -> httpx.Client:
        """A client on the socket, the service started (``jtca service status``) if it does
        not answer."""

        def client() -> httpx.Client:
            return httpx.Client(
                transport=httpx.HTTPTransport(uds=str(socket_path(self.state))),
                base_url="http://jtca",
                timeout=30,
            )

        with client() as probe:
            try:
                probe.get("/healthz")
            except httpx.TransportError:
                self.jtca("service", "status")
        return client()

    def newest(self) -> log_ops.CheckpointNote:
        with self.http() as http:
            answer = http.post("/v1/log/checkpoint-get", json={})
        assert answer.status_code == 200, answer.text
        return log_ops.CheckpointNote.model_validate_json(answer.content)

    def grow(self, entries: int) -> None:
        """``entries`` new log entries: each a refused anonymous request (audited
        ``auth.refused``), the one kind of entry anyone can cause."""
        with self.http() as http:
            for _ in range(entries):
                refused = http.post("/v1/log/witnesses", json={})
                assert refused.status_code == 401

    def settled(self, timeout: float = 60) -> log_ops.CheckpointNote:
        """The newest checkpoint once it covers the whole log (the checkpointer signs within
        ``[log] checkpoint_seconds`` of the last change)."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.newest()
            if found.size == found.log_size:
                return found
            assert time.monotonic() < deadline, f"no checkpoint covers {found.log_size} entries"
            time.sleep(0.5)

    def stop(self) -> None:
        self.jtca("service", "stop", ok=False)


def witness_env(env: dict[str, str], service: Service) -> dict[str, str]:
    """A witness's environment: the client of ``service`` (the witness holds no database URL of
    its own: the embedded default is reached through the state folder's socket)."""
    return dict(service.env, **{WITNESS_PIN: env[WITNESS_PIN]})


@pytest.fixture
def world(tmp_path: Path) -> Iterator[tuple[Desks, Service]]:
    url = f"sqlite:///{tmp_path / 'state' / 'jtca.db'}"  # inside the state folder: copied with it
    with cli_service("embedded", url, tmp_path) as env:
        env = dict(env, **{WITNESS_PIN: "pin-of-the-witnesses"})
        desks = Desks(env, tmp_path / "desks", cwd=tmp_path)
        shares = desks.data("ceremony", "init-token", EXAMPLE)["pin_shares"]
        custodians = write_shares(tmp_path / "custodians", [shares[0]["share"], shares[2]["share"]])
        desks.jtca(
            "ceremony", "run", EXAMPLE, *share_args(custodians), "--witness", "赵六 (公证员)"
        )
        desks.bootstrap([("mot-root-1", None, None)], custodians)
        yield desks, Service(env)


def anchors(state: Path) -> tuple[Path, Path]:
    audits = sorted((state / "ceremonies").glob("audit-*.pem"))
    roots = sorted((state / "ceremonies").glob("root-*.pem"))
    assert len(audits) == 1, audits
    assert len(roots) == 1, roots
    return audits[0], roots[0]


def init_witness(service: Service, env: dict[str, str], name: str, folder: Path) -> dict[str, Any]:
    audit_pem, root_pem = anchors(service.state)
    made = service.jtca(
        "witness", "init", "--name", name, "--dir", str(folder), "--audit-cert", str(audit_pem),
        "--root-cert", str(root_pem), "--create-token", "--pin-source", f"env:{WITNESS_PIN}",
        "--json", **{WITNESS_PIN: env[WITNESS_PIN]},
    )  # fmt: skip
    data: dict[str, Any] = json.loads(made.stdout)
    return data


def cosign(service: Service, env: dict[str, str], folder: Path, *, ok: bool = True) -> Any:
    done = service.jtca(
        "witness", "cosign", "--dir", str(folder), "--pin-source", f"env:{WITNESS_PIN}", "--json",
        ok=ok, **{WITNESS_PIN: env[WITNESS_PIN]},
    )  # fmt: skip
    return done


def copy_state(service: Service, to: Path) -> Service:
    """The operator's copy: the whole state folder (database, tokens, the audit key), run as a
    second embedded service with its own socket."""
    service.stop()
    shutil.copytree(service.state, to, ignore=shutil.ignore_patterns("*.sock", "*.lock"))
    env = dict(service.env, JTCA_STATE=str(to), JTCA_DATABASE_URL=f"sqlite:///{to / 'jtca.db'}")
    return Service(env)


def test_witnesses_cosign_and_catch_a_copied_log(
    world: tuple[Desks, Service], tmp_path: Path
) -> None:
    desks, a = world
    env = desks.base
    names = {"gd": "witness.gd.gov.cn/jtca", "sc": "witness.sc.gov.cn/jtca", "x": "witness.x/j"}
    folders = {k: tmp_path / f"w-{k}" for k in names}
    made = {k: init_witness(a, env, names[k], folders[k]) for k in names}
    assert made["gd"]["token"] == "witness-witness.gd.gov.cn-jtca"  # noqa: S105 - a label
    for k in ("gd", "sc"):  # the third is never registered
        desks.jtca(
            "witness", "register", "--name", names[k], "--public-key", made[k]["public_key"],
            officer="mot-root-1",
        )  # fmt: skip

    # both cosign the newest checkpoint; the service serves it with both lines, K of N counted
    settled = a.settled()
    first = json.loads(cosign(a, env, folders["gd"]).stdout)
    assert (first["size"], first["previous"], first["new"]) == (settled.size, None, True)
    assert (first["cosigners"], first["quorum"], first["witnessed"]) == (1, 1, True)
    second = json.loads(cosign(a, env, folders["sc"]).stdout)
    assert (second["size"], second["cosigners"]) == (settled.size, 2)
    with a.http() as http:
        served = http.get("/log/checkpoint")
    assert served.headers["content-type"] == "text/plain; charset=utf-8"
    audit_pem, root_pem = anchors(a.state)
    _, note = verify_checkpoint(served.text, audit_verifiers([audit_pem], [root_pem], ORIGIN))
    for k in ("gd", "sc"):
        key = SM2PublicKey.from_bytes(bytes.fromhex(made[k]["public_key"]))
        verify_cosignature(note, Verifier(names[k], key, COSIGNATURE_TYPE))
    assert a.newest().cosigners == sorted([names["gd"], names["sc"]])

    # an unregistered witness's cosignature is refused by the service (it kept its own copy)
    stranger = cosign(a, env, folders["x"], ok=False)
    assert stranger.returncode == 4
    assert "Unknown witness" in stranger.stderr
    assert "is not registered" in stranger.stderr

    listed = desks.data("witness", "list", officer="mot-root-1")
    assert {w["name"]: w["last_size"] for w in listed["witnesses"]} == {
        names["gd"]: settled.size, names["sc"]: settled.size,
    }  # fmt: skip
    shown = json.loads(a.jtca("witness", "show", "--dir", str(folders["gd"]), "--json").stdout)
    assert (shown["newest"]["size"], shown["origin"], shown["split_views"]) == (
        settled.size, ORIGIN, [],
    )  # fmt: skip

    # the operator copies the whole state and runs the copy as a second log (module doc)
    b = copy_state(a, tmp_path / "state-b")
    a.grow(6)
    grown = a.settled()
    onward = json.loads(cosign(a, env, folders["gd"]).stdout)
    assert (onward["size"], onward["previous"]) == (grown.size, settled.size)
    smaller = b.settled()
    assert smaller.size < grown.size, "log B must start smaller than A (it grew less)"

    # gd is shown B: a rollback from what it cosigned
    rolled = cosign(b, env, folders["gd"], ok=False)
    assert rolled.returncode == EXIT_SPLIT_VIEW
    assert f"SPLIT VIEW: the log went back from size {grown.size} to size {smaller.size}" in (
        rolled.stderr
    )

    # B grows to A's size: two trees of that size
    b.grow(grown.size - smaller.size)
    same = b.settled()
    assert same.size == grown.size
    assert same.root != grown.root
    split = cosign(b, env, folders["gd"], ok=False)
    assert split.returncode == EXIT_SPLIT_VIEW
    assert f"SPLIT VIEW: the log showed two different trees of size {grown.size}" in split.stderr
    evidence = Path(json.loads(split.stdout)["evidence"])
    assert evidence.parent == folders["gd"]
    assert SignedNote.parse((evidence / "offered.note").read_bytes()).checkpoint().root == (
        base64.b64decode(same.root)
    )
    assert SignedNote.parse((evidence / "cosigned.note").read_bytes()).checkpoint().root == (
        base64.b64decode(grown.root)
    )

    # sc last cosigned the shared prefix: B's tree extends it, so sc cosigns B (it cannot know);
    # shown A's tree of the same size afterwards, sc catches the split view too
    at_b = json.loads(cosign(b, env, folders["sc"]).stdout)
    assert (at_b["size"], at_b["previous"]) == (same.size, settled.size)
    caught = cosign(a, env, folders["sc"], ok=False)
    assert caught.returncode == EXIT_SPLIT_VIEW
    assert f"SPLIT VIEW: the log showed two different trees of size {grown.size}" in caught.stderr

    # B grows further: its tree does not extend the one gd cosigned at A
    b.grow(3)
    larger = b.settled()
    diverged = cosign(b, env, folders["gd"], ok=False)
    assert diverged.returncode == EXIT_SPLIT_VIEW
    assert (
        f"the log's tree of size {larger.size} does not extend the tree of size {grown.size}"
        in diverged.stderr
    )
    proof_file = Path(json.loads(diverged.stdout)["evidence"]) / "consistency-proof.json"
    assert json.loads(proof_file.read_text())["from"] == grown.size

    # gd goes on with A; it never cosigned B's view, and says so
    a.grow(2)
    latest = a.settled()
    last = json.loads(cosign(a, env, folders["gd"]).stdout)
    assert (last["size"], last["previous"]) == (latest.size, grown.size)
    kept = own_roots(folders["gd"])
    assert base64.b64decode(same.root) not in kept.values()
    assert base64.b64decode(larger.root) not in kept.values()
    shown = json.loads(a.jtca("witness", "show", "--dir", str(folders["gd"]), "--json").stdout)
    assert len(shown["split_views"]) == 3
    text = a.jtca("witness", "show", "--dir", str(folders["gd"])).stdout
    assert "SPLIT VIEW recorded" in text

    # the witnesses' folders as auditors use them (jtca audit verify --witness-dir): gd's copies
    # agree with A's database; sc's copy of B's tree of A's size does not
    clean = a.jtca("audit", "verify", "--witness-dir", str(folders["gd"]), "--json", ok=False)
    assert clean.returncode == 0, clean.stdout + clean.stderr
    forked = a.jtca("audit", "verify", "--witness-dir", str(folders["sc"]), "--json", ok=False)
    assert forked.returncode == 8, forked.stdout + forked.stderr
    found = {f["problem"] for f in json.loads(forked.stdout)["findings"]}
    assert "split-view" in found, forked.stdout
    b.stop()


def test_cosign_every_runs_rounds(world: tuple[Desks, Service], tmp_path: Path) -> None:
    """``--every`` keeps going; ``--rounds`` stops it (a timer runs single rounds)."""
    desks, a = world
    env = desks.base
    folder = tmp_path / "w"
    made = init_witness(a, env, "witness.loop/j", folder)
    desks.jtca("witness", "register", "--name", "witness.loop/j", "--public-key",
               made["public_key"], officer="mot-root-1")  # fmt: skip
    a.settled()
    looped = a.jtca(
        "witness", "cosign", "--dir", str(folder), "--pin-source", f"env:{WITNESS_PIN}",
        "--every", "1", "--rounds", "3", **{WITNESS_PIN: env[WITNESS_PIN]},
    )  # fmt: skip
    lines = [line for line in looped.stdout.splitlines() if "checkpoint of size" in line]
    assert len(lines) == 3
    assert lines[0].startswith("cosigned the checkpoint")
    assert lines[1].startswith("already cosigned") or lines[1].startswith("cosigned")


def test_cli_refuses_a_pin_on_the_command_line(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("JTCA_URL",)}
    env["JTCA_STATE"] = str(tmp_path / "state")
    done = run(env, "witness", "cosign", "--dir", str(tmp_path), "--pin-source", "1234", ok=False)
    assert done.returncode == 3
    assert "1234" not in done.stderr
