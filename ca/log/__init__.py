"""The witnessed Merkle log (issue #13), its pure part: RFC 9162 §2.1 tree hashing with SM3,
inclusion and consistency proofs (``merkle``), the byte-exact entry encoding (``entry``), and
C2SP signed-note checkpoints and cosignatures (``note``). No SQL, no PKCS#11, no HTTP: an
auditor verifies with these alone. Storage lives in ``ca.audit`` (the database's tree)."""
