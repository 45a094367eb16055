"""Notices that can be sent (I.1 ② (2)): the 受診勧奨 and 繰越受診通知 the processors issued, as a mailing list and as
printable letters, in batches. All three commands need the health role and are recorded.

* ``notice mail --type INVITATION|CARRY_OVER [--year Y] [--kind K] [--batch-size N] [--limit N] --out DIR``: the
  notices of that type and year not yet mailed, one letter per person (the kinds of their notices together), in
  postcode order. Each batch is written as ``<year>-<type>-<batch id>.csv`` (the mailing list: 郵便番号, 住所 and 氏名
  as the 住基 holds them, UTF-8 with a BOM for spreadsheet tools) and ``….pdf`` (one A4 page per person, IPAex
  Gothic embedded), both new 0600 files; then the batch's notices are marked mailed (``notice_mailings``) and the
  batch is recorded as a ``NOTICE_MAILING`` operation with both files' SHA-256. A notice is mailed once: a second
  run prints only what is new. A progress bar runs on a terminal.
* A person under 支援措置 is never mailed at the registered address without a staff decision: such a person's
  notices are held, listed by ``notice held``, until ``notice mail-decide <宛名番号> --registered | --address A
  --postcode P | --withhold --reason R`` decides where they may go (``mailing_decisions``, recorded as
  ``MAILING_DECISION``; the address itself is never put in the operation log).

The wording of the letters is data: ``hub/letters.toml``, per municipality, validated on load.
"""

from __future__ import annotations

import argparse
import csv
import io
import sys
import tomllib
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date
from importlib import resources
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from hub.audit import digests_detail, write_private
from hub.counter import KIND_LABEL
from hub.errors import CommandError
from hub.office import Office, office
from hub.settings import Settings
from hub.validation import fiscal_year, is_valid_postcode
from schemas.models import InvitationType, ResidentStatus, ScreeningKind, StaffOperationType
from schemas.record import now_utc
from sinks.tables import invitations, mailing_decisions, notice_mailings, residents

FONT_PATHS = (
    Path("/usr/share/fonts/opentype/ipaexfont-gothic/ipaexg.ttf"),  # Debian's fonts-ipaexfont-gothic (.ci/deps)
    Path("/usr/share/fonts/truetype/ipaexfont-gothic/ipaexg.ttf"),
)
FONT_NAME = "IPAexGothic"
BATCH_SIZE = 500
TYPE_LABEL = {InvitationType.INVITATION: "受診勧奨", InvitationType.CARRY_OVER: "繰越受診通知"}
CSV_HEADER = ("郵便番号", "住所", "氏名", "氏名カナ", "宛名番号", "通知", "年度", "検診", "送付先")


class LettersError(ValueError):
    """letters.toml is not valid."""


class Decision:
    REGISTERED = "REGISTERED"  # the registered address, by a staff decision
    OTHER = "OTHER"  # the address given in the decision
    WITHHOLD = "WITHHOLD"  # nothing is mailed


_KIND_ORDER = list(ScreeningKind)  # the order of 別添1 (胃, 大腸, 肺, 乳, 子宮頸, ピロリ)
SENT_TO = {None: "REGISTERED", Decision.REGISTERED: "DECIDED_REGISTERED", Decision.OTHER: "DECIDED_OTHER"}


# --- the wording ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Wording:
    title: str
    lines: tuple[str, ...]


@dataclass(frozen=True)
class Letters:
    version: str
    sender: str
    contact: str
    wording: dict[InvitationType, Wording]


def _text(section: dict[str, Any], key: str, where: str) -> str:
    value = section.get(key)
    if not isinstance(value, str) or not value:
        raise LettersError(f"letters.toml: {where}.{key} must be a non-empty string")
    return value


def load_letters(tenant: str, text: str | None = None) -> Letters:
    """The wording of ``tenant``'s letters from ``letters.toml`` (or ``text``); :class:`LettersError` if invalid."""
    if text is None:
        text = resources.files("hub").joinpath("letters.toml").read_text(encoding="utf-8")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise LettersError(f"letters.toml: {exc}") from None
    unknown = set(data) - {"version", "notices", "municipalities"}
    if unknown:
        raise LettersError(f"letters.toml: unknown keys {sorted(unknown)}")
    version = _text(data, "version", "letters.toml")
    notices, municipalities = data.get("notices", {}), data.get("municipalities", {})
    wording: dict[InvitationType, Wording] = {}
    for kind in InvitationType:
        section, where = notices.get(kind.value), f"notices.{kind.value}"
        if not isinstance(section, dict):
            raise LettersError(f"letters.toml: {where} is missing")
        title, lines = _text(section, "title", where), section.get("lines")
        if not isinstance(lines, list) or not lines or not all(isinstance(x, str) and x for x in lines):
            raise LettersError(f"letters.toml: {where}.lines must be a list of non-empty strings")
        for template in (title, *lines):
            try:
                template.format(year=2000, kinds="")
            except (KeyError, IndexError, ValueError) as exc:
                raise LettersError(f"letters.toml: {where}: {template!r} names an unknown field ({exc})") from None
        wording[kind] = Wording(title, tuple(lines))
    if set(notices) - {k.value for k in InvitationType}:
        raise LettersError(f"letters.toml: unknown notice types {sorted(set(notices) - set(InvitationType))}")
    municipality = municipalities.get(tenant)
    if not isinstance(municipality, dict):
        raise LettersError(f"letters.toml: no sender for municipality {tenant} (municipalities.{tenant})")
    where = f"municipalities.{tenant}"
    extra = set(municipality) - {"sender", "contact"}
    if extra:
        raise LettersError(f"letters.toml: {where} has unknown keys {sorted(extra)}")
    return Letters(version, _text(municipality, "sender", where), _text(municipality, "contact", where), wording)


# --- what is to be mailed ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Letter:
    atena_no: str
    name: str
    name_kana: str
    postcode: str | None
    address: str
    kinds: tuple[ScreeningKind, ...]
    sent_to: str  # REGISTERED, DECIDED_REGISTERED or DECIDED_OTHER


@dataclass(frozen=True)
class Held:
    atena_no: str
    name: str
    kinds: tuple[ScreeningKind, ...]
    withheld: bool  # True: staff decided not to mail; False: no decision yet


def pending(
    conn: Connection, tenant: str, year: int, notice: InvitationType, kinds: Sequence[ScreeningKind] = ()
) -> tuple[list[Letter], list[Held]]:
    """The letters of ``notice`` / ``year`` still to be mailed (in postcode order), and the 支援措置 persons held.

    Only residents are mailed (a person who moved out or died is not). A notice already in ``notice_mailings`` is
    not mailed again.
    """
    i, r, m, d = invitations, residents, notice_mailings, mailing_decisions
    same = [m.c.tenant == i.c.tenant, m.c.atena_no == i.c.atena_no, m.c.kind == i.c.kind]
    mailed = sa.and_(*same, m.c.fiscal_year == i.c.fiscal_year, m.c.invitation_type == i.c.invitation_type)
    query = (
        sa.select(
            i.c.atena_no,
            i.c.kind,
            r.c.name,
            r.c.name_kana,
            r.c.postcode,
            r.c.address,
            r.c.support_measure,
            d.c.decision,
            d.c.postcode,
            d.c.address,
        )
        .select_from(
            i.join(r, sa.and_(r.c.tenant == i.c.tenant, r.c.atena_no == i.c.atena_no))
            .outerjoin(m, mailed)
            .outerjoin(d, sa.and_(d.c.tenant == i.c.tenant, d.c.atena_no == i.c.atena_no))
        )
        .where(
            i.c.tenant == tenant,
            i.c.fiscal_year == year,
            i.c.invitation_type == notice.value,
            r.c.status == ResidentStatus.RESIDENT.value,
            m.c.atena_no.is_(None),
        )
        .order_by(i.c.atena_no, i.c.kind)
    )
    if kinds:
        query = query.where(i.c.kind.in_([k.value for k in kinds]))
    people: dict[str, tuple[Any, list[ScreeningKind]]] = {}
    for row in conn.execute(query):
        people.setdefault(row[0], (row, []))[1].append(ScreeningKind(row[1]))
    letters: list[Letter] = []
    held: list[Held] = []
    for atena, (row, found) in people.items():
        _, _, name, kana, postcode, address, support, decision, decided_postcode, decided_address = row
        person_kinds = tuple(sorted(found, key=_KIND_ORDER.index))
        if support and decision not in (Decision.REGISTERED, Decision.OTHER):
            held.append(Held(atena, name, person_kinds, withheld=decision == Decision.WITHHOLD))
            continue
        if support and decision == Decision.OTHER:
            postcode, address = decided_postcode, decided_address
        sent_to = SENT_TO[decision if support else None]
        letters.append(Letter(atena, name, kana, postcode, address, person_kinds, sent_to))
    letters.sort(key=lambda x: (x.postcode or "", x.address, x.atena_no))
    return letters, held


# --- the files --------------------------------------------------------------------------------------------------


def _kinds_text(kinds: Iterable[ScreeningKind]) -> str:
    return "・".join(KIND_LABEL[k] for k in kinds)


def mailing_csv(letters: Sequence[Letter], notice: InvitationType, year: int) -> str:
    """The mailing list: one row per letter, with a BOM (spreadsheet tools then read it as UTF-8)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_HEADER)
    for x in letters:
        writer.writerow([x.postcode or "", x.address, x.name, x.name_kana, x.atena_no, TYPE_LABEL[notice], year,
                         _kinds_text(x.kinds), x.sent_to])  # fmt: skip
    return "\ufeff" + out.getvalue()


def font_path() -> Path:
    for path in FONT_PATHS:
        if path.is_file():
            return path
    raise CommandError("no Japanese font for the letters: install Debian's fonts-ipaexfont-gothic (make setup does)")


def pdf_font() -> str:
    """The name of the Japanese font registered with reportlab (once per process) for the PDFs."""
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.ttfonts import TTFont

    if FONT_NAME not in pdfmetrics.getRegisteredFontNames():
        pdfmetrics.registerFont(TTFont(FONT_NAME, str(font_path())))
    return FONT_NAME


def letters_pdf(letters: Sequence[Letter], notice: InvitationType, year: int, wording: Letters, on: date) -> bytes:
    """One A4 page per letter: the address block where a window envelope shows it, the title, the text, the sender."""
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.units import mm
    from reportlab.pdfgen import canvas

    pdf_font()
    text = wording.wording[notice]
    out = io.BytesIO()
    page = canvas.Canvas(out, pagesize=A4, invariant=True)  # invariant: the same letters give the same bytes
    page.setTitle(f"{year}年度 {TYPE_LABEL[notice]}")
    page.setAuthor(wording.sender)
    width, height = A4
    for x in letters:
        kinds = _kinds_text(x.kinds)
        top = height - 25 * mm
        page.setFont(FONT_NAME, 11)
        page.drawString(25 * mm, top, f"〒{x.postcode}" if x.postcode else "〒")
        page.drawString(25 * mm, top - 7 * mm, x.address)
        page.setFont(FONT_NAME, 14)
        page.drawString(25 * mm, top - 18 * mm, f"{x.name} 様")
        page.setFont(FONT_NAME, 9)
        page.drawString(25 * mm, top - 25 * mm, f"宛名番号 {x.atena_no}")
        page.drawRightString(width - 20 * mm, top, f"{on.year}年{on.month}月{on.day}日")
        page.setFont(FONT_NAME, 16)
        page.drawCentredString(width / 2, top - 50 * mm, text.title.format(year=year, kinds=kinds))
        page.setFont(FONT_NAME, 11)
        y = top - 65 * mm
        for line in text.lines:
            page.drawString(25 * mm, y, line.format(year=year, kinds=kinds))
            y -= 8 * mm
        page.setFont(FONT_NAME, 10)
        page.drawString(25 * mm, 35 * mm, wording.sender)
        page.drawString(25 * mm, 29 * mm, wording.contact)
        page.showPage()
    page.save()
    return out.getvalue()


# --- the batches ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Batch:
    batch_id: str
    letters: tuple[Letter, ...]
    csv_path: Path
    pdf_path: Path


def batches(letters: Sequence[Letter], size: int, out: Path, notice: InvitationType, year: int) -> Iterator[Batch]:
    for start in range(0, len(letters), size):
        batch_id = str(uuid.uuid4())
        stem = out / f"{year}-{notice.value}-{batch_id[:8]}"
        yield Batch(batch_id, tuple(letters[start : start + size]), stem.with_suffix(".csv"), stem.with_suffix(".pdf"))


def write_batch(batch: Batch, notice: InvitationType, year: int, wording: Letters, today: date,
                digests: dict[str, str]) -> None:  # fmt: skip
    """The batch's mailing list and letters as new 0600 files; each file's SHA-256 into ``digests`` once written."""
    digests[batch.csv_path.name] = write_private(batch.csv_path, [mailing_csv(batch.letters, notice, year)])
    pdf = letters_pdf(batch.letters, notice, year, wording, today)
    digests[batch.pdf_path.name] = write_private(batch.pdf_path, [pdf])


def preview(conn: Connection, tenant: str, year: int, notice: InvitationType, out: Path, limit: int) -> Batch | None:
    """The first ``limit`` letters still to be mailed, written as one batch to look at (the demo): not marked
    mailed and not recorded, so `notice mail` still prints them. None when there is nothing to mail.
    """
    letters, _ = pending(conn, tenant, year, notice)
    if not letters:
        return None
    batch = next(batches(letters[:limit], limit, out, notice, year))
    write_batch(batch, notice, year, load_letters(tenant), date.today(), {})
    return batch


def mark_mailed(conn: Connection, tenant: str, year: int, notice: InvitationType, batch: Batch, staff_id: str) -> None:
    now = now_utc()
    conn.execute(
        notice_mailings.insert(),
        [
            {
                "tenant": tenant,
                "atena_no": x.atena_no,
                "kind": k.value,
                "fiscal_year": year,
                "invitation_type": notice.value,
                "batch_id": batch.batch_id,
                "sent_to": x.sent_to,
                "staff_id": staff_id,
                "mailed_at": now,
            }
            for x in batch.letters
            for k in x.kinds
        ],
    )


def mail(o: Office, args: argparse.Namespace, year: int) -> int:
    from hub.review import staff_operation  # hub.review imports hub.office

    tenant = o.settings.tenant
    notice = InvitationType(args.type)
    kinds = [ScreeningKind(args.kind)] if args.kind else []
    try:
        wording = load_letters(tenant)
    except LettersError as exc:
        raise CommandError(str(exc)) from None
    out = Path(args.out)
    if not out.is_dir():
        raise CommandError(f"{out} is not a directory")
    selection = f"notices to mail {year} {notice.value}" + (f" {kinds[0].value}" if kinds else "")
    with staff_operation(o, "health", StaffOperationType.LIST, selection), o.engine.connect() as conn:
        letters, held = pending(conn, tenant, year, notice, kinds)
    letters = letters[: args.limit] if args.limit is not None else letters
    font_path()  # before the first batch: a machine without the font fails at once, not half-way
    total = -(-len(letters) // args.batch_size)
    print(f"{year}年度 {TYPE_LABEL[notice]}: {len(letters)} letter(s) to print in {total} batch(es) of up to "
          f"{args.batch_size}; {len(held)} person(s) under 支援措置 held (`kenshin-hub notice held`)")  # fmt: skip
    from tqdm import tqdm  # here, not at import: every CLI command imports this module

    today = date.today()
    bar = tqdm(total=len(letters), unit="通", file=sys.stderr, disable=None)
    try:
        for n, batch in enumerate(batches(letters, args.batch_size, out, notice, year), start=1):
            digests: dict[str, str] = {}
            target = f"notices {year} {notice.value} batch {batch.batch_id} ({len(batch.letters)} letters)"

            def detail(d: dict[str, str] = digests) -> str:
                return digests_detail(d)

            with staff_operation(o, "health", StaffOperationType.NOTICE_MAILING, target, detail) as session:
                try:
                    write_batch(batch, notice, year, wording, today, digests)
                    with o.engine.begin() as conn:
                        mark_mailed(conn, tenant, year, notice, batch, session.staff_id)
                except BaseException:
                    # not marked mailed: the batch's files go, so what is on disk is exactly what was mailed
                    for name in digests:
                        (out / name).unlink(missing_ok=True)
                    digests.clear()
                    raise
            bar.update(len(batch.letters))
            bar.write(f"  batch {n}/{total}: {len(batch.letters)} letter(s) → {batch.csv_path}, {batch.pdf_path}")
    finally:
        bar.close()
    return 0


def show_held(o: Office, year: int, notice: InvitationType | None) -> int:
    from hub.review import staff_operation

    tenant = o.settings.tenant
    types = [notice] if notice else list(InvitationType)
    with staff_operation(o, "health", StaffOperationType.LIST, f"notices held {year}"), o.engine.connect() as conn:
        found = [(t, h) for t in types for h in pending(conn, tenant, year, t)[1]]
    for t, h in found:
        state = "送付しない (staff decision)" if h.withheld else "決定待ち"
        print(f"{h.atena_no:<14}{h.name}  {TYPE_LABEL[t]}  {_kinds_text(h.kinds)}  {state}")
    print(f"({len(found)} held: 支援措置; `kenshin-hub notice mail-decide <宛名番号>` decides where they may go)")
    return 0


def decide(o: Office, args: argparse.Namespace) -> int:
    from hub.review import staff_operation

    tenant = o.settings.tenant
    if args.address is not None:
        decision, postcode, address = Decision.OTHER, args.postcode, args.address
        if not postcode or not is_valid_postcode(postcode):
            raise CommandError("--address needs --postcode NNN-NNNN")
    elif args.registered:
        decision, postcode, address = Decision.REGISTERED, None, None
    else:
        decision, postcode, address = Decision.WITHHOLD, None, None
    if not args.reason.strip():
        raise CommandError("--reason must say why")
    target = f"person {args.atena_no} mailing {decision}"
    operation = staff_operation(o, "health", StaffOperationType.MAILING_DECISION, target)
    with operation as session, o.engine.begin() as conn:
        r = residents
        flagged = conn.execute(
            sa.select(r.c.support_measure).where(r.c.tenant == tenant, r.c.atena_no == args.atena_no)
        ).scalar_one_or_none()
        if flagged is None:
            raise CommandError(f"no resident {args.atena_no}")
        if not flagged:
            raise CommandError(f"{args.atena_no} is not under 支援措置: notices go to the registered address")
        values = {"decision": decision, "postcode": postcode, "address": address, "reason": args.reason,
                      "staff_id": session.staff_id, "decided_at": now_utc()}  # fmt: skip
        done = conn.execute(
            mailing_decisions.update()
            .where(mailing_decisions.c.tenant == tenant, mailing_decisions.c.atena_no == args.atena_no)
            .values(**values)
        )
        if not done.rowcount:
            conn.execute(mailing_decisions.insert().values(tenant=tenant, atena_no=args.atena_no, **values))
    label = {Decision.OTHER: "送付先を指定", Decision.REGISTERED: "住民登録地に送付", Decision.WITHHOLD: "送付しない"}
    print(f"{args.atena_no}: {label[decision]} (decided by {session.staff_id})")
    return 0


def cmd_mailing(settings: Settings, args: argparse.Namespace) -> int:
    year = args.year if getattr(args, "year", None) is not None else fiscal_year(date.today())
    with office(settings) as o:
        if args.action == "mail":
            return mail(o, args, year)
        if args.action == "held":
            return show_held(o, year, InvitationType(args.type) if args.type else None)
        return decide(o, args)


def add_parsers(notice_sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    types = [t.value for t in InvitationType]
    mail_p = notice_sub.add_parser("mail", help="print the notices not yet mailed: mailing list (CSV), letters (PDF)")
    mail_p.add_argument("--type", required=True, choices=types, help="INVITATION 受診勧奨, CARRY_OVER 繰越受診通知")
    mail_p.add_argument("--year", type=int, default=None, help="fiscal year (default: the current one)")
    mail_p.add_argument("--kind", default=None, choices=[k.value for k in ScreeningKind])
    mail_p.add_argument("--batch-size", type=_positive, default=BATCH_SIZE, help="letters per batch (default 500)")
    mail_p.add_argument("--limit", type=_positive, default=None, help="print at most this many letters")
    mail_p.add_argument("--out", required=True, help="an existing directory for the batches' files")
    mail_p.set_defaults(func=cmd_mailing)
    held = notice_sub.add_parser("held", help="支援措置 persons whose notices wait for a staff decision")
    held.add_argument("--type", default=None, choices=types)
    held.add_argument("--year", type=int, default=None, help="fiscal year (default: the current one)")
    held.set_defaults(func=cmd_mailing)
    dec = notice_sub.add_parser("mail-decide", help="where a 支援措置 person's notices may be sent")
    dec.add_argument("atena_no", help="宛名番号")
    where = dec.add_mutually_exclusive_group(required=True)
    where.add_argument("--registered", action="store_true", help="to the registered address")
    where.add_argument("--address", default=None, help="to this address (with --postcode)")
    where.add_argument("--withhold", action="store_true", help="mail nothing")
    dec.add_argument("--postcode", default=None, help="郵便番号 NNN-NNNN of --address")
    dec.add_argument("--reason", required=True, help="why (recorded with the decision)")
    dec.set_defaults(func=cmd_mailing)


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value
