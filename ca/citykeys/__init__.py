"""One city, one key (一城一密): the city key lifecycle of 第九至十一条.

- ``applications``: a province applies for its cities' key sets; the ministry approves.
- ``workflow``: transport keys; generate an approved application's key sets in the ministry
  token; deliver them as key packages to the province and on to the city; import them.
- ``sealing``: one city key sealed into a key package, the same way on both hops.
- ``lifecycle`` (pure): the key states and the events between them, as a state machine.
- ``expiry`` (pure): where a key stands in time under its class's validity and renewal window.
- ``renewal``: successors with the policy's overlap; the sweep that supersedes and expires.
- ``usage_report`` (pure): activation and usage reports from the data exchange, parsed row by
  row, and the scope violations in them; ``usage_import``: importing them into the records.
- ``misuse``: suspend, resume, revoke, dormant cleanup and material destruction under dual
  control (pending actions and their approvers).
- ``queries``: what officers look at (expiring, dormant, suspended, violations) and the purge
  of records past their retention (第二十九条).
- ``report``: the expiry report of the keys in the database; ``report_format`` (pure) writes it
  as CSV, Markdown and a timeline chart.
- ``common``: what these modules share (errors, the vault, the one place a key changes state).
"""
