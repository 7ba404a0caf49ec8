-- Run once by the postgres image, on first start with an empty data volume only
-- (/docker-entrypoint-initdb.d). The Airflow metadata database (POSTGRES_DB=airflow) is created
-- by the image itself; this adds the MLflow tracking database, owned by the same user.
CREATE DATABASE mlflow;
