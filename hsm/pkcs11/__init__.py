"""PKCS#11 tokens through python-pkcs11: opening, sessions, keys, signing, moving keys."""
