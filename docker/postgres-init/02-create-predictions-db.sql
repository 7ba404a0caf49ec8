-- Run once by the postgres image, on first start with an empty data volume only. The model
-- gateway's prediction log (FACTORY_PREDICTION_DB_URI), written by model-gateway and read by the
-- drift and canary DAGs on the Airflow workers.
CREATE DATABASE predictions;
