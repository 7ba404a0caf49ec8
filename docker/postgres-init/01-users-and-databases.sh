#!/bin/sh
# Run once by the postgres image, on first start with an empty data volume only
# (/docker-entrypoint-initdb.d). The Airflow metadata database (POSTGRES_DB=airflow) belongs to
# the superuser POSTGRES_USER, which only Airflow uses. MLflow and the prediction log get their
# own users, each owning only its database, with no access to the others:
#   mlflow       owns "mlflow"       (MLflow's backend store)           MLFLOW_DB_PASSWORD
#   predictions  owns "predictions"  (the gateway's log; the drift and  PREDICTIONS_DB_PASSWORD
#                                     canary DAGs read it and write decisions)
# Passwords come from .env (docker-compose.yaml passes them to this container). Data volume
# created before these users existed: run the same statements by hand (see the README).
set -eu
: "${MLFLOW_DB_PASSWORD:?}" "${PREDICTIONS_DB_PASSWORD:?}"

psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
    -v mlflow_password="$MLFLOW_DB_PASSWORD" -v predictions_password="$PREDICTIONS_DB_PASSWORD" <<'SQL'
CREATE ROLE mlflow LOGIN PASSWORD :'mlflow_password' NOSUPERUSER NOCREATEDB NOCREATEROLE;
CREATE ROLE predictions LOGIN PASSWORD :'predictions_password' NOSUPERUSER NOCREATEDB NOCREATEROLE;
CREATE DATABASE mlflow OWNER mlflow;
CREATE DATABASE predictions OWNER predictions;
-- Nobody but the owner (and the superuser) connects to a database.
REVOKE ALL ON DATABASE airflow FROM PUBLIC;
REVOKE ALL ON DATABASE mlflow FROM PUBLIC;
REVOKE ALL ON DATABASE predictions FROM PUBLIC;
SQL
