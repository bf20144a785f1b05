"""The witnessed Merkle log (issue #13).

Pure (no SQL, no PKCS#11, no HTTP: an auditor verifies with these alone): RFC 9162 §2.1 tree
hashing with SM3, inclusion and consistency proofs (``merkle``), the byte-exact entry encoding
(``entry``), C2SP signed-note checkpoints and cosignatures (``note``), verification of a log and
its proofs (``verify``, ``proofbundle``), trust anchors (``anchors``) and the checkpoint folder's
layout (``checkpoint_folder``).

The authority's side: ``audit`` keeps the tree in the database, appends every audit event in
the transaction of the change it records, and seals entries.
"""
