"""A bulk write's larger page cache is given back, whatever happens during the write."""

from __future__ import annotations

import pytest
from sqlalchemy import Connection

from campaigns.runtime import Runtime
from campaigns.sqlite_bulk import ROOMY_CACHE_KIB, roomy_cache


def _cache_size(connection: Connection) -> int:
    return int(connection.exec_driver_sql("PRAGMA cache_size").scalar_one())


def test_the_cache_is_larger_during_the_write_and_its_own_size_after(rt: Runtime) -> None:
    with rt.engine.connect() as connection:
        if connection.dialect.name != "sqlite":
            with roomy_cache(connection):  # PostgreSQL: nothing to change, nothing sent
                assert connection.exec_driver_sql("SELECT 1").scalar_one() == 1
            return
        connection.exec_driver_sql("PRAGMA cache_size = -3000")
        with roomy_cache(connection):
            assert _cache_size(connection) == -ROOMY_CACHE_KIB
        assert _cache_size(connection) == -3000
        with pytest.raises(RuntimeError), roomy_cache(connection):
            raise RuntimeError("the write failed")
        assert _cache_size(connection) == -3000
