"""invitations.v1 -> ``invitations``: one row per person × kind × fiscal year × invitation type, first one kept."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.engine import Connection

from schemas.models import Invitation
from sinks.base import Row, TableSink
from sinks.db import insert_or_ignore
from sinks.tables import invitations
from topics.catalog import INVITATIONS, Topic


def invitation_row(invitation: Invitation) -> Row:
    return {
        "tenant": invitation.tenant,
        "atena_no": invitation.atena_no,
        "kind": invitation.kind.value,
        "fiscal_year": invitation.fiscal_year,
        "invitation_type": invitation.invitation_type.value,
        "trigger": invitation.trigger.value,
        "age_at_fiscal_year_end": invitation.age_at_fiscal_year_end,
        "issued_at": invitation.occurred_at,
    }


class InvitationsSink(TableSink[Invitation]):
    """Insert-or-ignore: an invitation is issued once; a replay or a second trigger changes nothing."""

    table = invitations
    keep_first = True

    def __init__(self, topic: Topic = INVITATIONS, name: str = "sinks.invitations") -> None:
        super().__init__(topic, name)

    def to_row(self, event: Invitation) -> Row:
        return invitation_row(event)

    def write(self, connection: Connection, rows: Sequence[Row]) -> None:
        insert_or_ignore(connection, self.table, rows, self.key_columns)
