"""conversation: duty alerts for emergencies, dialog language and numbered options

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01 22:00:00
"""
import sqlalchemy as sa
from alembic import op

import store.models

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "duty_alert",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("report_id", sa.Integer(), nullable=False),
        sa.Column("hazard", sa.String(length=32), nullable=False),
        sa.Column("numbers", sa.JSON(), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("created_at", store.models.UTCDateTime(), nullable=False),
        sa.Column("acknowledged_at", store.models.UTCDateTime(), nullable=True),
        sa.Column("acknowledged_by", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(["report_id"], ["report.id"]),
        sa.ForeignKeyConstraint(["acknowledged_by"], ["operator.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_duty_alert_report_id", "duty_alert", ["report_id"])
    op.create_index("ix_duty_alert_created_at", "duty_alert", ["created_at"])
    with op.batch_alter_table("conversation") as batch:
        batch.add_column(sa.Column("lang", sa.String(length=8), nullable=False,
                                   server_default="vi"))
        batch.add_column(sa.Column("options", sa.JSON(), nullable=False,
                                   server_default="[]"))
        batch.add_column(sa.Column("memo", sa.JSON(), nullable=False, server_default="{}"))


def downgrade() -> None:
    with op.batch_alter_table("conversation") as batch:
        batch.drop_column("memo")
        batch.drop_column("options")
        batch.drop_column("lang")
    op.drop_index("ix_duty_alert_created_at", table_name="duty_alert")
    op.drop_index("ix_duty_alert_report_id", table_name="duty_alert")
    op.drop_table("duty_alert")
