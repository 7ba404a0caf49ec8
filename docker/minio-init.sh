#!/bin/sh
# One-shot job (service minio-init): creates the buckets and a non-root S3 user for the factory
# and MLflow, limited to those buckets. Idempotent, so it runs again on every `docker compose up`.
set -eu

BUCKETS="factory mlflow"
POLICY=factory-rw

mc alias set local http://minio:9000 "$MINIO_ROOT_USER" "$MINIO_ROOT_PASSWORD"

for bucket in $BUCKETS; do
    mc mb --ignore-existing "local/$bucket"
done

mc admin policy create local "$POLICY" /etc/minio-init/factory-policy.json
mc admin user add local "$S3_USER_ACCESS_KEY" "$S3_USER_SECRET_KEY"
if ! mc admin user info local "$S3_USER_ACCESS_KEY" | grep -q "$POLICY"; then
    mc admin policy attach local "$POLICY" --user "$S3_USER_ACCESS_KEY"
fi
echo "minio-init: buckets ($BUCKETS) and user $S3_USER_ACCESS_KEY ready"
