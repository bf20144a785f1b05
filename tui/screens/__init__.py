"""The console's screens, in navigation order: (module, class). Each module holds one screen
(a ``tui.screens.base.ConsoleScreen``) and is imported when the console starts."""

from __future__ import annotations

SCREENS: tuple[tuple[str, str], ...] = (
    ("tui.screens.dashboard", "DashboardScreen"),  # 1
    ("tui.screens.keys", "KeysScreen"),  # 2
    ("tui.screens.cities", "CitiesScreen"),  # 3
    ("tui.screens.approvals", "ApprovalsScreen"),  # 4
    ("tui.screens.issuers", "IssuersScreen"),  # 5
    ("tui.screens.publication", "PublicationScreen"),  # 6
    ("tui.screens.cleanup", "CleanupScreen"),  # 7
    ("tui.screens.audit", "AuditScreen"),  # 8
    ("tui.screens.ceremony", "CeremonyScreen"),  # 9
)
