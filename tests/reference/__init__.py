"""Independent references the tests check jtca's own codecs against (not used by jtca)."""
