"""Ceremony: walk a key ceremony file (``docs/ceremony.md``) the way the room does — load it,
review its steps (``ca.ceremony.file.plan``, read here) one by one, each signed off by one of the
file's named witnesses before the next, then have the service run it with the custodians' shares
(``ceremony.run``: the tokens are the service's) and show the signed transcript's summary, saved
here. Whether the ceremony may run (already run, index taken, root missing, witnesses named,
shares) is the service's decision, shown as its message."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Final

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import DataTable, Static

from ca.ceremony import file as ceremonies
from ca.client.config import state_dir
from ca.client.console import Console
from ca.core.clock import iso_utc
from ca.core.errors import JtcaError
from ca.ops.ceremony import CeremonyOutcome
from ca.ops.console import CeremonyRunView
from tui.screens.forms import ConsoleTable, Field, FormModal, PickModal
from tui.screens.panels import ProgressScreen, ReportModal, WorkProgress

RUN_ROOT: Final = "ceremony.run"
RUN_ROLLOVER: Final = "qr-ca.rollover"
ACTION_OF_KIND: Final = {"root": RUN_ROOT, "ca-rollover": RUN_ROLLOVER}
EXAMPLE: Final = (
    Path(__file__).resolve().parents[2] / "policies" / "ceremonies" / "root-example.toml"
)
STEP_WIDTH: Final = 48


def default_file() -> str:
    """The shipped example, relative to the working directory when it lies below it."""
    try:
        return str(EXAMPLE.relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(EXAMPLE)


@dataclass(frozen=True, slots=True)
class Loaded:
    ceremony: ceremonies.Ceremony
    text: str  # the file as read: the service runs exactly this
    steps: list[str]
    ran_at: int | None  # when a ceremony of this name already ran
    run: CeremonyRunView | None = None  # that run, as the service recorded it


def load(console: Console, path: Path) -> Loaded:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ceremonies.CeremonyError(f"cannot read {path}: {exc}") from None
    found = ceremonies.load_ceremony(text)
    earlier = next((r for r in console.ceremonies() if r.name == found.name), None)
    return Loaded(found, text, ceremonies.plan(found), earlier.at if earlier else None, earlier)


def run_record(console: Console, run: CeremonyRunView) -> str:
    """What the service recorded of a ceremony that ran: the run and its audit entry (the
    witnesses and custodians present, the keys made), and where a saved transcript lies."""
    lines = [
        f"{run.name} ({run.kind}) ran on {iso_utc(run.at)}",
        f"file SHA-256 {run.file_sha256}",
    ]
    page = console.audit_page(action="ceremony.run", subject=run.name, size=5)
    for event in page.events:
        lines.append(f"audit entry #{event.seq} by {event.actor}:")
        try:
            details = json.dumps(json.loads(event.details), ensure_ascii=False, indent=2)
        except ValueError:
            details = event.details
        lines.append(details)
    saved = state_dir() / "ceremonies" / f"{run.file_sha256[:12]}.json"
    if saved.exists():
        lines.append(f"signed transcript saved to {saved}")
    return "\n".join(lines)


@dataclass(frozen=True, slots=True)
class Transcript:
    """A ceremony's signed transcript, as the JSON file the service returned."""

    data: dict[str, Any]
    signature: str
    signer_public_key: str

    @classmethod
    def of(cls, outcome: CeremonyOutcome) -> Transcript:
        signed = json.loads(outcome.transcript)
        return cls(signed["transcript"], signed["signature"], signed["signer_public_key"])


def transcript_text(transcript: Transcript, saved: Path) -> str:
    data = transcript.data
    lines = [
        f"{data['ceremony']} ({data['kind']}) at {data['at']}",
        f"file SHA-256 {data['file_sha256']}",
        f"token {data['token']}: custodians present {', '.join(data['custodians_present'])} "
        f"(threshold {data['threshold']})",
        f"witnesses present: {', '.join(data['witnesses_present'])}",
    ]
    for key in data["keys"]:
        lines.append(f"key {key['class']} {key['label']}: {key['uri']}")
        lines.append(f"    public key {key['public_key']}")
    for ca_key in data["ca_keys"]:
        lines.append(f"central QR CA key index {ca_key['index']}: {ca_key['public_key']}")
    for cert in data["certificates"]:
        lines.append(f"certificate {cert['role']} {cert['subject']}: SHA-256 {cert['sha256']}")
    for officer in data["officers"]:
        lines.append(f"officer {officer['id']}: {', '.join(officer['roles'])}")
    lines.append(f"signed by the root key {transcript.signer_public_key}")
    lines.append(f"signature {transcript.signature}")
    lines.append(f"transcript saved to {saved}")
    return "\n".join(lines)


class CeremonyScreen(ProgressScreen):
    """Walk a ceremony file step by step with witness sign-offs, then run it with the
    custodians' shares."""

    KEY = "9"
    TITLE = "Ceremony"
    SHORT = "Cer"  # the navigation bar at 80 columns
    ACTIONS = (RUN_ROOT, RUN_ROLLOVER)
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("l", "load", "Load"),
        Binding("w", "sign_off", "Sign off"),
        Binding("u", "undo", "Undo"),
        Binding("x", "run", "Run"),
        Binding("t", "transcript", "Transcript"),
    ]
    DEFAULT_CSS = """
    CeremonyScreen #file { height: 1; padding: 0 1; background: $boost; text-wrap: nowrap;
                           text-overflow: ellipsis; }
    CeremonyScreen #about { height: auto; max-height: 4; padding: 0 1; background: $boost; }
    CeremonyScreen #steps { height: 1fr; }
    CeremonyScreen #progress-line { height: 1; padding: 0 1; color: $text-muted; }
    """

    def __init__(self, console: Console) -> None:
        super().__init__(console)
        self.loaded: Loaded | None = None
        self.signed: list[str] = []  # the witness who signed off each step, in order
        self.transcript: Transcript | None = None
        self.transcript_file: Path | None = None
        self.file = default_file()  # the ceremony file shown (l loads another)

    def compose(self) -> ComposeResult:
        yield Static("", id="file", markup=False)
        yield Static("reading the ceremony file…", id="about", markup=False)
        yield ConsoleTable(cursor_type="row", zebra_stripes=True, id="steps")
        yield Static("", id="progress-line", markup=False)
        yield WorkProgress()

    def on_mount(self) -> None:
        table = self.query_one("#steps", DataTable)
        table.add_column("#", width=2, key="n")
        table.add_column("Step", width=STEP_WIDTH, key="step")
        table.add_column("Signed off by", width=16, key="witness")
        table.focus()
        self.load_file(self.file)

    # -- loading --------------------------------------------------------------------------------
    def action_load(self) -> None:
        """A form asking for the ceremony file, the one shown pre-filled."""

        def chosen(result: dict[str, str] | None) -> None:
            if result is not None:
                self.load_file(result["path"])

        self.app.push_screen(
            FormModal(
                "Load a ceremony file",
                [Field("path", "Ceremony file (TOML)", self.file)],
                note="Its steps are then walked one by one, each signed off by a witness.",
            ),
            chosen,
        )

    def load_file(self, text: str) -> None:
        if not text.strip():
            self.app.notify("Type the path of a ceremony file.", title="Ceremony", markup=False)
            return
        self.file = text.strip()
        self.query_one("#file", Static).update(f"file {self.file} · l: load another")
        path = Path(text.strip()).expanduser()
        console = self.console
        self.work(lambda: load(console, path), done=self.show_loaded, busy="Reading the file…")

    def show_loaded(self, loaded: Loaded) -> None:
        self.loaded = loaded
        self.signed = []
        self.transcript = None
        self.transcript_file = None
        found = loaded.ceremony
        about = [
            f"{found.name} · {found.kind} · token {found.token} · "
            f"{found.threshold} of {len(found.custodians)} custodians",
            f"witnesses: {', '.join(found.witnesses)}",
        ]
        if loaded.ran_at is not None:
            about.append(
                f"Note: a ceremony of this name ran on {iso_utc(loaded.ran_at)}: "
                "it does not run again (t: what was recorded)."
            )
        self.query_one("#about", Static).update("\n".join(about))
        table = self.query_one("#steps", DataTable)
        table.clear()
        for number, step in enumerate(loaded.steps, 1):
            table.add_row(str(number), step, "", key=str(number), height=None)
        self.show_progress()
        table.focus()

    # -- sign-offs ------------------------------------------------------------------------------
    def show_progress(self) -> None:
        table = self.query_one("#steps", DataTable)
        if self.loaded is None:
            return
        total = len(self.loaded.steps)
        for number in range(1, total + 1):
            witness = self.signed[number - 1] if number <= len(self.signed) else ""
            table.update_cell(str(number), "witness", witness)
        done = len(self.signed)
        if done < total:
            line = f"{done} of {total} steps signed off · w: sign off step {done + 1}"
            table.move_cursor(row=done)
        else:
            line = f"all {total} steps signed off · x: run with the custodians' shares"
        if self.transcript is not None:
            line = "ran · t: the transcript"
        elif self.loaded.ran_at is not None:
            line = f"ran on {iso_utc(self.loaded.ran_at)[:10]} · t: what was recorded"
        self.query_one("#progress-line", Static).update(line)

    def already_ran(self) -> bool:
        """Whether the loaded ceremony has run (said at once, before anything is asked)."""
        loaded = self.loaded
        if loaded is None or loaded.ran_at is None or self.transcript is not None:
            return False
        self.app.notify(
            f"ceremony {loaded.ceremony.name!r} has already run (on "
            f"{iso_utc(loaded.ran_at)[:10]}): t shows what was recorded.",
            title="Ceremony already run",
            severity="warning",
            markup=False,
        )
        return True

    def action_sign_off(self) -> None:
        if self.loaded is None:
            self.app.notify("Load a ceremony file first (l).", title="Ceremony")
            return
        if self.already_ran():
            return
        step = len(self.signed)
        if step >= len(self.loaded.steps):
            self.app.notify("Every step is signed off.", title="Ceremony")
            return
        witnesses = self.loaded.ceremony.witnesses
        current = self.signed[-1] if self.signed else None

        def picked(witness: str | None) -> None:
            if witness is None or self.loaded is None or len(self.signed) != step:
                return
            self.signed.append(witness)
            self.show_progress()

        self.app.push_screen(
            PickModal(
                f"Step {step + 1}: {self.loaded.steps[step]}\nWho witnessed it?",
                [(w, w) for w in witnesses],
                current,
            ),
            picked,
        )

    def action_undo(self) -> None:
        if self.signed and self.transcript is None:
            self.signed.pop()
            self.show_progress()

    # -- running --------------------------------------------------------------------------------
    def action_run(self) -> None:
        loaded = self.loaded
        if loaded is None:
            self.app.notify("Load a ceremony file first (l).", title="Ceremony")
            return
        if self.already_ran():
            return
        missing = len(loaded.steps) - len(self.signed)
        if missing:
            first = len(self.signed) + 1
            which = f"step {first}" if missing == 1 else f"steps {first}–{len(loaded.steps)}"
            self.app.notify(
                f"{which} still need{'s' if missing == 1 else ''} a witness sign-off (w).",
                title="Ceremony not ready",
                severity="warning",
            )
            return
        action = ACTION_OF_KIND.get(loaded.ceremony.kind, RUN_ROOT)
        if not self.console.can(action):
            self.app.notify(
                f"{self.console.actor.id} may not run a {loaded.ceremony.kind} ceremony "
                f"({action}).",
                title="Ceremony refused",
                severity="error",
                markup=False,
            )
            return
        found = loaded.ceremony
        fields = [
            Field(f"share-{i}", f"Custodian's PIN share {i} of {found.threshold}", password=True)
            for i in range(1, found.threshold + 1)
        ]
        self.app.push_screen(
            FormModal(
                f"Run {found.name!r} in token {found.token}",
                fields,
                note=f"Custodians: {', '.join(found.custodians)}\n"
                + "\n".join(self.witness_lines()),
            ),
            self.shares_answered,
        )

    def witness_lines(self) -> list[str]:
        """Every witness the file names, with the steps each signed off."""
        if self.loaded is None:
            return []
        lines = ["Witnesses the file names:"]
        for witness in self.loaded.ceremony.witnesses:
            steps = [str(n) for n, w in enumerate(self.signed, 1) if w == witness]
            signed = f"signed off step{'s' if len(steps) != 1 else ''} {', '.join(steps)}"
            lines.append(f"  {witness}: {signed if steps else 'no step signed off'}")
        return lines

    def shares_answered(self, answer: dict[str, str] | None) -> None:
        if answer is None or self.loaded is None:
            return
        shares = [value.strip() for value in answer.values() if value.strip()]
        found, text = self.loaded.ceremony, self.loaded.text
        witnesses = sorted(set(self.signed))
        console = self.console

        def job() -> tuple[Transcript, Path]:
            from ca.core.files import write_atomically

            outcome = console.run_ceremony(text, shares, witnesses)
            out = state_dir() / "ceremonies" / f"{outcome.file_sha256[:12]}.json"
            try:
                out.parent.mkdir(parents=True, exist_ok=True)
                write_atomically(out, outcome.transcript)
            except OSError as exc:
                raise JtcaError(
                    f"the ceremony ran, but its transcript could not be written to {out}: "
                    f"{exc.strerror}; it is stored in the database",
                    title="Transcript not saved",
                ) from None
            return Transcript.of(outcome), out

        def done(result: tuple[Transcript, Path]) -> None:
            self.transcript, self.transcript_file = result
            self.show_progress()
            self.app.notify(
                f"{found.name}: done; transcript {self.transcript_file}",
                title="Ceremony done",
                markup=False,
            )
            self.action_transcript()

        self.work(job, done=done, busy=f"Running {found.name}…")

    def action_transcript(self) -> None:
        if self.transcript is None or self.transcript_file is None:
            run = self.loaded.run if self.loaded is not None else None
            if run is None:
                self.app.notify("This ceremony has not run yet.", title="Ceremony")
                return
            console = self.console

            def shown(text: str) -> None:
                self.app.push_screen(ReportModal("Ceremony run (as the service recorded it)", text))

            self.work(lambda: run_record(console, run), done=shown, busy="Reading the run…")
            return
        self.app.push_screen(
            ReportModal(
                "Ceremony transcript (signed by the root key)",
                transcript_text(self.transcript, self.transcript_file),
            )
        )
