"""Airflow loads this file from the plugins folder; everything lives in the installed package."""

from model_factory.airflow.plugin import ModelFactoryPlugin

__all__ = ["ModelFactoryPlugin"]
