from __future__ import annotations

from typing import Any


def new_model(*args: Any, **kwargs: Any) -> Any:
    """``model_factory.scaffold.new_model`` with the settings the environment sets, as the CLI
    passes them."""
    from model_factory.scaffold import new_model as scaffold
    from model_factory.settings import FactorySettings

    return scaffold(*args, settings=FactorySettings.from_env(), **kwargs)
