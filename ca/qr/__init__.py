"""The transport QR code of the annex.

- ``codec`` (pure): the byte-exact payload of docs/qr.md, encoded and decoded; ``spec`` (pure):
  the annex's contradictions, reported with figures, never silently fixed;
- ``cert_request`` (pure): a QR issuer's signed request for an interop certificate;
- ``issuance``: the central QR CA issuing interop certificates (serials never reused) and
  revoking them;
- ``issue``, ``verify`` (pure): an issuer making user certificates and ride codes, an acceptor
  checking one (whitelist, expiry, every signature);
- ``inspection``: ``jtca qr inspect``, every field with its offset and a verdict per signature;
- ``image``: the QR image; ``demo``: ``jtca qr demo``, the whole chain with demo tokens.
"""
