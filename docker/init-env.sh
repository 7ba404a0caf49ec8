#!/bin/sh
# Creates .env from .env.example, replacing every CHANGE_ME with a fresh random value.
# Usage (from anywhere): docker/init-env.sh  -- refuses to overwrite an existing .env.
set -eu

cd "$(dirname "$0")/.."
if [ -e .env ]; then
    echo ".env already exists; not overwriting it" >&2
    exit 1
fi

umask 077
while IFS= read -r line || [ -n "$line" ]; do
    case "$line" in
        AIRFLOW_FERNET_KEY=CHANGE_ME)
            # url-safe base64 of 32 random bytes: a valid Fernet key
            echo "AIRFLOW_FERNET_KEY=$(openssl rand -base64 32 | tr '+/' '-_')" ;;
        *=CHANGE_ME)
            echo "${line%%=*}=$(openssl rand -hex 24)" ;;
        *)
            echo "$line" ;;
    esac
done < .env.example > .env
echo "wrote .env (mode 600); keep it out of version control"
