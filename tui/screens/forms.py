"""Widgets the workflow screens share (Cities, Approvals, Cleanup, Issuers): a modal form that
asks for a few fields (a reason, a path, PIN shares) or just a confirmation, a picker, and a
row table whose rows can be marked with the space bar. Presentation only: no business rule."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

from rich.text import Text
from textual import events
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.coordinate import Coordinate
from textual.screen import ModalScreen
from textual.widgets import DataTable, Input, Label, OptionList, Static
from textual.widgets.option_list import Option

from ca.client.console import session_over
from ca.core.errors import BadInput
from tui.screens.base import describe_error

MARK = "✓"


class FormInput(Input):
    """An input of a form whose Enter moves on *at once*: a priority binding, which the app runs
    while it reads the keys in order, so the keys typed after Enter (a fast typist, a paste, a
    password manager) land in the next field — never in the one Enter left, as they did when
    focus moved in an ``Input.Submitted`` handler that ran after those keys were delivered.

    The screen may say where Enter goes (``next_field(input)``: the next input, or None to
    submit); by default it is the next ``FormInput`` of the screen, and the last one submits.
    Submitting is queued behind the keys already delivered to this input, so the form reads
    the whole value."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "advance", "Next", show=False, priority=True),
    ]

    def action_advance(self) -> None:
        chooser = getattr(self.screen, "next_field", None)
        target = chooser(self) if chooser is not None else self.following()
        if target is not None:
            self.screen.set_focus(target)
        else:
            self.call_later(self.action_submit)

    def following(self) -> Input | None:
        inputs = list(self.screen.query(FormInput))
        position = inputs.index(self)
        return inputs[position + 1] if position + 1 < len(inputs) else None


def field_named_in(exc: BaseException, names: Sequence[str]) -> str | None:
    """The form field an error is about: its ``field`` (a service error's, a ``CodecError``'s)
    when that names one of ``names`` (``cities[2]`` names ``cities``), else a field named in
    its message as ``share N`` (a PIN share), else None."""
    field = getattr(exc, "field", None)
    if isinstance(field, str) and field:
        for name in names:
            if field == name or re.match(rf"{re.escape(name)}\b", field):
                return name
    _title, message = describe_error(exc)
    share = re.search(r"\bshare (\d+)\b", message)
    if share is not None:
        for name in names:
            if name.replace("_", "-").replace("share-", "share") in (
                f"share{share[1]}",
                f"share-{share[1]}",
            ):
                return name
    return None


@dataclass(frozen=True, slots=True)
class Field:
    """One input of a ``FormModal``; its value comes back under ``name``."""

    name: str
    label: str
    value: str = ""
    placeholder: str = ""
    password: bool = False


class FieldError(BadInput):
    """What a form's own check found wrong in one field (``field``: the field's name)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


class FormModal(ModalScreen[dict[str, str] | None]):
    """Asks for ``fields`` (none: a plain confirmation). Enter moves to the next field and
    submits on the last; Escape cancels (the result is None).

    With ``act``, submitting runs ``act(values)`` (a thread worker: the service, a token) while
    the form stays open: if it fails, the form stays open with what was typed, the field the
    error is about marked (CSS class ``-invalid``) and the message under it (``field_for``
    picks the field, "" for none; by default the error's own ``field``, a ``share N`` in its
    message, or the only field); if it succeeds the form closes and ``done`` gets the result."""

    DEFAULT_CSS = """
    FormModal { align: center middle; }
    FormModal > Vertical {
        width: 76; max-width: 100%; height: auto; max-height: 100%;
        border: thick $primary; background: $surface; padding: 0 1;
    }
    FormModal .form-title { text-style: bold; }
    FormModal .form-note { color: $text-muted; max-height: 8; }
    FormModal .form-hint { color: $text-muted; }
    FormModal .field-error { color: $error; display: none; }
    FormModal .field-error.-shown { display: block; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel"),
        Binding("q", "cancel", "Cancel", show=False),  # a field takes q as a letter
        Binding("enter", "submit", "Confirm", show=False),
        Binding("ctrl+s", "submit", "Submit"),
    ]

    def __init__(
        self,
        title: str,
        fields: Sequence[Field] = (),
        *,
        note: str = "",
        act: Callable[[dict[str, str]], Any] | None = None,
        done: Callable[[Any], Any] | None = None,
        field_for: Callable[[BaseException], str | None] | None = None,
    ) -> None:
        super().__init__()
        self.form_title = title
        self.fields = tuple(fields)
        self.note = note
        self.act = act
        self.done = done
        self.field_for = field_for
        self.acting = False

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(self.form_title, classes="form-title", markup=False)
            if self.note:
                yield Static(self.note, classes="form-note", markup=False)
            for field in self.fields:
                yield Label(field.label, markup=False)
                yield FormInput(
                    value=field.value,
                    placeholder=field.placeholder,
                    password=field.password,
                    id=f"field-{field.name}",
                )
                yield Static("", id=f"error-{field.name}", classes="field-error", markup=False)
            yield Static("", id="form-error", classes="field-error", markup=False)
            hint = "Enter: next field / submit" if self.fields else "Enter: confirm"
            yield Static(f"{hint} · Esc: cancel", classes="form-hint", id="form-hint")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        inputs = list(self.query(FormInput))
        position = inputs.index(event.input) if event.input in inputs else len(inputs)
        if position + 1 < len(inputs):
            inputs[position + 1].focus()
        else:
            self.action_submit()

    def values(self) -> dict[str, str]:
        return {
            field.name: self.query_one(f"#field-{field.name}", Input).value for field in self.fields
        }

    def action_submit(self) -> None:
        if self.act is None:
            self.dismiss(self.values())
            return
        if self.acting:
            return  # already at work on this form
        act, values = self.act, self.values()
        self.acting = True
        self.query_one("#form-hint", Static).update("Working…")

        def job() -> None:
            try:
                result = act(values)
            except Exception as exc:  # shown in the form, which stays open
                self.app.call_from_thread(self.refused, exc)
                return
            self.app.call_from_thread(self.succeeded, values, result)

        self.run_worker(job, thread=True, group="form-work", exit_on_error=False)

    def succeeded(self, values: dict[str, str], result: Any) -> None:
        self.acting = False
        self.dismiss(values)
        if self.done is not None:
            self.done(result)

    def refused(self, exc: BaseException) -> None:
        """Keep the form open with what was typed; mark the field the error is about."""
        self.acting = False
        hint = "Enter: next field / submit" if self.fields else "Enter: confirm"
        self.query_one("#form-hint", Static).update(f"{hint} · Esc: cancel")
        if session_over(exc):
            self.dismiss(None)
            report = getattr(self.app, "report", None)
            if report is not None:
                report(exc)
            return
        self.clear_marks()
        names = [f.name for f in self.fields]
        field = self.field_for(exc) if self.field_for is not None else None
        title, message = describe_error(exc)
        if field == "":  # the form's own choice: about the whole form, no field
            field = None
        elif field is None:
            field = field_named_in(exc, names)
            if field is None and len(names) == 1:
                field = names[0]
        if field is not None and field in names:
            self.mark(field, message)
        else:
            shown = self.query_one("#form-error", Static)
            shown.update(f"{title}: {message}")
            shown.add_class("-shown")
        self.app.notify(message, title=title, severity="error", timeout=10, markup=False)

    def mark(self, field: str, message: str) -> None:
        """``field`` marked invalid, ``message`` under it, the cursor in it."""
        entry = self.query_one(f"#field-{field}", Input)
        entry.add_class("-invalid")
        shown = self.query_one(f"#error-{field}", Static)
        shown.update(message)
        shown.add_class("-shown")
        entry.focus()

    def clear_marks(self) -> None:
        for entry in self.query(FormInput):
            entry.remove_class("-invalid")
        for shown in self.query(".field-error"):
            shown.remove_class("-shown")

    def action_cancel(self) -> None:
        self.dismiss(None)


class PickModal(ModalScreen[str | None]):
    """Pick one of ``choices`` (id, text) with the arrow keys and Enter; Escape cancels."""

    DEFAULT_CSS = """
    PickModal { align: center middle; }
    PickModal > Vertical {
        width: 60; max-width: 100%; height: 20; max-height: 100%;
        border: thick $primary; background: $surface; padding: 0 1;
    }
    PickModal OptionList { height: 1fr; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape,q", "cancel", "Cancel")]

    def __init__(
        self, title: str, choices: Sequence[tuple[str, str]], current: str | None = None
    ) -> None:
        super().__init__()
        self.pick_title = title
        self.choices = tuple(choices)
        self.current = current

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(self.pick_title, markup=False)
            yield OptionList(*(Option(text, id=key) for key, text in self.choices))

    def on_mount(self) -> None:
        options = self.query_one(OptionList)
        ids = [key for key, _ in self.choices]
        if self.current in ids:
            options.highlighted = ids.index(self.current)
        options.focus()

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        self.dismiss(event.option.id)

    def action_cancel(self) -> None:
        self.dismiss(None)


# j/k down/up, g/G first/last row in every console table (g and G only where the screen has no
# key of its own on them: Cities' g generates, Audit's g shows the newest page)
TABLE_KEYS: list[BindingType] = [
    Binding("j", "cursor_down", "Down", show=False),
    Binding("k", "cursor_up", "Up", show=False),
    Binding("g", "first_row", "First", show=False),
    Binding("G", "last_row", "Last", show=False),
]


def screen_binds(table: DataTable[Any], key: str) -> bool:
    """Whether the table's screen binds ``key`` itself (its own action comes first)."""
    return any(
        part.strip() == key
        for binding in table.screen.BINDINGS
        if isinstance(binding, Binding)
        for part in binding.key.split(",")
    )


def table_check(table: DataTable[Any], action: str) -> bool | None:
    if action == "first_row":
        return not screen_binds(table, "g")
    if action == "last_row":
        return not screen_binds(table, "G")
    return True


Cell = TypeVar("Cell")  # what a table's cells hold


class ConsoleTable(DataTable[Cell]):
    """A row-cursor table with the console's table keys (``TABLE_KEYS``)."""

    BINDINGS: ClassVar[list[BindingType]] = TABLE_KEYS

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        return table_check(self, action)

    def action_first_row(self) -> None:
        if self.row_count:
            self.move_cursor(row=0)

    def action_last_row(self) -> None:
        if self.row_count:
            self.move_cursor(row=self.row_count - 1)


class RowTable(ConsoleTable[str | Text]):
    """A row-cursor table whose rows have string keys; refilled without losing the cursor. A
    cell is a string or a ``Text`` (a key's state: its glyph and word in its colour)."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(cursor_type="row", zebra_stripes=True, id=id)

    async def _on_idle(self, event: events.Idle) -> None:
        """Textual measures the columns of new rows when idle, but repaints only if the table's
        virtual size changed: rows painted before that (header-wide columns) would stay cut
        off. Repaint once the columns are measured."""
        measuring = self._require_update_dimensions
        await super()._on_idle(event)
        if measuring:
            self._clear_caches()  # rows rendered header-wide are cached: render them anew
            self.refresh()

    def current_key(self) -> str | None:
        if self.row_count == 0:
            return None
        return self.coordinate_to_cell_key(Coordinate(self.cursor_row, 0)).row_key.value

    def fill(self, rows: Iterable[tuple[str, Sequence[str | Text]]]) -> None:
        keep = self.cursor_row
        self.clear()
        for key, cells in rows:
            self.add_row(*cells, key=key)
        if self.row_count:
            self.move_cursor(row=min(keep, self.row_count - 1))


class MarkTable(RowTable):
    """A ``RowTable`` whose first column marks rows (space toggles) for an action on several."""

    # not in the footer (80 columns: the screen's actions and "Sign out" come first); the
    # tables' titles say "space marks", the help lists it
    BINDINGS: ClassVar[list[BindingType]] = [Binding("space", "toggle_mark", "Mark", show=False)]

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.marked: set[str] = set()

    def add_mark_column(self) -> None:
        self.add_column(MARK, key="mark", width=1)

    def fill(self, rows: Iterable[tuple[str, Sequence[str | Text]]]) -> None:
        rows = list(rows)
        self.marked &= {key for key, _ in rows}
        super().fill((key, [MARK if key in self.marked else "", *cells]) for key, cells in rows)

    def action_toggle_mark(self) -> None:
        key = self.current_key()
        if key is None:
            return
        self.marked ^= {key}
        self.update_cell(key, "mark", MARK if key in self.marked else "")

    def chosen(self) -> list[str]:
        """The marked rows in table order, or else the row under the cursor."""
        keys = [str(row.key.value) for row in self.ordered_rows]
        marked = [k for k in keys if k in self.marked]
        if marked:
            return marked
        current = self.current_key()
        return [current] if current is not None else []
