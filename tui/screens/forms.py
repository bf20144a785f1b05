"""Widgets the workflow screens share (Cities, Approvals, Cleanup, Issuers): a modal form that
asks for a few fields (a reason, a path, PIN shares) or just a confirmation, a picker, and a
row table whose rows can be marked with the space bar. Presentation only: no business rule."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import ClassVar

from textual import events
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.coordinate import Coordinate
from textual.screen import ModalScreen
from textual.widgets import DataTable, Input, Label, OptionList, Static
from textual.widgets.option_list import Option

MARK = "✓"


@dataclass(frozen=True, slots=True)
class Field:
    """One input of a ``FormModal``; its value comes back under ``name``."""

    name: str
    label: str
    value: str = ""
    placeholder: str = ""
    password: bool = False


class FormModal(ModalScreen[dict[str, str] | None]):
    """Asks for ``fields`` (none: a plain confirmation). Enter moves to the next field and
    submits on the last; Escape cancels (the result is None)."""

    DEFAULT_CSS = """
    FormModal { align: center middle; }
    FormModal > Vertical {
        width: 76; max-width: 100%; height: auto; max-height: 100%;
        border: thick $primary; background: $surface; padding: 0 1;
    }
    FormModal .form-title { text-style: bold; }
    FormModal .form-note { color: $text-muted; max-height: 8; }
    FormModal .form-hint { color: $text-muted; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel"),
        Binding("enter", "submit", "Confirm", show=False),
        Binding("ctrl+s", "submit", "Submit"),
    ]

    def __init__(self, title: str, fields: Sequence[Field] = (), *, note: str = "") -> None:
        super().__init__()
        self.form_title = title
        self.fields = tuple(fields)
        self.note = note

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(self.form_title, classes="form-title", markup=False)
            if self.note:
                yield Static(self.note, classes="form-note", markup=False)
            for field in self.fields:
                yield Label(field.label, markup=False)
                yield Input(
                    value=field.value,
                    placeholder=field.placeholder,
                    password=field.password,
                    id=f"field-{field.name}",
                )
            hint = "Enter: next field / submit" if self.fields else "Enter: confirm"
            yield Static(f"{hint} · Esc: cancel", classes="form-hint")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        inputs = list(self.query(Input))
        position = inputs.index(event.input)
        if position + 1 < len(inputs):
            inputs[position + 1].focus()
        else:
            self.action_submit()

    def action_submit(self) -> None:
        self.dismiss(
            {
                field.name: self.query_one(f"#field-{field.name}", Input).value
                for field in self.fields
            }
        )

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
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]

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


class RowTable(DataTable[str]):
    """A row-cursor table whose rows have string keys; refilled without losing the cursor."""

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

    def fill(self, rows: Iterable[tuple[str, Sequence[str]]]) -> None:
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

    def fill(self, rows: Iterable[tuple[str, Sequence[str]]]) -> None:
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
