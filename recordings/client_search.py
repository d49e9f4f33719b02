"""Finding client cards by name or by part of a number (the console's search box)."""

from __future__ import annotations

import re

import sqlalchemy as sa
from sqlalchemy.orm import Session, selectinload

from .models import Client, PhoneNumber

MIN_DIGITS = 4  # fewer digits match half the book


def search_clients(s: Session, text: str, e164: str | None = None, limit: int = 50) -> list[Client]:
    """Cards whose name contains `text`, whose number is `e164`, or whose number contains its digits."""
    conditions: list[sa.ColumnElement[bool]] = []
    text = text.strip()
    if text:
        conditions.append(sa.func.lower(Client.name).contains(text.lower(), autoescape=True))
    digits = re.sub(r"\D", "", text)
    numbers = [PhoneNumber.e164 == e164] if e164 else []
    if len(digits) >= MIN_DIGITS:
        numbers.append(PhoneNumber.e164.contains(digits, autoescape=True))
    if numbers:
        conditions.append(Client.id.in_(sa.select(PhoneNumber.client_id).where(sa.or_(*numbers))))
    if not conditions:
        return []
    return list(s.scalars(sa.select(Client).options(selectinload(Client.numbers))
                          .where(sa.or_(*conditions)).order_by(Client.name, Client.id).limit(limit)))
