"""Disclosure (Art. 43): public-safety matters published to residents, without personal data (issue 6).

Staff publish an item — about an alert (an incident), a hazard of the register, or a plain notice — with a public
title and text; the public feed (no login) lists what is published and not withdrawn, and a summary of the open
hazards by grade (no owners, no names). Publishing and withdrawing are audited in the alerts' hash chain, so what
residents were told, and when, is on record.

Personal data stays out: a text with a mainland mobile number or a resident ID number is refused with the reason
(residents' names cannot be recognised by a pattern; the text is written by staff for the public, and the audit
shows who wrote it). The feed shows an alert's place at building level at most, its kind, grade and state — never
who was paged or who answered.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field
from typing import Literal

__all__ = ["Disclosure", "SubjectKind", "personal_data_in"]

SubjectKind = Literal["alert", "hazard", "notice"]

_MOBILE = re.compile(r"(?<!\d)1[3-9]\d{9}(?!\d)")
_RESIDENT_ID = re.compile(r"(?<![\dXx])\d{17}[\dXx](?![\dXx])")


_SEPARATORS = re.compile(r"(?<=[\dXx])[\s\-.·\u3000]+(?=[\dXx])")
"""Spaces, dashes and dots between digits: ``138 0013 8000`` and ``138-0013-8000`` are one number to a reader."""
_COUNTRY = re.compile(r"(?:\+|00)?86(?=1[3-9]\d{9}(?!\d))")


def personal_data_in(text: str) -> str | None:
    """What kind of personal data ``text`` contains ("a mobile number", "a resident ID number"), or None — however
    the digits are spaced or grouped, and with or without the +86 country code."""
    squeezed = _COUNTRY.sub(" ", _SEPARATORS.sub("", text))
    if _RESIDENT_ID.search(squeezed):
        return "a resident ID number"
    if _MOBILE.search(squeezed):
        return "a mobile number"
    return None


@dataclass(frozen=True, slots=True, kw_only=True)
class Disclosure:
    """One published item of the public feed."""

    id: str = field(default_factory=lambda: f"pub-{secrets.token_hex(8)}")
    subject_kind: SubjectKind
    subject_id: str
    title: str
    text: str
    published_by: str
    published_ms: int
    withdrawn_by: str | None = None
    withdrawn_ms: int | None = None

    def __post_init__(self) -> None:
        if not self.title or not self.text or not self.published_by:
            raise ValueError("a disclosure needs a title, a text and who published it")
        for name, value in (("title", self.title), ("text", self.text)):
            found = personal_data_in(value)
            if found is not None:
                raise ValueError(f"the {name} contains {found}: personal data is never published")
