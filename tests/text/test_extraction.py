"""Extraction (jaxpapers.text.extraction) from in-memory tar / gzip / plain bytes."""

import gzip
import io
import tarfile

from jaxpapers.text import extraction

MAIN = b"\\documentclass{article}\n\\begin{document}\nMain body.\n\\end{document}\n"


def _tar(files, mode="w:gz"):
  buf = io.BytesIO()
  with tarfile.open(fileobj=buf, mode=mode) as tar:
    for name, data in files:
      info = tarfile.TarInfo(name)
      info.size = len(data)
      tar.addfile(info, io.BytesIO(data))
  return buf.getvalue()


def test_tar_gzip_plain_and_their_failures():
  for mode in ("w:gz", "w", "w:bz2"):
    e = extraction.extract_latex(_tar([("paper.TEX", MAIN), ("fig.png", b"\x89PNG")], mode))
    assert (e.status, e.kind, e.files) == ("ok", "tar", 1) and "Main body." in e.text
  g = extraction.extract_latex(gzip.compress(MAIN))
  assert (g.status, g.kind) == ("ok", "gzip") and g.text == MAIN.decode()
  p = extraction.extract_latex(MAIN)
  assert (p.status, p.kind) == ("ok", "plain")
  full = _tar([("a.tex", MAIN * 50)])
  assert extraction.extract_latex(full[: len(full) // 2]).status == "incorrect_tar_path"
  assert extraction.extract_latex(b"\x1f\x8b\x08garbage").status == "incorrect_tar_path"
  assert extraction.extract_latex(_tar([("refs.bib", b"@a{}")])).status == "empty_tex"
  assert extraction.extract_latex(gzip.compress(b"plain words, no latex")).status == "empty_tex"
  assert extraction.extract_latex(b"just text").status == "empty_tex"
  latin = "\\documentclass{article}\\begin{document}Schr\u00f6dinger\\end{document}".encode("latin-1")
  assert extraction.extract_latex(latin).status == "bad_encoding"
  assert "Schr\ufffddinger" in extraction.extract_latex(latin, faithful=True).text


def test_size_cap():
  big = MAIN + b"%" * 200
  assert extraction.extract_latex(_tar([("a.tex", big)]), max_bytes=len(big) - 1).status == "empty_tex"
  assert extraction.extract_latex(_tar([("a.tex", big)]), max_bytes=len(big)).status == "ok"
  # gzip single file: only the first max_bytes are read (here they hold the marker)
  g = extraction.extract_latex(gzip.compress(MAIN + b"x" * 1000), max_bytes=len(MAIN))
  assert g.status == "ok" and "x" not in g.text.replace("\\", "").split("document}")[-1]


def test_input_resolution_follows_the_main_file():
  main = (b"\\documentclass{article}\n\\begin{document}\n% \\input{old}\n\\input{sec/a}\n\\include{sec/b}\n"
          b"\\input sec/c.tex\n\\input{missing}\n\\end{document}\n")
  files = [("sec/c.tex", b"CCC"), ("sec/b.tex", b"BBB \\input{sec/nested}"), ("sec/nested.tex", b"NNN"),
           ("old.tex", b"OLD"), ("sec/a.tex", b"AAA % note"), ("main.tex", main)]
  e = extraction.extract_latex(_tar(files))
  t = e.text
  assert [t.index(x) for x in ("AAA", "BBB", "NNN", "CCC")] == sorted(t.index(x) for x in ("AAA", "BBB", "NNN", "CCC"))
  assert "OLD" not in t and "note" not in t and "\\input" not in t
  assert (e.inputs_resolved, e.inputs_missing, e.concatenated) == (4, 1, False)
  f = extraction.extract_latex(_tar(files), faithful=True)  # the authors: every .tex in archive order
  assert f.concatenated and f.text.index("CCC") < f.text.index("AAA") and "OLD" in f.text


def test_depth_limit_and_cycles():
  files = {"main.tex": "\\documentclass{x}\\input{a}", "a.tex": "A\\input{a}"}
  text, resolved, missing = extraction.resolve_inputs(files, "main.tex", max_depth=3)
  assert text.count("A") == 3 and (resolved, missing) == (3, 1)


def test_main_file_choice():
  files = {"appendix.tex": "\\documentclass{article} appendix", "ms.tex": "\\documentclass{article}"
           "\\begin{document}\\input{appendix}\\end{document}", "frag.tex": "% \\documentclass{x}\n text"}
  assert extraction.main_file(files) == "ms.tex"
  assert extraction.main_file({"frag.tex": "% \\documentclass{x}\n text"}) is None
  e = extraction.latex_from_files({"a.tex": b"A", "b.tex": b"B"}, "tar")  # no main: concatenated
  assert e.concatenated and e.text == "A\n\nB"
