"""The Alembic migrations build exactly the tables ``storage/schema.py`` declares (issue 22 item 4): a change to one
without the other fails here, on SQLite and on PostgreSQL, instead of at an operator's ``ketamine-cds migrate``."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from storage import schema
from storage.store import schema_status, upgrade_schema


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    url = sa.engine.make_url(f"sqlite+pysqlite:///{tmp_path / 'state.sqlite3'}")
    if request.param == "postgresql":
        created = str(request.getfixturevalue("postgres").create_database(f"t_{uuid.uuid4().hex[:12]}"))
        url = sa.engine.make_url(created).set(drivername="postgresql+psycopg")
    found = sa.create_engine(url)
    yield found
    found.dispose()


def _differences(engine: sa.Engine) -> list[Any]:
    with engine.connect() as conn:
        return list(compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}),
                                     schema.metadata))


def test_the_migrations_produce_the_declared_schema(engine: sa.Engine) -> None:
    before, head = upgrade_schema(engine)
    assert before is None and schema_status(engine) == (head, head)
    assert _differences(engine) == []


def test_the_comparison_sees_a_table_the_migrations_do_not_build(engine: sa.Engine) -> None:
    upgrade_schema(engine)
    extra = sa.Table("not_migrated", schema.metadata, sa.Column("id", sa.String(10), primary_key=True))
    try:
        assert [d[0] for d in _differences(engine)] == ["add_table"]
    finally:
        schema.metadata.remove(extra)
