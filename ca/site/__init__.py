"""Token work at a province's or a city's site (issue #11, point 5: tokens stay at their sites).

A province or a city holds its own token; the authority service never sees it or its PIN. The
steps that need such a token run here, on the site's client, and report to the service, which
checks each report against its records and the package itself, records it and audits it:

- a site's **transport key** is made in the site's token; only its public part is registered;
- **import**: the client asks the service what a package needs (its record, the recipient's
  transport key it is sealed to, the sender's keys to trust), opens it into the local token
  with every check of ``hsm.envelope``, and reports the import; a refused report destroys the
  object just made (no key without its record);
- **hand-on** (province → city): the province's client seals the key from its own token to the
  city's transport key (fetched from the service), signs with its own transport key, writes the
  package and reports it;
- a **lost package** (recorded, its file never written): the addressee fetches it again from
  the service, which keeps every package's bytes with its record;
- **destruction** (``ca.site.destruction``): destroy-material destroys the ministry's copy at
  the service; each province's and city's copy awaits destruction at its site, whose client
  destroys it in its own token and reports it.

This package, with ``ca/cli/site.py`` and ``ca/cli/token.py``, is the named exception to "the
command line imports no ``hsm``": it imports ``hsm`` and the client (``ca.client``, ``ca.ops``),
and never ``ca.store``, sqlmodel, sqlalchemy, ``ca.service`` or ``ca.authority``.

Which token: ``SiteVault`` (``ca.vault.site``). In the embedded default it is the SoftHSM2 of the
state folder, each token with the PIN file jtca keeps beside it, named by the label the holder's
transport key was registered with. A real site names its PKCS#11 module (``--module PATH``, or
``JTCA_PKCS11_MODULE``) and where the PIN comes from (``--pin-source env:VAR | file:PATH |
prompt``); the token is still found by the label registered with its transport key.
"""
