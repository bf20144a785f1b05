"""Run in a child process by the crash harness: every key object of every token of a state folder
whose PIN file lies beside the tokens (the ministry's and the demo sites'; an officer's own token
keeps its PIN elsewhere), as JSON ``{token: [[label, id hex, class], …]}``.

A child process, because python-pkcs11 reads SoftHSM2's token folder once per process."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pkcs11
from pkcs11 import Attribute, ObjectClass


def main(state: Path) -> None:
    from ca.vault.embedded import EmbeddedVault
    from hsm.pkcs11.token import TokenError

    vault = EmbeddedVault(state)
    found: dict[str, list[list[str]]] = {}
    try:
        for pin_file in sorted((state / "softhsm2").glob("*.pin")):
            label = pin_file.stem
            try:
                store = vault.store(label)
            except TokenError as exc:
                if exc.title != "Token missing":
                    raise
                # a PIN file written before its token was made (the order that never leaves
                # a token nobody can open): the next creation of the token writes it again
                continue

            def collect(session: pkcs11.Session) -> list[list[str]]:
                rows = []
                for cls, name in (
                    (ObjectClass.PRIVATE_KEY, "private"),
                    (ObjectClass.SECRET_KEY, "secret-key"),
                ):
                    for obj in session.get_objects({Attribute.CLASS: cls}):
                        if cls == ObjectClass.SECRET_KEY and obj[Attribute.TRUSTED]:
                            continue  # the SO's trusted wrapping key, made with the token (#15)
                        rows.append(
                            [str(obj[Attribute.LABEL]), bytes(obj[Attribute.ID]).hex(), name]
                        )
                return sorted(rows)

            found[label] = store.token.run(collect)
    finally:
        vault.close()
    print(json.dumps(found))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
