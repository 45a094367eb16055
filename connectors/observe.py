"""What the provision services' outputs tell the metrics bundle (``kenshin_hub_provision*``, permit failures).

The services stay pure: their runner hands each committed batch's outputs to :func:`observe`, which reads the
outcomes off the answers and holds. Refusal messages map to bounded codes; a staff refusal (sent by `review
refuse`, a CLI command) is counted by the sinks from the staff-operations topic instead.
"""

from __future__ import annotations

from collections.abc import Iterable

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from connectors import chukan, network
from connectors.service import Output
from connectors.stores import chukan_held
from monitoring.metrics import HubMetrics
from schemas.models import HeldProvision, HoldStatus, ProvisionOutcome, ProvisionResponse

PERMIT_CODES = {
    chukan.MSG_NO_PERMIT: "NO_PERMIT",
    chukan.MSG_BAD_SIGNATURE: "BAD_SIGNATURE",
    chukan.MSG_PERMIT_MISMATCH: "NOT_FOR_THIS_REQUEST",
    chukan.MSG_PERMIT_EXPIRED: "EXPIRED",
    chukan.MSG_PERMIT_USED: "REPLAYED",
}


def refusal_code(message: str | None) -> str:
    if message in PERMIT_CODES:
        return PERMIT_CODES[message]
    if message and message.endswith("の照会は許可されていません"):
        return "NOT_PERMITTED"
    if message == network.MSG_NO_FUGO:
        return "NO_FUGO"
    return "UNSPECIFIED" if not message else "OTHER"


def observe(metrics: HubMetrics, outputs: Iterable[Output]) -> None:
    for _topic, event in outputs:
        if isinstance(event, HeldProvision) and event.status is HoldStatus.HELD:
            metrics.provision(ProvisionOutcome.HELD, event.hold_reasons)
        elif isinstance(event, ProvisionResponse) and event.integrated_atena_no is None:
            if event.outcome is ProvisionOutcome.REFUSED:
                code = refusal_code(event.message)
                metrics.provision(event.outcome, [code])
                if event.message in PERMIT_CODES:
                    metrics.permit_verification_failed(code)
            else:
                metrics.provision(event.outcome)


def refresh_held(metrics: HubMetrics, engine: Engine) -> None:
    """Set the held-provisions gauges of every tenant from the 中間サーバー's store."""
    t = chukan_held
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(t.c.tenant, sa.func.count(), sa.func.min(t.c.held_at))
            .where(t.c.status == HoldStatus.HELD.value)
            .group_by(t.c.tenant)
        ).all()
        tenants = {r[0] for r in conn.execute(sa.select(t.c.tenant).distinct())}
    held = {r[0]: (int(r[1]), r[2]) for r in rows}
    for tenant in tenants:
        count, oldest = held.get(tenant, (0, None))
        if oldest is not None and oldest.tzinfo is None:
            from datetime import UTC

            oldest = oldest.replace(tzinfo=UTC)
        metrics.held_provisions(tenant, count, oldest)
