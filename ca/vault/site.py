"""The tokens a site's client reaches, by label: the embedded SoftHSM2 of the state folder, or
the site's own PKCS#11 module with a PIN source it names (see ``ca.site``)."""

# The named exception to "ca.cli imports no hsm" (issue #11): a site's own token.
from __future__ import annotations

from pathlib import Path

from ca.core.errors import BadInput
from ca.vault.embedded import EmbeddedVault
from hsm.pkcs11.keys import KeyStore
from hsm.pkcs11.token import PinSource, PromptPin, Token, pin_source_from_spec


class SiteVault:
    """``store(label)`` opens a token of this site once. Without ``module`` it is the embedded
    default (SoftHSM2 under ``state``, PIN files beside the tokens; ``create`` makes a missing
    token, for a holder's first transport key); with ``module`` the site's own PKCS#11 module,
    the PIN from ``pin_source`` (``env:VAR``, ``file:PATH`` or ``prompt``, the default)."""

    def __init__(
        self,
        *,
        module: str | None = None,
        pin_source: str | None = None,
        state: Path | None = None,
        create: bool = False,
    ) -> None:
        self._module = module
        self._pin: PinSource = PromptPin()
        if module is not None:
            if pin_source:
                self._pin = pin_source_from_spec(pin_source)
        elif pin_source is not None:
            raise BadInput(
                f"--pin-source {pin_source}: goes with --module (the embedded default keeps "
                "the PIN files beside its tokens)"
            )
        self._embedded = EmbeddedVault(state, create=create) if module is None else None
        self._open: dict[str, Token] = {}

    @property
    def describe(self) -> str:
        return f"PKCS#11 module {self._module}" if self._module else "the embedded SoftHSM2"

    def store(self, token_label: str) -> KeyStore:
        if self._embedded is not None:
            return self._embedded.store(token_label)
        if token_label not in self._open:
            self._open[token_label] = Token(token_label, self._pin, module=self._module)
        return KeyStore(self._open[token_label])

    def close(self) -> None:
        if self._embedded is not None:
            self._embedded.close()
        for token in self._open.values():
            token.close()
        self._open.clear()

    def __enter__(self) -> SiteVault:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
