"""Pieces the Publication, Audit and Ceremony screens share: a progress line shown while a
screen's blocking work runs (token sessions, signing, chain verification), and a modal that shows
a finished piece of work's report. Presentation only: no business rule."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar, TypeVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Label, ProgressBar, Static
from textual.worker import Worker, WorkerState

from ca.core.vocabulary import stage_word
from tui.screens.base import ConsoleScreen, Guarded

T = TypeVar("T")
WORK_GROUP = "console-work"  # the group ``ConsoleScreen.run_blocking`` runs its workers in


def short_stage(stage: str) -> str:
    """``held-by-province`` as ``at-province``: the word the command line shows too
    (``ca.core.vocabulary.stage_word``; at most 11 characters for 80-column tables)."""
    return stage_word(stage)


def short_time(iso: str | None) -> str:
    """``2026-11-18T09:46:40Z`` as ``2026-11-18 09:46`` (UTC), ``—`` for none."""
    return iso[:16].replace("T", " ") if iso else "—"


class WorkProgress(Horizontal):
    """What is running and an indeterminate progress bar; hidden while nothing runs. Yield it
    last in a screen's layout: it takes a line above the footer while work runs (docked at the
    bottom it would lie under the footer the console adds)."""

    DEFAULT_CSS = """
    WorkProgress { height: 1; display: none; background: $boost; padding: 0 1; }
    WorkProgress.running { display: block; }
    WorkProgress Label { width: auto; margin-right: 2; }
    WorkProgress ProgressBar { width: 1fr; }
    """

    def compose(self) -> ComposeResult:
        yield Label("", id="work-label", markup=False)
        yield ProgressBar(total=None, show_eta=False, show_percentage=False, id="work-bar")

    def show(self, what: str) -> None:
        self.query_one("#work-label", Label).update(what)
        self.add_class("running")

    def hide(self) -> None:
        self.remove_class("running")


class ProgressScreen(ConsoleScreen):
    """A console screen whose blocking work shows a ``WorkProgress`` line while it runs (yield
    one in ``compose``) instead of only a short "busy" notification."""

    def work(
        self, job: Callable[[], T], *, done: Callable[[T], Any] | None = None, busy: str
    ) -> Worker[None]:
        self.query_one(WorkProgress).show(busy)
        return self.run_blocking(job, done=done, busy=busy, quiet=True)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        running = [
            w
            for w in self.workers
            if w.group == WORK_GROUP and w.state in (WorkerState.PENDING, WorkerState.RUNNING)
        ]
        if not running:
            self.query_one(WorkProgress).hide()

    @property
    def busy(self) -> bool:
        return any(
            w.group == WORK_GROUP and w.state in (WorkerState.PENDING, WorkerState.RUNNING)
            for w in self.workers
        )


class ReportModal(Guarded, ModalScreen[None]):
    """A finished piece of work's report (a ceremony transcript, an audit verification):
    scrollable; escape, enter or q closes it."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,enter,q", "close", "Close"),
    ]
    DEFAULT_CSS = """
    ReportModal { align: center middle; }
    ReportModal > Vertical {
        width: 78; max-width: 100%; height: auto; max-height: 100%;
        border: thick $primary; background: $surface; padding: 0 1;
    }
    ReportModal.failed > Vertical { border: thick $error; }
    ReportModal .report-title { text-style: bold; }
    ReportModal VerticalScroll { height: auto; max-height: 18; }
    ReportModal .report-hint { color: $text-muted; }
    """

    def __init__(self, title: str, text: str, *, failed: bool = False) -> None:
        super().__init__(classes="failed" if failed else None)
        self.report_title = title
        self.text = text

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(self.report_title, classes="report-title", markup=False)
            with VerticalScroll():
                yield Static(self.text, id="report-text", markup=False)
            yield Static("enter / escape: close", classes="report-hint")

    def on_mount(self) -> None:
        self.query_one(VerticalScroll).focus()

    def action_close(self) -> None:
        self.dismiss(None)
