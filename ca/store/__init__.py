"""Storage: sqlmodel tables, Alembic migrations, the database of the authority.

SQLite under the state folder by default; PostgreSQL through ``JTCA_DATABASE_URL``
(``postgresql+psycopg://…``) for multi-operator deployments.
"""
