"""voice hotline: the caller's keypad sector, transcript corrections, call-back requests

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02 10:00:00
"""
import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("report") as batch:
        batch.add_column(sa.Column("sector_by_caller", sa.String(length=32), nullable=True))
        batch.add_column(sa.Column("transcript_machine", sa.Text(), nullable=True))
        batch.add_column(sa.Column("transcript_corrected_at", sa.DateTime(), nullable=True))
    op.create_table(
        "callback_request",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("report_id", sa.Integer(), sa.ForeignKey("report.id"), nullable=True),
        sa.Column("call_sid", sa.String(length=64), nullable=False, unique=True),
        sa.Column("caller", sa.String(length=255), nullable=False),
        sa.Column("reason", sa.String(length=32), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("called_back_at", sa.DateTime(), nullable=True),
        sa.Column("called_back_by", sa.Integer(), sa.ForeignKey("operator.id"), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
    )
    op.create_index("ix_callback_request_report_id", "callback_request", ["report_id"])
    op.create_index("ix_callback_request_created_at", "callback_request", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_callback_request_created_at", table_name="callback_request")
    op.drop_index("ix_callback_request_report_id", table_name="callback_request")
    op.drop_table("callback_request")
    with op.batch_alter_table("report") as batch:
        batch.drop_column("transcript_corrected_at")
        batch.drop_column("transcript_machine")
        batch.drop_column("sector_by_caller")
