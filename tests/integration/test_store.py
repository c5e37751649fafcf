"""The store on both databases: migrations, exact money, UTC time, unique keys."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, select, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError, StatementError

from backfill.store.db import MIGRATIONS, connect, migrate, sessions
from backfill.store.models import Base, IdempotencyRecord, Lease, SpotPrice, Tenant


@pytest.fixture
def db(database_url: str) -> Iterator[Engine]:
    engine = connect(database_url)
    migrate(engine)
    yield engine
    engine.dispose()


def test_migrations_build_every_table_and_are_at_head(db: Engine) -> None:
    assert set(Base.metadata.tables) <= set(inspect(db).get_table_names())
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    head = ScriptDirectory.from_config(config).get_current_head()
    with db.connect() as conn:
        assert conn.execute(text("select version_num from alembic_version")).scalar() == head
    migrate(db)  # running them again changes nothing


def test_the_migrations_build_the_schema_the_models_describe(db: Engine) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    with db.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": False})
        differences = compare_metadata(context, Base.metadata)
    assert differences == []


def test_money_is_exact_and_time_comes_back_utc(db: Engine) -> None:
    make = sessions(db)
    eastern = timezone(timedelta(hours=-5))
    prices = [Decimal("0.000001"), Decimal("123456789.123456"), Decimal("2.99"), Decimal("0")]
    with make() as session:
        for i, price in enumerate(prices):
            at = datetime(2026, 3, 1, 12, 0, i, tzinfo=eastern)
            session.add(SpotPrice(pool="r/H100", at=at, price=price))
        session.commit()
    with make() as session:
        rows = list(session.scalars(select(SpotPrice).order_by(SpotPrice.at)))
    assert [row.price for row in rows] == prices
    assert all(isinstance(row.price, Decimal) for row in rows)
    assert rows[0].at == datetime(2026, 3, 1, 17, 0, 0, tzinfo=UTC)
    assert rows[0].at.tzinfo is not None and rows[0].at.utcoffset() == timedelta(0)


def test_values_the_store_must_refuse(db: Engine) -> None:
    make = sessions(db)
    with make() as session, pytest.raises(StatementError, match="6 decimal places"):
        session.add(SpotPrice(pool="p", at=datetime.now(UTC), price=Decimal("0.0000001")))
        session.commit()
    with make() as session, pytest.raises(StatementError, match="naive"):
        session.add(SpotPrice(pool="p", at=datetime(2026, 1, 1), price=Decimal(1)))
        session.commit()
    with make() as session:
        assert session.scalars(select(SpotPrice)).all() == []


def test_an_idempotency_key_is_unique_per_tenant(db: Engine) -> None:
    make = sessions(db)
    now = datetime.now(UTC)
    with make() as session:
        for tenant in ("ten_a", "ten_b"):
            session.add(Tenant(id=tenant, name=tenant, created_at=now))
        session.flush()
        for tenant in ("ten_a", "ten_b"):
            session.add(
                Lease(
                    id=f"lse_{tenant}",
                    tenant_id=tenant,
                    tier="spot",
                    pool="r/H100",
                    gpus=1,
                    state="running",
                    created_at=now,
                    allocation={},
                )
            )
        session.flush()
        for tenant in ("ten_a", "ten_b"):
            session.add(
                IdempotencyRecord(
                    tenant_id=tenant,
                    key="k",
                    request_hash="h",
                    lease_id=f"lse_{tenant}",
                    created_at=now,
                )
            )
        session.commit()
    with make() as session, pytest.raises(IntegrityError):
        session.add(
            IdempotencyRecord(
                tenant_id="ten_a", key="k", request_hash="h2", lease_id="lse_ten_a", created_at=now
            )
        )
        session.commit()


def test_leases_must_belong_to_a_tenant(db: Engine) -> None:
    with sessions(db)() as session, pytest.raises(IntegrityError):
        session.add(
            Lease(
                id="lse_x",
                tenant_id="ten_missing",
                tier="spot",
                pool="r/H100",
                gpus=1,
                state="running",
                created_at=datetime.now(UTC),
                allocation={},
            )
        )
        session.commit()
