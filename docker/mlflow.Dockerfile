# MLflow tracking server: PostgreSQL backend store, artifacts proxied to MinIO (S3).
# The mlflow and boto3 pins must equal requirements.txt's (tests/unit/test_compose.py).
FROM python:3.11.13-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

# Flask-WTF: MLflow's basic-auth app (mlflow[auth]); pinned as in requirements-dev.txt.
RUN pip install --no-cache-dir \
        mlflow==3.17.2 \
        Flask-WTF==1.3.0 \
        psycopg2-binary==2.9.13 \
        boto3==1.44.5 \
 && useradd --create-home --uid 10001 mlflow \
 && mkdir -p /var/lib/mlflow-auth && chown mlflow /var/lib/mlflow-auth

USER mlflow
WORKDIR /home/mlflow
EXPOSE 5000
