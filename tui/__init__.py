"""The Textual console: the only package that imports textual (issue #7)."""
