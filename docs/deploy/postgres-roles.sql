-- jtca's database and its two roles (issue #16, docs/deploy.md "PostgreSQL"):
--   jtca_owner    owns the database, its schema and every table: it runs the migrations
--                 (JTCA_DATABASE_URL=<owner URL> jtca db upgrade) and nothing else;
--   jtca_service  the login of jtca serve: SELECT, INSERT, UPDATE, DELETE on the tables and the
--                 use of their sequences; no CREATE, ALTER or DROP of anything.
-- Run once, as a PostgreSQL superuser, on the database server:
--   sudo -u postgres psql -v ON_ERROR_STOP=1 -f postgres-roles.sql
-- then give each login its password (never in this file):
--   sudo -u postgres psql -c '\password jtca_owner'  and  -c '\password jtca_service'
-- Tables the owner creates later (every migration) get the service's rights by the default
-- privileges below; nothing has to be granted again after an upgrade.

CREATE ROLE jtca_owner LOGIN;
CREATE ROLE jtca_service LOGIN;
CREATE DATABASE jtca OWNER jtca_owner ENCODING 'UTF8' TEMPLATE template0;
REVOKE ALL ON DATABASE jtca FROM PUBLIC;
GRANT CONNECT ON DATABASE jtca TO jtca_service;

\connect jtca
-- the schema belongs to the owner; nobody else may create objects in it
ALTER SCHEMA public OWNER TO jtca_owner;
REVOKE ALL ON SCHEMA public FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO jtca_service;
-- what the owner's migrations create, the service may read and write, never change
ALTER DEFAULT PRIVILEGES FOR ROLE jtca_owner IN SCHEMA public
    GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO jtca_service;
ALTER DEFAULT PRIVILEGES FOR ROLE jtca_owner IN SCHEMA public
    GRANT USAGE, SELECT, UPDATE ON SEQUENCES TO jtca_service;
-- a database restored by pg_restore --no-owner --role=jtca_owner (docs/deploy.md "Restore")
-- gets the same rights by running these two grants once more:
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO jtca_service;
GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA public TO jtca_service;
