"""The store's URL and database passwords, kept from child code: Ray's processes start without them in
their environment (`without_secrets`), and a worker drops any it got from the node it runs on
(`strip_secrets`)."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

# variables that hold the store's URL or a database password: child code never needs them
SECRET_ENV = ("L2L_STORAGE", "L2L_TEST_POSTGRES_URL", "PGPASSWORD", "DATABASE_URL")
_URL_WITH_PASSWORD = re.compile(r"[A-Za-z][\w+.-]*://[^/\s:@]*:[^/\s@]+@")


def secret_names(environ: Mapping[str, str]) -> list[str]:
    """The variables of ``environ`` that hold a secret: the store's URL, a password, any URL with a password."""
    return sorted(k for k, v in environ.items() if k in SECRET_ENV or _URL_WITH_PASSWORD.search(v))


def strip_secrets() -> None:
    """Drop the secrets from this process's environment (a worker, before any child code runs in it)."""
    for name in secret_names(os.environ):
        os.environ.pop(name, None)


@contextmanager
def without_secrets() -> Iterator[None]:
    """The secrets are out of ``os.environ`` while Ray starts its processes (which inherit it), then back."""
    saved = {name: os.environ.pop(name) for name in secret_names(os.environ)}
    try:
        yield
    finally:
        os.environ.update(saved)
