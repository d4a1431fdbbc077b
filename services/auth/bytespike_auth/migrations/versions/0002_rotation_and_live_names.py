"""key rotation (revoke_at, lineage) and names unique among live keys only

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

LIVE = "status = 'active' AND replaced_by IS NULL"


def upgrade() -> None:
    # Batch mode: SQLite can only drop a constraint by recreating the table.
    with op.batch_alter_table("api_keys") as batch:
        batch.add_column(sa.Column("revoke_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("replaced_by", sa.String(64), nullable=True))
        batch.add_column(sa.Column("rotated_from", sa.String(64), nullable=True))
        batch.drop_constraint("uq_api_keys_account_name", type_="unique")
    op.create_index("ix_api_keys_revoke_at", "api_keys", ["revoke_at"])
    op.create_index(
        "uq_api_keys_live_name",
        "api_keys",
        ["account_id", "name"],
        unique=True,
        sqlite_where=sa.text(LIVE),
        postgresql_where=sa.text(LIVE),
    )


def downgrade() -> None:
    op.drop_index("uq_api_keys_live_name", "api_keys")
    op.drop_index("ix_api_keys_revoke_at", "api_keys")
    with op.batch_alter_table("api_keys") as batch:
        batch.create_unique_constraint("uq_api_keys_account_name", ["account_id", "name"])
        batch.drop_column("rotated_from")
        batch.drop_column("replaced_by")
        batch.drop_column("revoke_at")
