"""Cities (3): the cities of a province and their keys (一城一密), applications for key sets
(第九条), and the packages that carry keys ministry → province → city.

A provincial officer sees their own province, applies for keys of marked cities, hands the keys
the province holds on to the cities and imports the packages sent to the province. A ministry
officer picks a province, generates the keys of an approved application and delivers them to the
province. Every action is an operation of the service reached through ``Console`` (``city.*``,
``packages.*``); the steps that need a province's or a city's own token run at that site
(``ca.site``, through ``Console`` too). The policy decides who may do what.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import ClassVar, Final

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal
from textual.widgets import Static

from ca.client.config import state_dir
from ca.client.console import Console
from ca.core.errors import JtcaError
from ca.ops import city as city_ops
from ca.ops.packages import ImportedKey, KeyAwaitingDelivery, TransportKeyInfo
from ca.registry.divisions import default_divisions
from tui.screens.base import ConsoleFooter
from tui.screens.forms import Field, FieldError, FormModal, MarkTable, PickModal, RowTable
from tui.screens.panels import ProgressScreen, ReportModal, WorkProgress
from tui.screens.states import state_text

APPLY = "city-key.apply"
GENERATE = "city-key.generate"
DELIVER = "city-key.deliver"
IMPORT = "city-key.import"
USAGE_IMPORT = "city-key.usage-import"
TRANSPORT = "transport-key.register"
MINISTRY = "ministry"


@dataclass(frozen=True, slots=True)
class Loaded:
    province: str
    applications: list[city_ops.Application]  # the province's, newest first
    keys: list[city_ops.KeyView]  # the province's
    awaiting: list[KeyAwaitingDelivery]  # what this officer's side delivers next, there


def _short(key_class: str) -> str:
    return key_class.removeprefix("city-")


class CitiesScreen(ProgressScreen):
    """Cities and their keys: apply for key sets, generate (ministry), deliver, import
    packages and usage reports, register transport keys."""

    KEY: ClassVar[str] = "3"
    TITLE: ClassVar[str] = "Cities"
    ACTIONS: ClassVar[tuple[str, ...]] = (
        APPLY,
        GENERATE,
        DELIVER,
        IMPORT,
        USAGE_IMPORT,
        TRANSPORT,
    )

    DEFAULT_CSS = """
    CitiesScreen #cities-title { height: 1; background: $boost; text-style: bold; }
    CitiesScreen #cities { height: 1fr; border: round $primary; }
    CitiesScreen #city-keys { height: 1; padding: 0 1; color: $text-muted; text-wrap: nowrap;
                              text-overflow: ellipsis; }
    CitiesScreen #lower { height: 1fr; }
    CitiesScreen #applications, CitiesScreen #deliveries {
        width: 1fr; height: 100%; border: round $primary;
    }
    CitiesScreen DataTable:focus { border: round $accent; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("a", "apply", "Apply"),
        Binding("g", "generate", "Generate"),
        Binding("d", "deliver", "Deliver"),
        Binding("i", "import_packages", "Import"),
        Binding("u", "import_usage", "Usage"),
        Binding("t", "transport_key", "Transport key", show=False),
        Binding("p", "pick_province", "Province"),
        Binding("r,f5", "refresh", "Refresh", show=False),
    ]
    _NEEDS: ClassVar[dict[str, str]] = {
        "apply": APPLY,
        "generate": GENERATE,
        "deliver": DELIVER,
        "import_packages": IMPORT,
        "import_usage": USAGE_IMPORT,
        "transport_key": TRANSPORT,
    }

    def __init__(self, console: Console) -> None:
        super().__init__(console)
        self.allowed = {name: console.can(action) for name, action in self._NEEDS.items()}
        self.needs = {name: (action,) for name, action in self._NEEDS.items()}
        self.divisions = default_divisions()
        self.province: str | None = console.province
        self.city_keys: dict[str, str] = {}  # city code → its keys' state and stage, in full
        self.awaiting: list[KeyAwaitingDelivery] = []

    # -- layout ---------------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield Static(id="cities-title", markup=False)
        cities = MarkTable(id="cities")
        cities.border_title = "Cities (space marks)"
        yield cities
        yield Static("", id="city-keys", markup=False)
        with Horizontal(id="lower"):
            applications = RowTable(id="applications")
            applications.border_title = "Applications"
            yield applications
            deliveries = MarkTable(id="deliveries")
            deliveries.border_title = "Awaiting delivery (space marks)"
            yield deliveries
        yield WorkProgress()
        yield ConsoleFooter()

    def on_mount(self) -> None:
        cities = self.query_one("#cities", MarkTable)
        cities.add_mark_column()
        # 80 columns: the Keys column says each key's state, the line under the table the
        # highlighted city's keys in full (state, stage); Cities counts an application's cities
        # (the cities table names them); a delivery's stage is the same for all (the side's).
        cities.add_columns("Code", "City", "Application", "Keys (state)")
        self.query_one("#applications", RowTable).add_columns("#", "State", "By", "Cities")
        deliveries = self.query_one("#deliveries", MarkTable)
        deliveries.add_mark_column()
        deliveries.add_columns("Key", "City")
        cities.focus()

    def on_screen_resume(self) -> None:
        self.action_refresh()  # shown again: another officer or screen may have changed things

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in self.allowed:
            return self.permitted(action)  # not for this officer's roles: dimmed, says why
        if action == "pick_province":
            return self.console.province is None
        return True

    # -- loading ----------------------------------------------------------------------------------
    def action_refresh(self) -> None:
        self.run_blocking(self._load, done=self._show, quiet=True)

    def _load(self) -> Loaded:
        applications = self.console.applications()
        province = self.province
        if province is None:  # a ministry officer: the province of the latest application
            province = applications[0].province if applications else "110000"
        keys = self.console.find_keys(city_ops.KeyQuery(province=province))
        awaiting = [k for k in self.console.awaiting_delivery() if k.province == province]
        return Loaded(
            province=province,
            applications=[a for a in applications if a.province == province],
            keys=keys,
            awaiting=awaiting,
        )

    def _show(self, loaded: Loaded) -> None:
        self.province = loaded.province
        province = self.divisions.province(self.province or "")
        who = self.console.actor.id
        self.query_one("#cities-title", Static).update(
            f" Cities of {province.name if province else self.province} ({self.province}) · {who}"
        )
        latest: dict[str, str] = {}
        for application in reversed(loaded.applications):  # oldest first: newest wins
            for code in application.cities:
                latest[code] = f"#{application.id} {application.state}"
        keys_of: dict[str, list[city_ops.KeyView]] = defaultdict(list)
        for key in loaded.keys:
            keys_of[key.city].append(key)
        rows: list[tuple[str, list[str | Text]]] = []
        self.city_keys = {}
        for city in self.divisions.cities_of(self.province or ""):
            keys = sorted(keys_of.get(city.code, []), key=lambda k: (k.key_class, k.generation))

            def name(k: city_ops.KeyView) -> str:
                return _short(k.key_class) + (f" g{k.generation}" if k.generation > 1 else "")

            # each key's state as on Keys: its glyph and word in its colour
            status = Text(" · ").join(
                Text.assemble(f"{name(k)} ", state_text(k.state, k.days_left)) for k in keys
            )
            self.city_keys[city.code] = f"{city.name} {city.code}: " + (
                " · ".join(f"{name(k)} {k.state}, {k.stage}" for k in keys) or "no keys"
            )
            rows.append(
                (
                    city.code,
                    [
                        city.code,
                        city.name,
                        latest.get(city.code, ""),
                        status if keys else "no keys",
                    ],
                )
            )
        self.query_one("#cities", MarkTable).fill(rows)
        self._describe_city()
        self.query_one("#applications", RowTable).fill(
            (
                str(a.id),
                [str(a.id), a.state, a.applicant, str(len(a.cities))],
            )
            for a in loaded.applications
        )
        self.awaiting = list(loaded.awaiting)
        self.query_one("#deliveries", MarkTable).fill(
            (str(k.id), [k.label, k.city_name]) for k in loaded.awaiting
        )

    def on_data_table_row_highlighted(self, event: RowTable.RowHighlighted) -> None:
        if event.data_table.id == "cities":
            self._describe_city()

    def _describe_city(self) -> None:
        code = self.query_one("#cities", MarkTable).current_key()
        self.query_one("#city-keys", Static).update(self.city_keys.get(code or "", ""))

    # -- province (ministry officers) -------------------------------------------------------------
    def action_pick_province(self) -> None:
        if self.console.province is not None:
            return
        choices = [(p.code, f"{p.code} {p.name}") for p in self.divisions.provinces]

        def chosen(code: str | None) -> None:
            if code:
                self.province = code
                self.action_refresh()

        self.app.push_screen(PickModal("Province", choices, self.province), chosen)

    # -- apply ------------------------------------------------------------------------------------
    def action_apply(self) -> None:
        cities = self.query_one("#cities", MarkTable)
        codes = cities.chosen()
        names = ", ".join(f"{self._city_name(c)} ({c})" for c in codes)
        named: list[str] = []

        def apply(result: dict[str, str]) -> city_ops.Application:
            chosen = [c.strip() for c in result["cities"].replace(" ", ",").split(",") if c.strip()]
            if not chosen:
                raise FieldError("cities", "type at least one city code (6 digits)")
            named[:] = [f"{self._city_name(c)} ({c})" for c in chosen]
            return self.console.apply(chosen)

        def done(application: city_ops.Application) -> None:
            cities.marked.clear()
            self.app.notify(
                f"application #{application.id} for {', '.join(named)} awaits approval",
                title="Applied",
                markup=False,
            )
            self.action_refresh()

        self.app.push_screen(
            FormModal(
                "Apply for key sets (第九条)",
                [Field("cities", "City codes, comma-separated", ",".join(codes))],
                note=(f"Marked: {names}" if cities.marked else f"Under the cursor: {names}")
                if codes
                else "Mark cities with space, or type codes.",
                act=apply,
                done=done,
            )
        )

    def _city_name(self, code: str) -> str:
        city = self.divisions.city(code)
        return city.name if city else code

    # -- generate ---------------------------------------------------------------------------------
    def action_generate(self) -> None:
        chosen = self.query_one("#applications", RowTable).current_key()
        if chosen is None:
            self.fail(JtcaError("no application to generate keys for", title="Generate"))
            return
        application_id = int(chosen)

        def confirmed(result: dict[str, str] | None) -> None:
            if result is None:
                return

            def done(keys: list[city_ops.KeyView]) -> None:
                self.app.notify(
                    f"{len(keys)} keys generated for application #{application_id}: "
                    + ", ".join(k.label for k in keys),
                    title="Generated",
                    markup=False,
                )
                self.action_refresh()

            self.work(
                lambda: self.console.generate(application_id),
                done=done,
                busy="Generating keys in the ministry token…",
            )

        self.app.push_screen(
            FormModal(
                "Generate keys",
                note=f"Generate the key sets of application #{application_id}?",
            ),
            confirmed,
        )

    # -- deliver ----------------------------------------------------------------------------------
    def default_folder(self) -> Path:
        """Where packages go and come from: ``<state>/packages``, a sub-folder per hop and per
        application below it (``package_folder``)."""
        return state_dir() / "packages"

    def import_folder(self) -> Path:
        """The folder of the packages addressed to this officer's side: a province's hop."""
        province = self.console.province
        return self.default_folder() / f"to-{province}" if province else self.default_folder()

    def action_deliver(self) -> None:
        deliveries = self.query_one("#deliveries", MarkTable)
        order = [str(row.key.value) for row in deliveries.ordered_rows]
        ids = [int(k) for k in order if k in deliveries.marked] or [int(k) for k in order]
        if not ids:
            self.fail(JtcaError("no key awaits delivery", title="Deliver"))
            return
        waiting = {k.id: k for k in self.awaiting}

        def deliver(result: dict[str, str]) -> list[tuple[Path, list[Path]]]:
            base = Path(result["folder"].strip() or str(self.default_folder())).expanduser()
            groups: dict[Path, list[int]] = defaultdict(list)
            for key_id in ids:
                key = waiting.get(key_id)
                where = package_folder(key.to, key.application) if key else Path("other")
                groups[base / where].append(key_id)
            try:
                return [
                    (folder, self.console.deliver(chosen, folder))
                    for folder, chosen in groups.items()
                ]
            except JtcaError as exc:
                raise console_words(exc) from None

        def done(sent: list[tuple[Path, list[Path]]]) -> None:
            deliveries.marked.clear()
            count = sum(len(files) for _, files in sent)
            self.app.notify(
                f"{count} packages written to " + ", ".join(display(folder) for folder, _ in sent),
                title="Delivered",
                timeout=8,
                markup=False,
            )
            self.action_refresh()

        self.app.push_screen(
            FormModal(
                f"Deliver {len(ids)} key{'s' if len(ids) != 1 else ''}",
                [Field("folder", "Write the packages under folder", str(self.default_folder()))],
                note="Marked keys, or all keys awaiting delivery if none is marked. Each hop and "
                "application gets a folder of its own below it: to-<holder>/application-<n>.",
                act=deliver,
                done=done,
                field_for=lambda exc: "" if "transport key" in str(exc) else None,
            )
        )

    # -- import -----------------------------------------------------------------------------------
    def action_import_packages(self) -> None:
        def chosen(result: dict[str, str] | None) -> None:
            if result is None:
                return
            path = Path(result["path"].strip()).expanduser()
            self.work(lambda: self._import(path), done=self._imported, busy="Importing packages…")

        self.app.push_screen(
            FormModal(
                "Import key packages",
                [
                    Field(
                        "path",
                        "A package (.jkp) or a folder of packages (and its sub-folders)",
                        str(self.import_folder()),
                    )
                ],
            ),
            chosen,
        )

    def _import(self, path: Path) -> tuple[list[ImportedKey], list[tuple[str, JtcaError]]]:
        if path.is_dir():
            files = sorted(path.rglob("*.jkp"))
            if not files:
                raise JtcaError(f"no .jkp package in {path}", title="Bad input")
        else:
            files = [path]
        imported: list[ImportedKey] = []
        refused: list[tuple[str, JtcaError]] = []
        for file in files:
            try:
                imported.append(self.console.import_package(file))
            except JtcaError as exc:
                refused.append((file.name, exc))
        return imported, refused

    def _imported(self, outcome: tuple[list[ImportedKey], list[tuple[str, JtcaError]]]) -> None:
        imported, refused = outcome
        # a package imported before (a folder imported again) is not an error beside the
        # success: it is counted in the summary
        replayed = [name for name, exc in refused if getattr(exc, "reason", "") == "replayed"]
        refused = [(name, exc) for name, exc in refused if name not in replayed]
        for name, exc in refused:
            self.app.notify(
                f"{name}: {exc.message}",
                title=exc.title,
                severity="error",
                timeout=10,
                markup=False,
            )
        before = f" ({len(replayed)} imported before, skipped)" if replayed else ""
        if imported:
            self.app.notify(
                f"{len(imported)} keys imported: " + ", ".join(i.label for i in imported) + before,
                title="Imported",
                markup=False,
            )
        elif replayed:
            self.app.notify(
                f"nothing new: {len(replayed)} packages imported before", title="Imported"
            )
        self.action_refresh()

    # -- usage reports ----------------------------------------------------------------------------
    def action_import_usage(self) -> None:
        def chosen(result: dict[str, str] | None) -> None:
            if result is None:
                return
            text = result["path"].strip()
            if not text:
                self.fail(JtcaError("type the path of a usage report", title="Usage report"))
                return
            path = Path(text).expanduser()
            self.work(
                lambda: self.console.import_usage(path),
                done=partial(self._usage_imported, path),
                busy="Importing the usage report…",
            )

        self.app.push_screen(
            FormModal(
                "Import a usage report (第十条, 第十一条)",
                [Field("path", "Usage report (.csv or .json)", placeholder="path of the report")],
                note="Columns key, city, first_use, last_use, used_in. Rows outside your "
                "scope or malformed are refused one by one; the others are kept.",
            ),
            chosen,
        )

    def _usage_imported(self, path: Path, result: city_ops.UsageResult) -> None:
        self.app.notify(
            usage_summary(result), title="Usage report imported", timeout=8, markup=False
        )
        self.app.push_screen(
            ReportModal(
                f"Usage report {path.name}",
                usage_report_text(result),
                failed=bool(result.refused or result.violations),
            )
        )
        self.action_refresh()

    # -- transport keys ---------------------------------------------------------------------------
    def action_transport_key(self) -> None:
        holder = self.console.province or MINISTRY
        self.run_blocking(
            lambda: self.console.transport_token(holder) or "",
            done=partial(self._ask_transport_key, holder),
            quiet=True,
        )

    def _ask_transport_key(self, holder: str, token: str) -> None:
        """The form is never pre-filled with the token of the holder's live transport keys:
        registering retires them, so Enter twice must not do it."""

        def register(result: dict[str, str]) -> TransportKeyInfo:
            who, label = result["holder"].strip(), result["token"].strip()
            if not who:
                raise FieldError("holder", "type 'ministry', a province or a city code")
            if not label:
                raise FieldError("token", "type the label of the token for the new keys")
            return self.console.register_transport_key(who, label)

        def done(row: TransportKeyInfo) -> None:
            self.app.notify(
                f"transport keys of {row.holder} in token {row.token}:\n"
                f"signing key {row.sign_uri}\n"
                f"  public {row.sign_public_key}\n"
                f"encryption key {row.uri}\n"
                f"  public {row.public_key}",
                title="Transport keys registered",
                timeout=12,
                markup=False,
            )

        live = (
            f"{holder}'s live transport keys are in token {token}: registering retires them. "
            if token
            else f"{holder} has no live transport keys. "
        )
        self.app.push_screen(
            FormModal(
                "Register a holder's transport keys",
                [
                    Field("holder", "Holder: 'ministry', a province or a city code", holder),
                    Field(
                        "token",
                        "The holder's token (label, made if missing)",
                        placeholder="label of the token for the new keys",
                    ),
                ],
                note=live + "Two new SM2 key pairs in the holder's token: a signing key (signs "
                "the packages it sends) and an encryption key (packages for it are enveloped to "
                "it), as GM/T 0014/0015 keep them apart. The holder's earlier transport keys are "
                "retired (packages already sealed to them still open).",
                act=register,
                done=done,
            )
        )


COMMAND_LINE_HINT: Final = re.compile(r"\(?jtca city transport-key[^)\n]*\)?")


def console_words(exc: JtcaError) -> JtcaError:
    """An error that points to a command-line command the console has a key for, pointing to
    the key instead (a missing transport key: ``t`` on this screen)."""
    if not COMMAND_LINE_HINT.search(exc.message):
        return exc
    message = COMMAND_LINE_HINT.sub("t on the Cities screen (transport key)", exc.message)
    return JtcaError(message.replace("  ", " "), title=exc.title)


def package_folder(to: str, application: int | None) -> Path:
    """A delivery's folder below the packages folder: one per hop (the next holder) and per
    application: ``to-440000/application-7``."""
    return Path(f"to-{to}") / (f"application-{application}" if application else "no-application")


def display(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def usage_summary(result: city_ops.UsageResult) -> str:
    return (
        f"{result.accepted} kept, {len(result.refused)} refused, "
        f"{len(result.violations)} violations, {len(result.activated)} activated"
    )


def usage_report_text(result: city_ops.UsageResult) -> str:
    """The import's counts, then each refused row (line, field, problem), each violation and
    the keys activated."""
    lines = [usage_summary(result)]
    if result.refused:
        lines += ["", "Refused rows:", f"  {'line':>5}  {'field':<10} problem"]
        lines += [f"  {e.line:>5}  {e.field:<10} {e.problem}" for e in result.refused]
    if result.violations:
        lines += ["", "Violations (keys flagged for suspension):"]
        lines += [
            f"  line {v.line}: {v.key} {v.reason} (used in {v.used_in}, granted {v.granted or '—'})"
            for v in result.violations
        ]
    if result.activated:
        lines += ["", "Activated: " + ", ".join(result.activated)]
    return "\n".join(lines)
