"""Publishing the signed lists (issue #6, 第十二条, 第三十四条).

- ``sources``: each list's entries, from the authority's records (issuers and their interop
  certificates, cities whose keys are installed, central CA keys);
- ``publisher``: build, self-check as a terminal would, sign, write atomically, keep every
  version, under a lock; publish when content changed or nextUpdate nears; emergency publish;
- ``acks``: operators, their load reports, who is overdue past 15 days.
"""
