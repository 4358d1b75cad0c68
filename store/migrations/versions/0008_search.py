"""search: a diacritic-free copy of a report's words, so operators can type without marks

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01 23:00:00
"""
import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Filled when a report is saved; rows written before stay findable by their own words.
    op.add_column("report", sa.Column("search_text", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("report") as batch:
        batch.drop_column("search_text")
