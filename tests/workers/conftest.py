from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

import workers.tasks  # noqa: F401 - registers the shared tasks with every app the tests build


@pytest.fixture(scope="session", autouse=True)
def _no_inherited_celery_env() -> Iterator[None]:
    """Celery prefers CELERY_BROKER_URL & co. from the environment over any configured value,
    and workers inherit the environment: keep the caller's CELERY_* variables out entirely."""
    with pytest.MonkeyPatch.context() as mp:
        for name in list(os.environ):
            if name.startswith("CELERY_"):
                mp.delenv(name)
        yield
