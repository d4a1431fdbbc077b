"""balances, ledger; hold TPM estimates; usage cost, images, video

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "balances",
        sa.Column("account_id", sa.String(64), primary_key=True),
        sa.Column("balance", sa.BigInteger, nullable=False),
        sa.Column("held", sa.BigInteger, nullable=False),
        sa.Column("disabled", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "ledger",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer, "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("account_id", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("amount", sa.BigInteger, nullable=False),
        sa.Column("request_id", sa.String(64), nullable=True, unique=True),
        sa.Column("idempotency_key", sa.String(128), nullable=True, unique=True),
        sa.Column("reason", sa.String(512), nullable=False, server_default=""),
        sa.Column("actor", sa.String(128), nullable=False, server_default=""),
        sa.Column("key_id", sa.String(64), nullable=False, server_default=""),
        sa.Column("model", sa.String(128), nullable=False, server_default=""),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_ledger_account_id", "ledger", ["account_id", "id"])
    with op.batch_alter_table("holds") as batch:
        batch.add_column(
            sa.Column("estimated_tokens", sa.BigInteger, nullable=False, server_default="0")
        )
    op.create_index("ix_holds_status_expires_at", "holds", ["status", "expires_at"])
    with op.batch_alter_table("usage_records") as batch:
        batch.add_column(sa.Column("images", sa.BigInteger, nullable=False, server_default="0"))
        batch.add_column(sa.Column("video_ms", sa.BigInteger, nullable=False, server_default="0"))
        batch.add_column(sa.Column("cost", sa.BigInteger, nullable=False, server_default="0"))
    op.create_index(
        "ix_usage_records_account_started", "usage_records", ["account_id", "started_at"]
    )


def downgrade() -> None:
    op.drop_index("ix_usage_records_account_started", "usage_records")
    with op.batch_alter_table("usage_records") as batch:
        batch.drop_column("cost")
        batch.drop_column("video_ms")
        batch.drop_column("images")
    op.drop_index("ix_holds_status_expires_at", "holds")
    with op.batch_alter_table("holds") as batch:
        batch.drop_column("estimated_tokens")
    op.drop_index("ix_ledger_account_id", "ledger")
    op.drop_table("ledger")
    op.drop_table("balances")
