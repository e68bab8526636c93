#!/bin/sh
# Runs once, when the PostgreSQL volume is first initialised (docker-entrypoint-initdb.d): one
# role and database for the assistants store (with pgvector, created here by the superuser so
# the store's migration finds it), and one role allowed to create Temporal's two databases
# (temporalio/auto-setup creates `temporal` and `temporal_visibility` itself).
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
  --set assistants_password="$STORE_DB_PASSWORD" \
  --set temporal_password="$TEMPORAL_DB_PASSWORD" <<'SQL'
CREATE ROLE assistants LOGIN PASSWORD :'assistants_password';
CREATE DATABASE assistants OWNER assistants;
CREATE ROLE temporal LOGIN CREATEDB PASSWORD :'temporal_password';
\connect assistants
CREATE EXTENSION IF NOT EXISTS vector;
SQL
