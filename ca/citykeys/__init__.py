"""One city, one key (一城一密): the city key lifecycle of 第九至十一条.

- ``workflow``: transport keys; generate an approved application's key sets in the ministry
  token; deliver them as key packages to the province and on to the city; import them.
- ``renewal``: successors with the policy's overlap; the sweep that supersedes and expires.
- ``usage``: activation and usage reports from the data exchange; scope violations.
- ``misuse``: suspend, resume, revoke, dormant cleanup and material destruction under dual
  control (pending actions and their approvers).
- ``queries``: what officers look at (expiring, dormant, suspended, violations), the report,
  and the purge of records past their retention (第二十九条).
"""
