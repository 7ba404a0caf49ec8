# Airflow image for the model factory: the official image plus the project's pinned dependencies.
# The Airflow version in this tag must equal the apache-airflow pin in requirements.txt, and the
# Python version must equal the one requirements.txt was compiled for (tests/unit/test_compose.py).
FROM apache/airflow:3.3.2-python3.11

# The official image runs as the "airflow" user, which is the user pip must install as.
COPY requirements.txt /requirements.txt

# requirements.txt pins apache-airflow==3.3.2 itself, so pip cannot silently up/downgrade Airflow.
# `pip check` fails the build if the project's pins broke a provider preinstalled in the image
# (celery, postgres, redis, amazon...), which requirements.txt does not know about.
RUN pip install --no-cache-dir -r /requirements.txt \
 && pip check

# The factory itself, installed as a package (its `model-factory` console script included). The specs
# and data scientists' code and templates come from the include/ mount (docker-compose.yaml).
COPY --chown=airflow:0 pyproject.toml README.md /opt/model-factory/
COPY --chown=airflow:0 include/model_factory /opt/model-factory/include/model_factory
COPY --chown=airflow:0 include/model_factory_dev /opt/model-factory/include/model_factory_dev
RUN pip install --no-cache-dir --no-deps /opt/model-factory

# Lineage inside the image, which has no .git: the revision is a build argument
# (`FACTORY_CODE_REVISION=$(git rev-parse HEAD) docker compose build`), the locked requirements
# are the file this image was built from.
ARG FACTORY_CODE_REVISION=unknown
ENV FACTORY_CODE_REVISION=${FACTORY_CODE_REVISION} \
    FACTORY_REQUIREMENTS_FILE=/requirements.txt

# FACTORY_HOME (local scratch) and the simple auth manager's password file live here; group 0
# must be able to write them because the compose file may run the image as another uid.
RUN mkdir -p /opt/airflow/factory /opt/airflow/auth \
 && chmod g+rwx /opt/airflow/factory /opt/airflow/auth
