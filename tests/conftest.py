"""Fixtures every test directory shares."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from postgres_server import Postgres, start_for_test, stop
from webhook_receiver import Receiver


@pytest.fixture(scope="module")
def postgres() -> Iterator[Postgres]:
    """A throwaway PostgreSQL for the module (`postgres_server.py`); skips the module
    when PostgreSQL is not installed, unless HOPPER_REQUIRE_POSTGRES=1."""
    pg = start_for_test()
    yield pg
    stop(pg)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A webhook receiver on loopback (`webhook_receiver.py`), closed after the test."""
    r = Receiver()
    yield r
    r.close()
