"""Metadata filters of ArXiv-to-Model (arXiv 2602.17288; authors' code data_prep/filters.py),
applied to the arXiv metadata snapshot's records before any source is read:

  * categories: the record's `categories` string must name one of the domains in `DOMAINS`;
  * abstract: at least `MIN_ABSTRACT_WORDS` whitespace-separated words;
  * year: the first 19xx/20xx year in `versions[0].created` must be >= `MIN_YEAR`;
  * withdrawn: `comments` must not contain "withdrawn" (any case).

Category matching: `match="substring"` is the authors' test (`any(d in categories)`), which
is looser than the named domains: "physics" contains "cs", so physics.optics passes, as does
any category containing "math" (math-ph). `match="prefix"` (our default) compares each
space-separated category with the domains: equal to one, or one followed by "." (cs.LG,
math.AG; not math-ph, not physics.optics).
"""

from __future__ import annotations

import re
from typing import Any, Mapping

DOMAINS = ("math", "cs", "hep-th", "hep-ph", "quant-ph", "stat.ML", "stat.TH")
MIN_ABSTRACT_WORDS = 20
MIN_YEAR = 1995
MATCHES = ("prefix", "substring")
_YEAR = re.compile(r"(19|20)\d\d")

# The filter's reasons, in the order they are tested (the first failing one is counted).
REASONS = ("blocked_category", "short_abstract", "too_old", "withdrawn")


def category_allowed(categories: str, match: str = "prefix", domains=DOMAINS) -> bool:
  """Whether a record's space-separated `categories` string names an allowed domain."""
  if match == "substring":
    return any(d in categories for d in domains)
  if match != "prefix":
    raise ValueError(f"match must be one of {MATCHES}, got {match!r}")
  return any(c == d or c.startswith(d + ".") for c in categories.split() for d in domains)


def first_year(versions: Any) -> int | None:
  """The first 19xx/20xx year in `versions[0]["created"]` (None if there is none)."""
  try:
    created = str(versions[0]["created"])
  except (TypeError, KeyError, IndexError):
    return None
  m = _YEAR.search(created)
  return int(m.group(0)) if m else None


def filter_record(record: Mapping[str, Any], match: str = "prefix") -> str | None:
  """The first filter a metadata record fails (one of `REASONS`), or None if it passes."""
  if not category_allowed(str(record.get("categories") or ""), match):
    return "blocked_category"
  if len(str(record.get("abstract") or "").split()) < MIN_ABSTRACT_WORDS:
    return "short_abstract"
  year = first_year(record.get("versions"))
  if year is None or year < MIN_YEAR:
    return "too_old"
  if "withdrawn" in str(record.get("comments") or "").lower():
    return "withdrawn"
  return None
