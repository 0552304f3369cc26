"""The normalization rules of jaxpapers.text.clean on hand-written LaTeX (ours and the authors')."""

import pytest

from jaxpapers.text import clean


@pytest.mark.parametrize("text, want", [
    ("a % comment\nb", "a \nb"),
    ("50\\% of x % c\nd", "50\\% of x \nd"),
    ("a \\\\% c\nd", "a \\\\\nd"),  # a line break, then a comment
    ("x \\begin{verbatim}\n% \\cite{k} 100%\n\\end{verbatim} y", "x  y"),
    ("x \\begin{lstlisting}\ncode\n\\end{lstlisting}y\\begin{minted}{py}\nz\n\\end{minted}", "x y"),
    ("\\verb|\\documentclass| and \\verb+%+ end", " and  end"),
    ("% \\begin{verbatim}\nkept", "\nkept"),  # a commented-out verbatim opens nothing
    ("x \\begin{verbatim} never closed", "x "),
])
def test_comments_and_verbatim(text, want):
  assert clean.remove_comments(text) == want


def test_authors_comment_rule_eats_escaped_percent():
  assert clean.remove_comments("50\\% of x % c\nd", faithful=True) == "50\\\nd"
  assert clean.remove_comments("\\begin{verbatim}a\\end{verbatim}", faithful=True) == "\\begin{verbatim}a\\end{verbatim}"


def test_preamble_and_end_document():
  text = "\\documentclass[a4]{article}\n\\usepackage{x}\n\\begin{document}\nBody\n\\end{document}\ntrailer"
  assert clean.remove_preamble(text) == "\nBody\n"
  assert clean.remove_preamble(text, faithful=True) == "\nBody\n\ntrailer"
  assert clean.remove_preamble("\\documentclass{article} no document env") == " no document env"


def test_commands_with_nested_braces():
  text = "a\\footnote{see {the} end} b\\cite[p.~3]{k1,k2} c\\label{x}\\ref{y} \\href{u}{v} \\url{w} d"
  assert clean.remove_commands(text) == "a b c   d"
  assert clean.remove_commands(text, faithful=True) == "a end} b\\cite[p.~3]{k1,k2} c {v}  d"
  assert clean.remove_commands("\\citep{a} \\citet*{b} \\eqref{c} \\citeauthor{d}") == "   "
  assert clean.remove_commands("\\reference{x} \\labelwidth") == "\\reference{x} \\labelwidth"  # longer names kept


def test_figures():
  text = "a\\begin{figure}[t]\\includegraphics[w=1]{f.pdf}\\caption{c}\\end{figure}b\\begin{figure*}x\\end{figure*}c"
  assert clean.remove_figures(text) == "abc"
  assert clean.remove_commands("x\\includegraphics[width=2cm]{f.png}y") == "xy"
  assert clean.remove_figures("a\\includegraphics[w]{f}b", faithful=True) == "ab"


def test_whitespace_and_full_clean():
  assert clean.collapse_whitespace("  a \n\n b\t c ") == "a b c"
  text = ("\\documentclass{article}\n% c\n\\begin{document}\n\\section{Intro}\\label{s}\nWe use $x^2 + 1$ and"
          "\n\\[ \\frac{a}{b} \\]\n\\begin{equation} E = mc^2 \\end{equation} 5\\% of cases\\cite{k}.\n"
          "\\begin{figure}\\caption{f}\\end{figure}\\end{document}")
  assert clean.clean_latex(text) == ("\\section{Intro} We use $x^2 + 1$ and \\[ \\frac{a}{b} \\] "
                                     "\\begin{equation} E = mc^2 \\end{equation} 5\\% of cases.")


def test_front_matter():
  text = "\\title[short]{A {Nested} Title\\\\ two} % c\n\\begin{abstract}\nWe \\cite{x} study.\n\\end{abstract}"
  assert clean.front_matter(text) == ("A {Nested} Title two", "We study.")
  assert clean.front_matter("no title") == ("", "")


def test_brace_end():
  assert clean.brace_end("{a{b}\\}c}d", 0) == 9
  assert clean.brace_end("{open", 0) == -1
