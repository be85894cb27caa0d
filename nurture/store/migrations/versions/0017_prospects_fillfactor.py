"""Leave room in the prospects' pages (PostgreSQL fillfactor 70) so that rescoring a prospect is a HOT update.

Scoring rewrites prospect rows all the time: every scored event (online) and the decay and rules passes (up to
every prospect). On full pages each new row version goes to another page and every index of prospects gets a new
entry (seven indexes); with free room on the page the new version stays there and, as no indexed column changed,
no index is touched. Measured (issue 10, decay pass over 100k prospects, loaded): writing 98.7k rows took 7.9 s
with 0% HOT updates; after this setting and a table rewrite (which also removed the bloat of earlier passes, part
of the gain) 3.4 s (45% HOT), then 2.2 s (70% HOT). Online, one event's update: 26% -> 49% HOT, no time change
visible (its cost is round trips).

Only new pages honour the setting: existing tables converge as rows are rewritten (each row's next version lands
on a page filled to 70%), or at once with ``VACUUM FULL prospects`` (an exclusive lock for the rewrite: an
operator's choice, not done here). Nothing to do on SQLite.

Revision ID: 0017
Revises: 0015
"""

from alembic import op

revision = "0017"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE prospects SET (fillfactor = 70)")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE prospects RESET (fillfactor)")
