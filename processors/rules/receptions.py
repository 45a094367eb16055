"""受付番号の所在: which person a 受付番号 stands under, when it was sent under more than one 宛名番号. Pure functions.

A result sent under a wrong 宛名番号 and sent again, with the same 受付番号, under the right one lands in two
people's books, on two partitions: the first book cannot see the second submission, and its error would stay OPEN
for good. So every book tells the reception index (``ledger.receptions.v1``, keyed by 団体コード and 受付番号) where
its latest submission of a 受付番号 is (:class:`ReceptionClaim`); the index keeps each 宛名番号's latest claim
(``processor_receptions``) and, whenever a claim arrives, tells every 宛名番号 whose claim is not the latest in the
correction order (発生日時, イベントID) that the 受付番号 stands elsewhere now: a ``SUPERSEDED`` decision on
``hub.ledger-decisions.v1``, keyed by that person, which their book applies (``processors.rules.ledger.derive``).
The same holds for a staff 訂正 that changes the 宛名番号: the corrected submission's book claims it.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from processors.rules.ledger import MATCHING_SOURCE, stable_id
from schemas.models import LedgerDecision, LedgerDecisionType, ReceptionClaim


def claim_order(claim: ReceptionClaim) -> tuple[datetime, str]:
    """A claim's place in the correction order of its 受付番号 (that of the submission it is for)."""
    return (claim.submitted_at, str(claim.result_event_id))


def kept(stored: ReceptionClaim | None, claim: ReceptionClaim) -> bool:
    """Whether ``claim`` replaces a person's ``stored`` one (a later submission; a redelivery changes nothing)."""
    return stored is None or claim_order(claim) > claim_order(stored)


def index(
    claims: Mapping[str, ReceptionClaim], claim: ReceptionClaim
) -> tuple[ReceptionClaim | None, list[LedgerDecision]]:
    """A claim arriving at the index that holds ``claims`` (each 宛名番号's latest of the 受付番号): the claim to
    store for its 宛名番号 (None: the stored one stands), and the SUPERSEDED decisions to send.
    """
    stored = claims.get(claim.atena_no)
    if kept(stored, claim):
        return claim, supersessions({**claims, claim.atena_no: claim}, claim)
    if stored is not None and stored.result_event_id != claim.result_event_id:
        return None, []  # an older submission of the person's than the one the index has: nothing changes
    return None, supersessions(claims, claim)  # the same claim again: the same decisions (the same イベントID)


def supersessions(claims: Mapping[str, ReceptionClaim], claim: ReceptionClaim) -> list[LedgerDecision]:
    """The SUPERSEDED decisions once ``claim`` has arrived; ``claims`` are every 宛名番号's latest claim of the
    受付番号, ``claim`` included. A new latest claim tells every other 宛名番号; an older one, its own only.
    """
    best = max(claims.values(), key=claim_order)
    if best.result_event_id == claim.result_event_id:
        targets = sorted(a for a in claims if a != best.atena_no)
    elif claim.atena_no != best.atena_no:
        targets = [claim.atena_no]
    else:
        targets = []
    return [
        LedgerDecision(
            event_id=stable_id("superseded", best.tenant, best.reception_no, atena, best.result_event_id),
            occurred_at=best.submitted_at,
            tenant=best.tenant,
            source_system=MATCHING_SOURCE,
            atena_no=atena,
            decision=LedgerDecisionType.SUPERSEDED,
            reception_no=best.reception_no,
            result_event_id=best.result_event_id,
            superseded_at=best.submitted_at,
            superseded_by=best.atena_no,
            staff_id=best.staff_id,
        )
        for atena in targets
    ]
