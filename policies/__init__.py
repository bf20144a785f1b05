"""Policy schema, the default policy files and pure evaluation (no I/O).

Filled in by the authority issue (#4); nothing here yet is imported by the product.
"""
