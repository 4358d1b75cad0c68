"""console: report assignment, pushes of duty alerts and reminders

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 22:00:00
"""
import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # batch mode: SQLite cannot add a foreign key to an existing table otherwise
    with op.batch_alter_table("report") as batch:
        batch.add_column(sa.Column("assigned_to", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("assigned_at", sa.DateTime(), nullable=True))
        batch.create_foreign_key("fk_report_assigned_to", "operator", ["assigned_to"], ["id"])
        batch.create_index("ix_report_assigned_to", ["assigned_to"])
    op.create_table(
        "alert_push",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("key", sa.String(length=128), nullable=False, unique=True),
        sa.Column("target", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("sent_at", sa.DateTime(), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("alert_push")
    with op.batch_alter_table("report") as batch:
        batch.drop_index("ix_report_assigned_to")
        batch.drop_constraint("fk_report_assigned_to", type_="foreignkey")
        batch.drop_column("assigned_at")
        batch.drop_column("assigned_to")
