"""The use-case layer: one function per operation of ``ca.ops``, taking the calling officer and
a typed request, returning a typed result. The policy check, dual control, the action and its
audit event happen here and nowhere else; ``ca.api`` (HTTP) is a thin adapter over it, and the
command line and the console reach it only through HTTP (``ca.client``).

Only this layer (and ``ca.api`` above it) opens the database and the ministry's tokens.
"""
