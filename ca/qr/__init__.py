"""The transport QR code of the annex: codec, issuing, accepting, images, spec check."""
