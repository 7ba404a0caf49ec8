"""The Analyzer: where data scientists get stuck with the factory, read from what they do.

events   every action a person causes, kept locally in the factory's own database
collect  events read from Airflow's REST API, the store, the registry and the decisions table
signals  per user and lifecycle stage: actions, errors by kind, time to complete, retries
segments K-means on the action and time signals: Beginner / Intermediate / Expert
rules    recurring errors classed Simplicity of Platform (SoP) or Education & Training (ET)
report   the whole analysis as JSON and as a table
"""
