"""trust_gate: review reasons, suspected duplicates, the duplicate link at the centre

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 22:00:00
"""
import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # batch mode: SQLite cannot add a foreign key to an existing table otherwise
    with op.batch_alter_table("report") as batch:
        batch.add_column(sa.Column("review_reasons", sa.JSON(), nullable=False,
                                   server_default=sa.text("'[]'")))
        batch.add_column(sa.Column("suspected_duplicate_of", sa.Integer(), nullable=True))
        batch.create_foreign_key("fk_report_suspected_duplicate_of", "report",
                                 ["suspected_duplicate_of"], ["id"])
    op.add_column("central_report",
                  sa.Column("duplicate_of", sa.String(length=32), nullable=True))


def downgrade() -> None:
    op.drop_column("central_report", "duplicate_of")
    with op.batch_alter_table("report") as batch:
        batch.drop_constraint("fk_report_suspected_duplicate_of", type_="foreignkey")
        batch.drop_column("suspected_duplicate_of")
        batch.drop_column("review_reasons")
