"""The tables of the doors operators and other systems use: the feeds' commit log, service
clients and their token attempts, and the service centre's console (staff, sessions, sign-in
flows, audit, negotiations). Part of the one schema (:mod:`paygate.store.schema` imports this
module, so that its ``metadata`` holds these tables too)."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    Date,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
)

from paygate.store.columns import UTCDateTime, id_column, metadata

# --- feeds and service clients --------------------------------------------------------------

# The feeds' commit order on SQLite (paygate.feeds): a row per journal entry, outbox event and
# supply order, appended by an AFTER INSERT trigger inside the writing transaction (migration
# 0010). SQLite has one writer at a time, so ``seq`` (the rowid, max + 1, never reused: rows
# are never deleted) grows in commit order. On PostgreSQL the table stays empty: there the
# writer's transaction id (``writer_xid``) orders the feeds.
feed_log = Table(
    "feed_log",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("source", String(16), nullable=False),
    Column("row_id", BigInteger, nullable=False),
    Index("ix_feed_log_source_seq", "source", "seq"),
    Index("ix_feed_log_source_row", "source", "row_id", unique=True),
    info={"owner": "paygate.feeds"},
)

# Programs (billing systems) that read the feeds over HTTP: a client id, its scopes, and its
# secret only as a scrypt hash. ``generation`` counts rotations: a token names the generation
# it was issued under, and one of an earlier generation is refused.
service_clients = Table(
    "service_clients",
    metadata,
    id_column(),
    Column("client_id", String(64), nullable=False, unique=True),
    Column("label", String(200)),
    Column("scopes", Text, nullable=False),
    Column("secret_hash", String(255), nullable=False),
    Column("generation", Integer, nullable=False),
    Column("status", String(16), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("rotated_at", UTCDateTime),
    Column("revoked_at", UTCDateTime),
    info={"owner": "paygate.service_clients"},
)

# Attempts at the token endpoint (paygate.token_attempts): one row each, refusals included, so
# that every worker counts the same failures of a client id and of a source address (0019).
token_attempts = Table(
    "token_attempts",
    metadata,
    id_column(),
    Column("client_id", String(200), nullable=False),
    Column("source", String(64)),
    Column("outcome", String(16), nullable=False),
    Column("at", UTCDateTime, nullable=False),
    Index("ix_token_attempts_client_id_at", "client_id", "at"),
    Index("ix_token_attempts_source_at", "source", "at"),
    info={"owner": "paygate.token_attempts"},
)


# --- the service centre's console (paygate.console) -----------------------------------------

# Staff who sign in to the console: a role, an argon2 hash of the password (never the password),
# and the lockout counter: ``failed_signins`` since the last success or lockout, and
# ``locked_until`` while a lockout lasts.
console_staff = Table(
    "console_staff",
    metadata,
    id_column(),
    Column("username", String(64), nullable=False, unique=True),
    Column("display_name", String(200)),
    Column("role", String(16), nullable=False),
    Column("password_hash", String(255), nullable=False),
    Column("status", String(16), nullable=False),
    Column("failed_signins", Integer, nullable=False),
    Column("locked_until", UTCDateTime),
    Column("created_at", UTCDateTime, nullable=False),
    Column("disabled_at", UTCDateTime),
    Column("last_signin_at", UTCDateTime),
    # The identity provider's name for the staff member (the configured claim's value), when
    # they may sign in through it: one staff member per identity.
    Column("oidc_identity", String(255), unique=True),
    CheckConstraint("role IN ('clerk', 'finance', 'supervisor', 'admin')", name="role"),
    CheckConstraint("status IN ('active', 'disabled')", name="status"),
    info={"owner": "paygate.console.staff"},
)

# Signed-in sessions: only the SHA-256 of the cookie's random token is stored, so that a copy
# of the table signs nobody in. ``csrf_token`` is the session's synchronizer token.
console_sessions = Table(
    "console_sessions",
    metadata,
    Column("token_hash", String(64), primary_key=True),
    Column("staff_id", BigInteger, ForeignKey("console_staff.id"), nullable=False, index=True),
    Column("csrf_token", String(64), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("last_seen_at", UTCDateTime, nullable=False),
    Column("ended_at", UTCDateTime),
    Column("ended_why", String(16)),
    info={"owner": "paygate.console.staff"},
)

# Sign-ins through the identity provider under way: the state, nonce and PKCE verifier of one
# authorization request, under the SHA-256 of the browser's binding cookie (never the cookie),
# taken (deleted) by the callback, so that each is used once.
console_oidc_flows = Table(
    "console_oidc_flows",
    metadata,
    Column("binding_hash", String(64), primary_key=True),
    Column("state", String(64), nullable=False),
    Column("nonce", String(64), nullable=False),
    Column("code_verifier", String(128), nullable=False),
    Column("next_path", String(200), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Index("ix_console_oidc_flows_created_at", "created_at"),
    info={"owner": "paygate.console.oidc"},
)

# The console's audit trail: one row when a staff action is asked for (``requested``) and one
# with its outcome (``done`` or ``refused``), each naming the person, their role and the
# reason they gave. Append-only: nothing updates or deletes a row.
console_audit = Table(
    "console_audit",
    metadata,
    id_column(),
    Column("at", UTCDateTime, nullable=False),
    Column("username", String(64), nullable=False),
    Column("role", String(16)),
    Column("action", String(48), nullable=False),
    Column("subject", String(160)),
    Column("outcome", String(16), nullable=False),
    Column("reason", Text),
    Column("detail", Text),
    Index("ix_console_audit_at", "at"),
    info={"owner": "paygate.console.audit"},
)

# 大客户停电协商: a supervisor's record of the negotiation with a protected account before
# its disconnection, and the approval that created the disconnection order.
console_negotiations = Table(
    "console_negotiations",
    metadata,
    id_column(),
    Column("account_id", BigInteger, ForeignKey("accounts.id"), nullable=False, index=True),
    Column("counterpart", String(200), nullable=False),
    Column("agreed_on", Date, nullable=False),
    Column("terms", Text, nullable=False),
    Column("recorded_by", String(64), nullable=False),
    Column("recorded_at", UTCDateTime, nullable=False),
    Column("approved_by", String(64)),
    Column("approved_at", UTCDateTime),
    Column("order_id", BigInteger, ForeignKey("supply_orders.id")),
    info={"owner": "paygate.console.negotiations"},
)
