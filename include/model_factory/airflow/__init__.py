"""The Airflow layer: building blocks, sensors, the template registry and the shipped templates.

The only place (with ``dags/``) that imports Airflow; every task calls the core library.
"""
