"""Policy schema, the default policy files and pure evaluation (no I/O).

``rules.py`` parses and evaluates ``authority.toml`` (the shipped default); ``ceremonies/``
holds the example root ceremony file. Nothing here imports the rest of jtca.
"""
