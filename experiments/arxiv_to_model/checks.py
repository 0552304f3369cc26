"""Hand-written cases of the ArXiv-to-Model pipeline rules (arXiv 2602.17288), checked in every
preset's report: each is (rule, input, expected output) written out by hand, for our rules and
for the authors' (`faithful=True`)."""

from __future__ import annotations

from jaxpapers.text import clean, metadata

# (name, function, input, expected)
CASES = (
    ("comment", lambda s: clean.remove_comments(s), "a % gone\nb", "a \nb"),
    ("escaped percent kept", lambda s: clean.remove_comments(s), "50\\% of x % c", "50\\% of x "),
    ("escaped percent, authors'", lambda s: clean.remove_comments(s, True), "50\\% of x % c", "50\\"),
    ("line break then comment", lambda s: clean.remove_comments(s), "a \\\\% c", "a \\\\"),
    ("verbatim removed", lambda s: clean.remove_comments(s), "a \\begin{verbatim}\n% \\cite{x}\n\\end{verbatim} b",
     "a  b"),
    ("preamble", lambda s: clean.remove_preamble(s), "\\documentclass{article}\n\\usepackage{x}\n"
     "\\begin{document}B\\end{document}tail", "B"),
    ("nested footnote", lambda s: clean.remove_commands(s), "x\\footnote{see {the} end}.", "x."),
    ("nested footnote, authors' debris", lambda s: clean.remove_commands(s, True), "x\\footnote{see {the} end}.",
     "x end}."),
    ("href both arguments", lambda s: clean.remove_commands(s), "a \\href{u}{text} b", "a  b"),
    ("figure", lambda s: clean.remove_figures(s), "a\\begin{figure}[t]\\includegraphics{f}\\caption{c}"
     "\\end{figure}b", "ab"),
    ("whitespace", clean.collapse_whitespace, "  a \n\n b\t c ", "a b c"),
    ("physics contains cs (authors')", lambda s: metadata.category_allowed(s, "substring"), "physics.optics", True),
    ("physics.optics blocked (prefix)", lambda s: metadata.category_allowed(s, "prefix"), "physics.optics", False),
    ("math-ph (prefix)", lambda s: metadata.category_allowed(s, "prefix"), "math-ph cs.LG", True),
    ("year parser", metadata.first_year, [{"created": "Mon, 2 Apr 2007 19:18:42 GMT"}], 2007),
)


def failing_cases() -> list[str]:
  """Names of the cases whose rule does not give the expected output."""
  return [name for name, fn, x, want in CASES if fn(x) != want]
