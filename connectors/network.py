"""The national network (情報提供ネットワークシステム), simulated.

It knows the bodies connected to it (``network.toml``), issues one 符号 per person per institution, checks every
query against the 照会許可照会リスト, translates the requester's 符号 into the provider's, and issues a signed
提供許可証 bound to everything the provider acts on: the request id, the requester, the provider, the 事務 code, the
特定個人情報名 code, the items in order, the fiscal-year range, the provider's 符号 (as its SHA-256, so the permit
carries no 符号) and an expiry (the encoding it signs: :func:`connectors.keys.permit_message`). Queries outside the
list are refused here and never reach the provider. It keeps its own log of every query (the network's side of the
情報提供等記録).
"""

from __future__ import annotations

import base64
import secrets
import uuid
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from connectors.keys import PermitSigner, fugo_digest
from connectors.policy import Policies
from connectors.service import Output, Position, rejection
from connectors.stores import network_fugo, network_log
from schemas.models import (
    Event,
    FugoIssuance,
    ProvisionOutcome,
    ProvisionPermit,
    ProvisionRequest,
    ProvisionResponse,
)
from schemas.record import now_utc
from sinks.db import insert_or_ignore
from topics import catalog
from topics.catalog import Topic

SOURCE = "kenshin-hub.network"
_NS = uuid.uuid5(uuid.NAMESPACE_URL, "urn:kenshin-hub:network")

MSG_NO_FUGO = "符号が未取得です"


def not_permitted(info_name: str) -> str:
    return f"特定個人情報名「{info_name}」の照会は許可されていません"


def derived_id(*parts: object) -> uuid.UUID:
    return uuid.uuid5(_NS, ":".join(str(p) for p in parts))


class NetworkSimulator:
    name = "network"
    templates: tuple[Topic, ...] = (catalog.FUGO_REQUESTS, catalog.NETWORK_QUERIES)

    def __init__(self, policies: Policies, signer: PermitSigner, clock: Callable[[], datetime] = now_utc) -> None:
        self.policies = policies
        self.signer = signer
        self.clock = clock
        self.position: Position | None = None  # of the input being handled, for dead letters
        # every member's own topics: who sent a request is the topic's tenant, never the payload's say-so
        self.inputs: tuple[Topic, ...] = tuple(
            catalog.for_tenant(t, code) for code in sorted(policies.network.bodies) for t in self.templates
        )

    def accepts(self, event: Event) -> bool:
        return True

    def handle(self, conn: Connection, topic: Topic, event: Event) -> list[Output]:
        tenant, mismatch = catalog.tenant_check(topic, event)
        if mismatch is not None:
            letter_id = derived_id("network-dlq", event.event_id)
            return [rejection(topic, event, mismatch, self.position, event_id=letter_id, occurred_at=self.clock(),
                              source=SOURCE, step="network.route")]  # fmt: skip
        if isinstance(event, FugoIssuance):
            return [(catalog.for_tenant(catalog.FUGO_ISSUED, tenant), self._issue(conn, event))]
        if isinstance(event, ProvisionRequest):
            return self._route(conn, event)
        raise TypeError(f"the network does not take {type(event).__name__}")

    # --- 符号 ------------------------------------------------------------------------------------------------

    def _issue(self, conn: Connection, request: FugoIssuance) -> FugoIssuance:
        answer = FugoIssuance(
            event_id=derived_id("fugo-issued", request.event_id),
            occurred_at=self.clock(),
            tenant=request.tenant,
            source_system=SOURCE,
            integrated_atena_no=request.integrated_atena_no,
        )
        if self.policies.network.body(request.tenant) is None:
            return replace(answer, error="ネットワークに登録されていない機関です")
        if not request.person_token:
            return replace(answer, error="連携キーがないため符号を発行できません")
        fugo = conn.execute(
            sa.select(network_fugo.c.fugo).where(
                network_fugo.c.institution == request.tenant, network_fugo.c.person_token == request.person_token
            )
        ).scalar_one_or_none()
        if fugo is None:
            fugo = "F" + base64.b32encode(secrets.token_bytes(20)).decode().rstrip("=")
            conn.execute(
                sa.insert(network_fugo).values(
                    institution=request.tenant, fugo=fugo, person_token=request.person_token, issued_at=self.clock()
                )
            )
        return replace(answer, fugo=fugo)

    def _token(self, conn: Connection, institution: str, fugo: str) -> str | None:
        return conn.execute(
            sa.select(network_fugo.c.person_token).where(
                network_fugo.c.institution == institution, network_fugo.c.fugo == fugo
            )
        ).scalar_one_or_none()

    def _fugo(self, conn: Connection, institution: str, token: str) -> str | None:
        return conn.execute(
            sa.select(network_fugo.c.fugo).where(
                network_fugo.c.institution == institution, network_fugo.c.person_token == token
            )
        ).scalar_one_or_none()

    # --- queries ---------------------------------------------------------------------------------------------

    def _route(self, conn: Connection, query: ProvisionRequest) -> list[Output]:
        now = self.clock()
        refusal = self._check(query)
        outcome = ProvisionOutcome.REFUSED
        provider_fugo: str | None = None
        if refusal is None:
            token = self._token(conn, query.requester, query.fugo)
            provider_fugo = self._fugo(conn, query.provider, token) if token is not None else None
            if provider_fugo is None:
                refusal, outcome = MSG_NO_FUGO, ProvisionOutcome.ERROR
        insert_or_ignore(
            conn,
            network_log,
            [
                dict(
                    request_id=str(query.request_id),
                    requester=query.requester,
                    provider=query.provider,
                    info_name_code=query.info_name_code,
                    items=",".join(query.items),
                    outcome="ROUTED" if refusal is None else outcome.value,
                    reason=refusal,
                    permit_id=str(derived_id("permit", query.request_id)) if refusal is None else None,
                    logged_at=now,
                )
            ],
            ["request_id"],
        )
        if refusal is not None or provider_fugo is None:
            response = ProvisionResponse(
                event_id=derived_id("refusal", query.event_id),
                occurred_at=now,
                tenant=query.requester,
                source_system=SOURCE,
                request_id=query.request_id,
                requester=query.requester,
                provider=query.provider,
                outcome=outcome,
                message=refusal,
                responded_at=now,
            )
            return [(catalog.for_tenant(catalog.PROVISION_RESPONSES, query.requester), response)]
        permit = ProvisionPermit(
            permit_id=derived_id("permit", query.request_id),
            request_id=query.request_id,
            requester=query.requester,
            provider=query.provider,
            affair_code=query.affair_code,
            info_name_code=query.info_name_code,
            items=query.items,
            fiscal_year_from=query.fiscal_year_from,
            fiscal_year_to=query.fiscal_year_to,
            fugo_sha256=fugo_digest(provider_fugo),
            expires_at=now + timedelta(seconds=self.policies.network.permit_ttl_seconds),
            signature="",
        )
        permit = replace(permit, signature=self.signer.sign(permit))
        routed = replace(
            query,
            event_id=derived_id("routed", query.event_id),
            occurred_at=now,
            tenant=query.provider,
            source_system=SOURCE,
            fugo=provider_fugo,
            permit=permit,
        )
        return [(catalog.for_tenant(catalog.PROVISION_REQUESTS, query.provider), routed)]

    def _check(self, query: ProvisionRequest) -> str | None:
        network = self.policies.network
        requester, provider = network.body(query.requester), network.body(query.provider)
        if query.tenant != query.requester:
            return "照会元の中間サーバーと情報照会者が一致しません"
        if requester is None or provider is None:
            return "情報照会者または情報提供者がネットワークに登録されていません"
        if requester.code == provider.code:
            return "自機関への照会はできません"
        entry = self.policies.permitted.match(
            requester.body_class, provider.body_class, query.affair_code, query.info_name_code, query.items
        )
        if entry is None:
            return not_permitted(self.policies.permitted.info_name(query.info_name_code))
        return None
