"""Shared state: issued cards, feedback, JWT replay, SMART launches and logins (the table smart_session), shown cards,
service secrets.

A feedback database written before migrations existed (``issued_card`` and ``feedback`` created by the service
itself) is adopted: its tables are kept, and the ``issuer`` column added when it predates feedback binding.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    existing = set(sa.inspect(op.get_bind()).get_table_names())
    if "issued_card" not in existing:
        op.create_table(
            "issued_card",
            sa.Column("card_uuid", sa.String(64), primary_key=True),
            sa.Column("service", sa.String(100), nullable=False),
            sa.Column("hook_instance", sa.String(200), nullable=False),
            sa.Column("kind", sa.String(50), nullable=False),
            sa.Column("indicator", sa.String(20), nullable=False),
            sa.Column("suggestion_uuids", sa.Text, nullable=False),
            sa.Column("issued_at", sa.Text, nullable=False),
            sa.Column("issuer", sa.Text),
        )
    elif "issuer" not in {c["name"] for c in sa.inspect(op.get_bind()).get_columns("issued_card")}:
        op.add_column("issued_card", sa.Column("issuer", sa.Text))
    if "feedback" not in existing:
        op.create_table(
            "feedback",
            sa.Column("card_uuid", sa.String(64), primary_key=True),
            sa.Column("outcome", sa.String(20), primary_key=True),
            sa.Column("outcome_timestamp", sa.String(64), primary_key=True),
            sa.Column("service", sa.String(100), nullable=False),
            sa.Column("hook_instance", sa.String(200)),
            sa.Column("override_code", sa.Text),
            sa.Column("override_display", sa.Text),
            sa.Column("user_comment", sa.Text),
            sa.Column("accepted_suggestions", sa.Text, nullable=False),
            sa.Column("issuer", sa.Text),
            sa.Column("received_at", sa.Text, nullable=False),
        )
    op.create_table(
        "jwt_replay",
        sa.Column("issuer", sa.String(500), primary_key=True),
        sa.Column("jti", sa.String(500), primary_key=True),
        sa.Column("expires_at", sa.Float, nullable=False),
    )
    op.create_index("ix_jwt_replay_expires_at", "jwt_replay", ["expires_at"])
    for name in ("smart_launch", "smart_session"):
        key = "state" if name == "smart_launch" else "id"
        op.create_table(
            name,
            sa.Column(key, sa.String(100), primary_key=True),
            sa.Column("browser_digest", sa.String(64), nullable=False),
            sa.Column("created", sa.Float, nullable=False),
            sa.Column("sealed", sa.LargeBinary, nullable=False),
        )
        op.create_index(f"ix_{name}_created", name, ["created"])
    op.create_table(
        "shown_card",
        sa.Column("digest", sa.String(64), primary_key=True),
        sa.Column("expires_at", sa.Float, nullable=False),
    )
    op.create_index("ix_shown_card_expires_at", "shown_card", ["expires_at"])
    op.create_table(
        "service_secret",
        sa.Column("name", sa.String(100), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
    )
