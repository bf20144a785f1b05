"""X.509 certificates with SM2 keys the authority issues (``x509``): the ministry root, the
central QR CA, the list signer, the audit log key, the officer CA and officers."""
