"""The ops console's web pages (fleet and model view), served inside the Airflow UI by the plugin in
model_factory.airflow.plugin. No Airflow import here: the plugin passes in Airflow's login check,
its permission check and its metadata, so the pages are testable on their own."""
