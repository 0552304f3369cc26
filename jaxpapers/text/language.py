"""A deterministic English check for the pipeline's language filter.

The authors (ArXiv-to-Model, arXiv 2602.17288; data_prep/filters.py) run `langdetect` on the
whole document and keep it when it says "en". langdetect is not a dependency here and is
random unless seeded; this check counts function words instead: the words of the text (letters
only, LaTeX commands and math dropped) are compared with short stop-word lists of English,
French, German, Spanish and Italian, and the text is English when English has the most hits and
they are at least `min_share` of the words.
"""

from __future__ import annotations

import re

STOPWORDS = {
    "en": set("the of and to in is that for it as with be on by this are we an from at which or "
              "not can if has have its let then there these where our one such any all but".split()),
    "fr": set("le la les des du de et en un une est que pour dans sur par avec nous sont au aux "
              "ce cette qui pas plus ou son ses leur on il elle".split()),
    "de": set("der die das und ist ein eine zu den dem des mit für von auf sich nicht wir sind im "
              "auch als bei oder aus wird es".split()),
    "es": set("el los las del y es una por con para que se su al lo como más pero sus".split()),
    "it": set("il di che e la per un una sono con non si lo della gli nel questo".split()),
}
_WORD = re.compile(r"(?<![\\A-Za-z])[^\W\d_]+", re.UNICODE)
_MATH = re.compile(r"\$[^$]*\$|\\\[.*?\\\]", re.DOTALL)


def language_scores(text: str) -> tuple[dict[str, int], int]:
  """(stop-word hits per language, words) of `text` outside `$..$` / `\\[..\\]` and commands."""
  words = [w.lower() for w in _WORD.findall(_MATH.sub(" ", text))]
  return {lang: sum(w in stop for w in words) for lang, stop in STOPWORDS.items()}, len(words)


def detect_language(text: str, min_share: float = 0.05) -> str:
  """"en" if English stop words lead and make up >= `min_share` of the words, else the
  leading language (or "unknown" when no list reaches `min_share`)."""
  hits, words = language_scores(text)
  lang = max(hits, key=lambda k: (hits[k], k == "en"))
  if words == 0 or hits[lang] < min_share * words:
    return "unknown"
  return lang
