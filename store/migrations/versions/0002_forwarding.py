"""forwarding: central store tables and status-event dedup

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22 17:20:00
"""
import sqlalchemy as sa
from alembic import op

import store.models

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "central_report",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("code", sa.String(length=32), nullable=False),
        sa.Column("sector", sa.String(length=32), nullable=True),
        sa.Column("agency", sa.String(length=255), nullable=True),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("lat", sa.Float(), nullable=True),
        sa.Column("lon", sa.Float(), nullable=True),
        sa.Column("address", sa.String(length=500), nullable=True),
        sa.Column("media", sa.JSON(), nullable=False),
        sa.Column("citizen", sa.JSON(), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=True),
        sa.Column("urgent", sa.Boolean(), nullable=False),
        sa.Column("submitted_at", store.models.UTCDateTime(), nullable=True),
        sa.Column("received_at", store.models.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("code"),
    )
    op.create_table(
        "central_rating",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("code", sa.String(length=32), nullable=False),
        sa.Column("rating", sa.Integer(), nullable=False),
        sa.Column("received_at", store.models.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("code"),
    )
    op.create_table(
        "central_status_event",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("event_id", sa.String(length=128), nullable=False),
        sa.Column("code", sa.String(length=32), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("agency", sa.String(length=255), nullable=True),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("received_at", store.models.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("event_id"),
    )
    op.create_index("ix_central_status_event_code", "central_status_event", ["code"])


def downgrade() -> None:
    op.drop_index("ix_central_status_event_code", table_name="central_status_event")
    op.drop_table("central_status_event")
    op.drop_table("central_rating")
    op.drop_table("central_report")
