"""LaTeX normalization rules of ArXiv-to-Model (arXiv 2602.17288, section on preprocessing;
authors' code data_prep/latex_cleaner.py), applied in this order:

  1. comments: from an unescaped `%` to the end of the line; verbatim-like environments
     (verbatim, Verbatim, lstlisting, minted, comment) and inline `\\verb|..|` / `\\lstinline|..|`
     are removed in the same left-to-right scan (code listings are not prose, and a `%` inside
     them is not a comment);
  2. the preamble: `\\documentclass` up to and including `\\begin{document}`; then
     `\\end{document}` (and, by default, what follows it: TeX ignores it);
  3. figure environments (figure, figure*, wrapfigure) and `\\includegraphics`;
  4. `\\url`, `\\href` (both arguments), `\\cite` (and its natbib forms), `\\label`, `\\ref`
     (and eqref, autoref, cref, pageref), `\\footnote`: the command with its arguments;
  5. every whitespace run, newlines included, to one space.
Math (`$..$`, `\\[..\\]`, equation and align environments), sectioning commands and tables stay.

`faithful=True` applies the authors' regexes instead: `%.*` (which also deletes an escaped
`\\%` and everything after it), no verbatim removal, `\\cmd\\{.*?\\}` (non-greedy to the first
`}`: nested braces leave debris, `\\href`'s second argument survives), `\\includegraphics` up
to the next `}`, and only the `\\end{document}` token removed.
"""

from __future__ import annotations

import re

VERBATIM_ENVS = ("verbatim", "verbatim*", "Verbatim", "Verbatim*", "lstlisting", "minted", "comment")
FIGURE_ENVS = ("figure", "figure*", "wrapfigure")
# Commands removed with their arguments: name -> number of brace arguments.
REMOVED_COMMANDS = {
    "url": 1, "href": 2, "cite": 1, "citep": 1, "citet": 1, "citealp": 1, "citealt": 1,
    "citeauthor": 1, "citeyear": 1, "nocite": 1, "label": 1, "ref": 1, "eqref": 1, "autoref": 1,
    "cref": 1, "Cref": 1, "pageref": 1, "footnote": 1, "includegraphics": 1,
}

_SCAN = re.compile(
    r"(?P<env>\\begin\{(?P<name>" + "|".join(re.escape(e) for e in VERBATIM_ENVS) + r")\}"
    r".*?(?:\\end\{(?P=name)\}|\Z))"
    r"|(?P<inline>\\(?:verb|lstinline)\*?(?P<d>[^A-Za-z\s{*])[^\n]*?(?P=d))"
    r"|(?P<keep>\\\\|\\%)"  # an escaped backslash or percent: kept (`\\%` is a break, then a comment)
    r"|(?P<comment>%[^\n]*)", re.DOTALL)
_FAITHFUL_COMMANDS = re.compile(r"\\(?:url|href|cite|label|ref|footnote)\{.*?\}", re.DOTALL)
_PREAMBLE = re.compile(r"\\documentclass.*?\\begin\{document\}", re.DOTALL)
_DOCUMENTCLASS = re.compile(r"\\documentclass\s*(?:\[[^\]]*\])?\s*(?:\{[^}]*\})?")
_FAITHFUL_FIGURE = re.compile(r"\\begin\{figure\}.*?\\end\{figure\}", re.DOTALL)
_FIGURE = re.compile(r"\\begin\{(?P<name>" + "|".join(re.escape(e) for e in FIGURE_ENVS) + r")\}"
                     r"(?:.*?\\end\{(?P=name)\})?", re.DOTALL)
_COMMAND = re.compile(r"\\(" + "|".join(sorted(REMOVED_COMMANDS, key=len, reverse=True)) + r")(?![A-Za-z])\*?")
_WHITESPACE = re.compile(r"\s+")


def brace_end(text: str, start: int) -> int:
  """Index just past the `}` matching the `{` at `text[start]`, or -1 if it is unbalanced.

  Escaped braces (`\\{`, `\\}`) do not count.
  """
  depth, i = 0, start
  while i < len(text):
    c = text[i]
    if c == "\\":
      i += 2
      continue
    if c == "{":
      depth += 1
    elif c == "}":
      depth -= 1
      if depth == 0:
        return i + 1
    i += 1
  return -1


def remove_comments(text: str, faithful: bool = False) -> str:
  """Deletes `%` comments and verbatim-like environments (rule 1); `faithful`: `%.*`."""
  if faithful:
    return re.sub(r"%.*", "", text)
  return _SCAN.sub(lambda m: m.group("keep") or "", text)


def remove_preamble(text: str, faithful: bool = False) -> str:
  """Deletes the preamble and `\\end{document}` (rule 2)."""
  text = _PREAMBLE.sub("", text)
  if faithful:
    return text.replace("\\end{document}", "")
  text = text.split("\\end{document}", 1)[0]
  return _DOCUMENTCLASS.sub("", text)  # a \documentclass without \begin{document}


def remove_figures(text: str, faithful: bool = False) -> str:
  """Deletes figure environments (rule 3); `\\includegraphics` goes with the commands."""
  if faithful:
    return re.sub(r"\\includegraphics[^}]*\}", "", _FAITHFUL_FIGURE.sub("", text))
  return _FIGURE.sub("", text)


def _skip_spaces(text: str, i: int) -> int:
  while i < len(text) and text[i] in " \t\n":
    i += 1
  return i


def remove_commands(text: str, faithful: bool = False) -> str:
  """Deletes `\\url`, `\\href`, `\\cite`, `\\label`, `\\ref`, `\\footnote`, ... with their
  arguments (rule 4): optional `[..]` arguments and balanced `{..}` ones."""
  if faithful:
    return _FAITHFUL_COMMANDS.sub("", text)
  out, pos = [], 0
  for m in _COMMAND.finditer(text):
    if m.start() < pos:  # inside an argument already removed
      continue
    out.append(text[pos:m.start()])
    i, needed = m.end(), REMOVED_COMMANDS[m.group(1)]
    while True:
      j = _skip_spaces(text, i)
      if j < len(text) and text[j] == "[":
        close = text.find("]", j)
        if close < 0:
          break
        i = close + 1
      else:
        break
    for _ in range(needed):
      j = _skip_spaces(text, i)
      if j >= len(text) or text[j] != "{":
        break
      end = brace_end(text, j)
      if end < 0:
        i = len(text)
        break
      i = end
    pos = i
  out.append(text[pos:])
  return "".join(out)


def collapse_whitespace(text: str) -> str:
  """Every whitespace run (newlines included) to one space, stripped (rule 5)."""
  return _WHITESPACE.sub(" ", text).strip()


def clean_latex(text: str, faithful: bool = False) -> str:
  """The body of a LaTeX source after rules 1-5 (see the module docstring)."""
  text = remove_comments(text, faithful)
  text = remove_preamble(text, faithful)
  if faithful:
    text = remove_figures(_FAITHFUL_COMMANDS.sub("", text), True)
  else:
    text = remove_commands(remove_figures(text))
  return collapse_whitespace(text)


def _argument(text: str, command: str) -> str | None:
  m = re.search(r"\\" + command + r"\*?\s*(?:\[[^\]]*\])?\s*\{", text)
  if m is None:
    return None
  end = brace_end(text, m.end() - 1)
  return None if end < 0 else text[m.end():end - 1]


def front_matter(text: str) -> tuple[str, str]:
  """(title, abstract) of a LaTeX source without arXiv metadata: `\\title{..}` and the
  abstract environment, comments removed and whitespace collapsed ("" where absent)."""
  text = remove_comments(text)
  title = _argument(text, "title") or ""
  m = re.search(r"\\begin\{abstract\}(.*?)\\end\{abstract\}", text, re.DOTALL)
  abstract = m.group(1) if m else ""
  clean = lambda s: collapse_whitespace(remove_commands(s.replace("\\\\", " ")))  # noqa: E731
  return clean(title), clean(abstract)
