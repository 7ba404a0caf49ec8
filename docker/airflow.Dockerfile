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

# FACTORY_HOME (local scratch) and the simple auth manager's password file live here; group 0
# must be able to write them because the compose file may run the image as another uid.
RUN mkdir -p /opt/airflow/factory /opt/airflow/auth \
 && chmod g+rwx /opt/airflow/factory /opt/airflow/auth
