"""Saved versions of the rules file: every save from the console, so changes can be rolled back."""

from __future__ import annotations

import difflib

import sqlalchemy as sa
from sqlalchemy.orm import Session

from .models import RulesVersion


def record_version(s: Session, text: str, by: str | None, comment: str | None = None) -> RulesVersion:
    version = RulesVersion(text=text, created_by=by, comment=comment or None)
    s.add(version)
    s.flush()
    return version


def list_versions(s: Session, limit: int = 100) -> list[RulesVersion]:
    """Newest first."""
    return list(s.scalars(sa.select(RulesVersion).order_by(RulesVersion.id.desc()).limit(limit)))


def get_version(s: Session, version_id: int) -> RulesVersion | None:
    return s.get(RulesVersion, version_id)


def previous_version(s: Session, version_id: int) -> RulesVersion | None:
    return s.scalar(sa.select(RulesVersion).where(RulesVersion.id < version_id)
                    .order_by(RulesVersion.id.desc()).limit(1))


def has_versions(s: Session) -> bool:
    return s.scalar(sa.select(sa.func.count()).select_from(RulesVersion)) != 0


def diff(old: str, new: str, old_name: str = "before", new_name: str = "after") -> list[str]:
    """A unified diff, line by line, for the versions page."""
    return list(difflib.unified_diff(old.splitlines(), new.splitlines(), old_name, new_name, lineterm=""))
