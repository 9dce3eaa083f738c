"""The tables, as SQLAlchemy Core metadata. Alembic migrations (``migrations/versions``) create and change them;
this module is what the queries are written against. Times are POSIX seconds (float): the same on both backends."""

from __future__ import annotations

from sqlalchemy import Column, Float, Index, LargeBinary, MetaData, String, Table, Text

metadata = MetaData()
#: The JWT replay store's key sizes (the verifier's strings are checked against them before they are stored).
ISSUER_MAX, JTI_MAX = 500, 500
#: The size of a SMART launch's state and a login's id. The app mints both (43 and 32 characters); a value a request
#: carries that could not be one (longer, a NUL, a lone surrogate) is looked up as unknown, never sent to the database.
SMART_KEY_MAX = 100

issued_card = Table(
    "issued_card", metadata,
    Column("card_uuid", String(64), primary_key=True),
    Column("service", String(100), nullable=False),
    Column("hook_instance", String(200), nullable=False),
    Column("kind", String(50), nullable=False),
    Column("indicator", String(20), nullable=False),
    Column("suggestion_uuids", Text, nullable=False),
    Column("issued_at", Text, nullable=False),
    Column("issuer", Text),
)

feedback = Table(
    "feedback", metadata,
    Column("card_uuid", String(64), primary_key=True),
    Column("outcome", String(20), primary_key=True),
    Column("outcome_timestamp", String(64), primary_key=True),
    Column("service", String(100), nullable=False),
    Column("hook_instance", String(200)),
    Column("override_code", Text),
    Column("override_display", Text),
    Column("user_comment", Text),
    Column("accepted_suggestions", Text, nullable=False),
    Column("issuer", Text),
    Column("received_at", Text, nullable=False),
)

jwt_replay = Table(
    "jwt_replay", metadata,
    Column("issuer", String(ISSUER_MAX), primary_key=True),
    Column("jti", String(JTI_MAX), primary_key=True),
    Column("expires_at", Float, nullable=False),
    Index("ix_jwt_replay_expires_at", "expires_at"),
)

smart_launch = Table(
    "smart_launch", metadata,
    Column("state", String(SMART_KEY_MAX), primary_key=True),
    Column("browser_digest", String(64), nullable=False),
    Column("created", Float, nullable=False),
    Column("sealed", LargeBinary, nullable=False),
    Index("ix_smart_launch_created", "created"),
)

# SMART logins (see smart_app.logins). The table and its index keep their first names, "smart_session": renaming a
# table is not safe in a rolling upgrade. ``ketamine-cds migrate`` runs while the old replicas still serve, and they
# read and write the old name; a rename would make every launch on them fail (500s, then 503s) until the last one
# was replaced, and replicas still on the old release after a rename cannot be rolled back to. Only an
# expand-and-contract over three releases (create, write both, drop) renames it safely, which buys a reader nothing
# that this comment does not. The name is a storage detail: code says "login".
smart_login = Table(
    "smart_session", metadata,
    Column("id", String(SMART_KEY_MAX), primary_key=True),
    Column("browser_digest", String(64), nullable=False),
    Column("created", Float, nullable=False),
    Column("sealed", LargeBinary, nullable=False),
    Index("ix_smart_session_created", "created"),
)

shown_card = Table(
    "shown_card", metadata,
    Column("digest", String(64), primary_key=True),
    Column("expires_at", Float, nullable=False),
    Index("ix_shown_card_expires_at", "expires_at"),
)

service_secret = Table(
    "service_secret", metadata,
    Column("name", String(100), primary_key=True),
    Column("value", Text, nullable=False),
)
