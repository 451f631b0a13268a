"""Abuse reports (ARF, RFC 5965) and bounces (RFC 3464 delivery status, then flufl.bounce's heuristics)."""

from __future__ import annotations

import email.parser
import email.policy
import re
from dataclasses import dataclass, field
from email.message import Message

from mailer.core.inbound import Bounce, Complaint, Failure
from mailer.load.inbound import _mime

_RETURNED = ("message/rfc822", "text/rfc822-headers", "message/rfc822-headers", "message/global",
             "message/global-headers")
_DAEMONS = re.compile(r"^(mailer[-_]?daemon|postmaster|mail[-_]?delivery[-_]?(system|subsystem)|"
                      r"mailerdaemon|bounces?|mdaemon|nobody|root)(\+.*)?@", re.IGNORECASE)
_BOUNCE_SUBJECT = re.compile(
    r"undeliver|undelivered|not\s+delivered|delivery\s+(status|fail|notification|problem|report|has\s+failed)|"
    r"returned\s+(mail|to\s+sender)|failure\s+notice|mail\s+delivery|could\s+not\s+be\s+delivered|"
    r"non-?deliver|unzustellbar|nicht\s+zugestellt|non\s+remis|no\s+entregado|non\s+recapitabile|"
    r"mail\s+system\s+error|delivery\s+failure|rejected|unable\s+to\s+deliver|warning:\s+could\s+not",
    re.IGNORECASE)
_STATUS_RE = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")
_SMTP_CODE_RE = re.compile(r"\b([45])\d\d[ -]")
_MAX_DIAGNOSTIC = 300
_JMRP_RE = re.compile(r"\s*complaint about message from\b", re.IGNORECASE)


@dataclass
class Returned:
    """What a report tells about the message it returns: its ids, keys and recipients."""

    message_ids: list[str] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)
    recipients: list[str] = field(default_factory=list)


def returned(msg: Message, *, scan_text: bool) -> Returned:
    """Message-ID, X-Mentor-Mailer-Key and To of every returned message or header block; with `scan_text`,
    also the Message-ID lines quoted in plain-text parts (qmail and old Gmail paste the headers inline)."""
    out = Returned()
    for part in _mime.walk(msg):
        ctype = _mime.content_type(part)
        if ctype in _RETURNED:
            inner = _inner(part)
            if inner is not None:
                out.message_ids += _mime.ids(_mime.header(inner, "Message-ID"))
                key = _mime.header(inner, "X-Mentor-Mailer-Key")
                if key:
                    out.keys.append(key)
                out.recipients += [a for _, a in _mime.addresses(inner, "To", "Cc")]
        elif scan_text and ctype.startswith("text/"):
            text = _mime.payload_text(part)
            out.message_ids += _mime.quoted_ids(text)
            out.keys += _mime.quoted_keys(text)
    return out


def _inner(part: Message) -> Message | None:
    children = _mime.subparts(part)
    if children:
        return children[0]
    text = _mime.payload_text(part)
    if not text.strip():
        return None
    try:
        return email.parser.Parser(policy=email.policy.compat32).parsestr(text, headersonly=True)
    except Exception:
        return None


# --- complaints ------------------------------------------------------------------------------------------

def complaint(msg: Message) -> Complaint | None:
    """The feedback-report part of an ARF message (RFC 5965), or None when there is none."""
    report_type = (_mime.param(msg, "report-type") or "").lower()
    for part in _mime.walk(msg):
        if _mime.content_type(part) != "message/feedback-report":
            continue
        fields = _block_fields(part)
        addresses = [a for a in (_address(v) for v in fields.get("original-rcpt-to", [])) if a]
        if not addresses:
            addresses = returned(msg, scan_text=False).recipients
        feedback = next(iter(fields.get("feedback-type", [])), None)
        agent = next(iter(fields.get("user-agent", [])), None)
        return Complaint(addresses=tuple(dict.fromkeys(addresses)),
                         feedback_type=feedback.lower() if feedback else None, user_agent=agent)
    if _JMRP_RE.match(_mime.header(msg, "Subject")):  # Microsoft's JMRP: no ARF part, the recipient in a header
        named = [_address(v) for p in _mime.walk(msg) for v in _mime.headers(p, "X-HmXmrOriginalRecipient")]
        addresses = [a for a in named if a] or returned(msg, scan_text=False).recipients
        return Complaint(addresses=tuple(dict.fromkeys(addresses)), feedback_type="abuse", user_agent="JMRP")
    if report_type == "feedback-report":  # the part is missing or mislabelled: still an abuse report
        return Complaint(addresses=tuple(dict.fromkeys(returned(msg, scan_text=False).recipients)),
                         feedback_type=None, user_agent=None)
    return None


def _block_fields(part: Message) -> dict[str, list[str]]:
    """The fields of a message/feedback-report (or one delivery-status block), lower-case names."""
    blocks = _mime.subparts(part) or [part]
    fields: dict[str, list[str]] = {}
    for block in blocks:
        for name, value in block.items():
            fields.setdefault(name.lower(), []).append(_mime.decode(value))
    return fields


def _address(value: str) -> str:
    """An address from 'rfc822; ann@example.org', '<ann@example.org>' or a bare address."""
    if ";" in value:
        value = value.split(";", 1)[1]
    value = value.strip().strip("<>").strip().lower()
    return value if "@" in value and " " not in value else ""


# --- bounces ---------------------------------------------------------------------------------------------

def looks_like_bounce(msg: Message) -> bool:
    """A delivery report, or mail from a mail system about a failure: worth asking flufl.bounce about."""
    if (_mime.param(msg, "report-type") or "").lower() == "delivery-status":
        return True
    if any(_mime.content_type(p) in ("message/delivery-status", "message/global-delivery-status")
           for p in _mime.walk(msg)):
        return True
    if _mime.header(msg, "X-Failed-Recipients"):
        return True
    sender = _mime.addresses(msg, "From")
    if sender and _DAEMONS.match(sender[0][1]):
        return True
    return bool(_BOUNCE_SUBJECT.search(_mime.header(msg, "Subject")))


def bounce(msg: Message) -> Bounce | None:
    """Every failed recipient: from the delivery-status fields when present, else from flufl.bounce.
    None when neither finds a failure (a success report, or a human writing about a bounce)."""
    structured, failures, delivered = _delivery_status(msg)
    found = {f.address for f in failures}
    heuristic = _flufl(msg)
    for address, permanent in heuristic:
        if address not in found and address not in delivered:
            failures.append(Failure(address, permanent, *_explain(msg, address)))
            found.add(address)
    for address in (a for _, a in _mime.addresses(msg, "X-Failed-Recipients")):
        if address not in found:
            failures.append(Failure(address, True, *_explain(msg, address)))
            found.add(address)
    if not failures:
        failures = _from_text(msg)
    if not failures and not (structured or _strong(msg)):
        return None
    # a report from a mail system that names no address we can read is still a bounce, never a reply
    return Bounce(failures=tuple(failures), structured=structured)


def _strong(msg: Message) -> bool:
    """A mail system wrote this (not a person writing about a bounce): its sender says so."""
    sender = _mime.addresses(msg, "From")
    return bool(_mime.header(msg, "X-Failed-Recipients")) or bool(sender and _DAEMONS.match(sender[0][1])) or (
        _mime.header(msg, "Return-Path").strip() == "<>" and bool(_BOUNCE_SUBJECT.search(_mime.header(msg, "Subject"))))


# where a bounce's own words end and the returned message begins; anchored at the line's start, since
# the words themselves say "the attached returned message" and the like
_CUT_RE = re.compile(r"^[\s>*=_-]*(original message|unsent message|below this line|(this is )?a copy of (the|your) "
                     r"(original )?message|returned message|message headers follow|headers of the original|"
                     r"received:\s)", re.IGNORECASE)
_TEXT_ADDRESS_RE = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")
_FAILURE_WORDS_RE = re.compile(r"unknown|not found|does not exist|no such|rejected|refused|denied|failed|"
                               r"quota|full|disabled|inactive|invalid|unavailable|undeliverable|"
                               r"deferred|delayed|timed out|retry|blocked", re.IGNORECASE)
_TEMPORARY_WORDS_RE = re.compile(r"deferred|delayed|will (be )?retr|still trying|timed out|try again",
                                 re.IGNORECASE)


def _from_text(msg: Message) -> list[Failure]:
    """A last look at a plain-text bounce flufl.bounce does not know: an address on a line that, with the
    next three (or, for a failure word, the two before), gives an SMTP code or a failure word, above the
    returned copy of the message."""
    own = {a for _, a in _mime.addresses(msg, "From", "To", "Return-Path")}
    found: dict[str, Failure] = {}
    for part in _mime.walk(msg):
        ctype = _mime.content_type(part)
        # a multipart whose boundary never appears is one text to the parser: read it as such
        broken = ctype.startswith("multipart/") and not part.is_multipart()
        if ctype != "text/plain" and not broken:
            continue
        lines = [line.strip() for line in _mime.payload_text(part, 200_000).splitlines()]
        for i, line in enumerate(lines):
            if _CUT_RE.search(line):
                break
            for raw in _TEXT_ADDRESS_RE.findall(line):
                address = raw.lower().strip(".")
                if address in own or _DAEMONS.match(address):
                    continue
                if address in found and found[address].status:
                    continue  # the line that gave a status code is the best explanation
                near = " ".join(x for x in lines[i:i + 4] if x)
                # the failure words may also head the list of addresses ("--- Failure Reasons ---")
                around = " ".join(x for x in lines[max(0, i - 2):i + 4] if x)
                code = _SMTP_CODE_RE.search(near + " ")
                status = _status_in(near)
                if not (code or status or _FAILURE_WORDS_RE.search(around)) or (address in found and not status):
                    continue
                klass = status[0] if status else code.group(1) if code else None
                permanent = klass == "5" if klass else not _TEMPORARY_WORDS_RE.search(near)
                found[address] = Failure(address, permanent, status, near[:_MAX_DIAGNOSTIC])
        if found:
            break
    return list(found.values())


def _delivery_status(msg: Message) -> tuple[bool, list[Failure], set[str]]:
    structured = False
    failures: list[Failure] = []
    delivered: set[str] = set()
    for part in _mime.walk(msg):
        if _mime.content_type(part) not in ("message/delivery-status", "message/global-delivery-status"):
            continue
        structured = True
        blocks = _mime.subparts(part)
        if not blocks:  # message/global-delivery-status is text to the parser: read its blocks by hand
            blocks = _text_blocks(_mime.payload_text(part))
        for block in blocks:
            # Original-Recipient is the address as we wrote it; Final-Recipient may be a rewritten alias
            recipient = _address(_mime.header(block, "Original-Recipient")) or \
                _address(_mime.header(block, "Final-Recipient"))
            if not recipient:
                continue
            action = _mime.header(block, "Action").lower().strip()
            status = _STATUS_RE.search(_mime.header(block, "Status"))
            diagnostic = _mime.header(block, "Diagnostic-Code")
            if ";" in diagnostic[:12]:
                diagnostic = diagnostic.split(";", 1)[1].strip()
            if action in ("delivered", "relayed", "expanded") or (status and status.group(1) == "2"):
                delivered.add(recipient)
                continue
            if status:
                permanent = status.group(1) == "5"
            else:
                code = _SMTP_CODE_RE.search(diagnostic + " ")
                permanent = code.group(1) == "5" if code else action != "delayed"
            failures.append(Failure(recipient, permanent, status.group(0) if status else _status_in(diagnostic),
                                    diagnostic[:_MAX_DIAGNOSTIC] or None))
    return structured, failures, delivered


def _text_blocks(text: str) -> list[Message]:
    parser = email.parser.Parser(policy=email.policy.compat32)
    return [parser.parsestr(chunk.strip() + "\n", headersonly=True) for chunk in re.split(r"\n\s*\n", text)
            if chunk.strip()]


def _flufl(msg: Message) -> list[tuple[str, bool]]:
    from flufl.bounce import all_failures  # imported here: only bounces need it

    try:
        temporary, permanent = all_failures(msg)
    except Exception:  # its heuristics index into parts that broken mail does not have
        return []
    out = []
    for raw, is_permanent in [*((a, True) for a in permanent), *((a, False) for a in temporary)]:
        address = _address(raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw))
        if address:
            out.append((address, is_permanent))
    return sorted(set(out))


def _explain(msg: Message, address: str) -> tuple[str | None, str | None]:
    """The status code and the server's line about `address` in a plain-text bounce, when one is found."""
    for part in _mime.walk(msg):
        if not _mime.content_type(part).startswith("text/plain"):
            continue
        lines = [line.strip() for line in _mime.payload_text(part, 200_000).splitlines()]
        for i, line in enumerate(lines):
            if address in line.lower():
                near = " ".join(x for x in lines[i:i + 4] if x)
                if _SMTP_CODE_RE.search(near + " ") or _STATUS_RE.search(near):
                    return _status_in(near), near[:_MAX_DIAGNOSTIC]
        for line in lines:
            if _SMTP_CODE_RE.match(line + " ") or _STATUS_RE.search(line):
                return _status_in(line), line[:_MAX_DIAGNOSTIC]
    return None, None


def _status_in(text: str) -> str | None:
    match = _STATUS_RE.search(text)
    return match.group(0) if match and match.group(1) != "2" else None
