"""Everything that touches key material: PKCS#11 tokens and SM2/SM3/SM4 in software.

This package imports nothing else of jtca (see the import-linter contracts in pyproject.toml).
"""
