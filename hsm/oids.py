"""jtca's own object identifiers, all in one place (issue #15, point 6).

PLACEHOLDERS until the Ministry of Transport assigns jtca an arc. No OID here is registered to
jtca or to the ministry. They sit under 1.3.6.1.4.1.32473, the IANA Private Enterprise Number
that RFC 5612 reserves "for use in documentation" — it belongs to no real enterprise, so a
placeholder under it can never collide with someone else's production OID, and a reader who
looks it up learns at once that it is not a real assignment. Below it, ``.86`` is jtca's own
node (86, China's country calling code; chosen by us, meaningful only here). When the ministry
assigns an arc, change ``JTCA_ARC`` and nothing else: every jtca OID is derived from it.

Every arc fits in 32 bits (RFC 5280 §4.1.2.2 does not say so, but X.690 parsers in terminals
and pkilint's ``itu.invalid_asn1_syntax`` do: the 2.25.<UUID> OIDs jtca used before issue #15
had a 128-bit arc, which pkilint reports FATAL and a terminal limited to 32-bit arcs refuses).

Sub-arcs of ``JTCA_ARC`` (reserve a number here before using it):

- ``.1`` extended key usages (key purposes, RFC 5280 §4.2.1.12): ``.1.1`` list signing,
  ``.1.2`` officer authentication, ``.1.3`` audit-log signing;
- ``.2`` attributes of key packages (GM/T 0010 signed attributes jtca adds; issue #15 point 3);
- ``.3`` content types of jtca's own signed or enveloped structures;
- ``.4`` and above: free.

Pure constants: this module imports nothing, so any layer (hsm, ca, clients) may use it.
"""

from __future__ import annotations

from typing import Final

# RFC 5612 §2: IANA PEN 32473, "Example Enterprise Number for Documentation Use".
DOCUMENTATION_PEN_ARC: Final = "1.3.6.1.4.1.32473"
# PLACEHOLDER until the ministry assigns an OID: the one line to change then.
JTCA_ARC: Final = f"{DOCUMENTATION_PEN_ARC}.86"

EKU_ARC: Final = f"{JTCA_ARC}.1"  # extended key usages
KEY_PACKAGE_ATTRIBUTE_ARC: Final = f"{JTCA_ARC}.2"  # key-package attributes (reserved)
CONTENT_TYPE_ARC: Final = f"{JTCA_ARC}.3"  # content types (reserved)

# Extended key usage of the list-signing key: issuer whitelists, city lists, CA key lists.
LIST_SIGNING_EKU: Final = f"{EKU_ARC}.1"
# Extended key usage of an officer certificate (issue #12): sign-in and signed approvals.
OFFICER_AUTH_EKU: Final = f"{EKU_ARC}.2"
# Extended key usage of the audit key's certificate (issue #13): the log's checkpoints.
LOG_SIGNING_EKU: Final = f"{EKU_ARC}.3"

# The 2.25.<UUID> placeholders issued before issue #15 (arcs of 128 bits). READ ONLY, for
# migration: verifiers accept a certificate carrying one of these so lists, audit
# certificates and checkpoints made before the change still verify; nothing issues them.
LEGACY_LIST_SIGNING_EKU: Final = "2.25.314018244813644786663921559268712153068"
LEGACY_OFFICER_AUTH_EKU: Final = "2.25.166652005787899299548680334204906300642"
LEGACY_LOG_SIGNING_EKU: Final = "2.25.156941433549926278660178708138188744851"


def arcs_fit_32_bits(dotted: str) -> bool:
    """True if every arc of the dotted OID is below 2**32 (what pkilint and terminals need)."""
    return all(int(arc) < 1 << 32 for arc in dotted.split("."))
