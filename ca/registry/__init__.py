"""The registry: provinces and prefecture-level cities (GB/T 2260) and issuer ids.

``ca.registry.divisions`` is pure (no I/O beyond reading the shipped file in
``default_divisions``); ``ca.registry.issuers`` keeps the registered QR issuers in the database.
"""

from ca.registry.divisions import (
    DATA_FILE,
    Division,
    Divisions,
    InvalidIssuerId,
    RegistryError,
    default_divisions,
    load_divisions,
    validate_issuer_id,
)

__all__ = [
    "DATA_FILE",
    "Division",
    "Divisions",
    "InvalidIssuerId",
    "RegistryError",
    "default_divisions",
    "load_divisions",
    "validate_issuer_id",
]
