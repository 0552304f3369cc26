"""A seeded synthetic arXiv: metadata records and in-memory LaTeX sources with injected defects,
so that every counter of the ArXiv-to-Model pipeline (arXiv 2602.17288; `jaxpapers.text.latex`)
has an exactly known expected value.

Each record carries at most one defect, drawn without replacement from a seeded permutation in
the shares of `DEFECTS` (the shares of the ArXiv-to-Model reproduction protocol, plus a few for
the counters it names but does not inject: missing ids, missing sources, bad encodings, short
bodies). The rest are clean papers: English prose from templates with inline and display math
carrying numbers, `%` comments (and an escaped `\\%`), `\\cite` / `\\ref` / `\\label` / `\\url` /
`\\href` / `\\footnote` (with nested braces), figure environments with `\\includegraphics`,
tables, and (for a share of them) a multi-file source: `\\input` / `\\include` of section files,
one nested, and a commented-out `\\input` of a file that must not be read. Sources are tar.gz
archives, except for the `gzip_single` share (one gzipped .tex file).
"""

from __future__ import annotations

import dataclasses
import gzip
import io
import random
import tarfile

import numpy as np

# defect -> (share of records, the counter it must raise under match="prefix").
DEFECTS = {
    "incorrect_id": (0.01, "incorrect_id"),
    "blocked_category": (0.02, "blocked_category"),  # q-bio.NC / astro-ph.GA: blocked by both matches
    "physics_only": (0.02, "blocked_category"),  # physics.optics: passes the substring match ("cs")
    "short_abstract": (0.05, "short_abstract"),
    "too_old": (0.03, "too_old"),
    "withdrawn": (0.02, "withdrawn"),
    "download_failed": (0.01, "download_failed"),
    "corrupt_archive": (0.04, "incorrect_tar_path"),
    "no_tex": (0.03, "empty_tex"),
    "bad_encoding": (0.01, "bad_encoding"),
    "too_short": (0.01, "too_short"),
    "non_english": (0.03, "non_english"),
    "duplicate": (0.03, "duplicate"),
}
GZIP_SHARE = 0.02  # clean papers shipped as one gzipped .tex file
MULTI_FILE_SHARE = 0.3  # clean tar papers split over \input / \include files
GOOD_CATEGORIES = ("math.AG", "cs.LG", "hep-th", "stat.ML", "math.PR", "cs.CL", "quant-ph", "hep-ph",
                   "math.NT cs.IT", "cs.DS math.CO")

_NOUNS = ("operator", "manifold", "estimator", "graph", "kernel", "algorithm", "network", "lattice",
          "measure", "sequence", "matrix", "polynomial", "field", "group", "process", "bound",
          "model", "function", "space", "distribution", "gradient", "tensor", "scheme", "ring")
_ADJS = ("compact", "linear", "convex", "random", "smooth", "finite", "stable", "sparse",
         "bounded", "regular", "optimal", "discrete", "symmetric", "local", "uniform", "dense")
_VERBS = ("prove", "show", "derive", "establish", "observe", "compute", "construct", "study")
_SETS = ("\\mathbb{R}", "\\mathbb{Z}", "\\mathbb{N}", "\\mathbb{C}")
_SENTENCES = (
    "We {verb} that the {adj} {noun} of the {noun2} is {adj2} for every {var} in ${set}$.",
    "In this section we {verb} a {adj} {noun} with at most {num} terms.",
    "The {noun} is {adj} if and only if the {noun2} has a {adj2} {noun3}.",
    "It follows that the {noun} converges at rate ${var}^{{-{small}}}$ as ${var} \\to \\infty$.",
    "Our {noun} improves the previous {noun2} by a factor of {num} on the {adj} {noun3}.",
    "For the {adj} case we use the {noun} of the {noun2} and a {adj2} {noun3}.",
    "This {noun} is {adj} and the {noun2} is {adj2}, which we {verb} below.",
    "As a result, about {small}\\% of the {noun}s are {adj} in our experiments.",
)
_FRENCH = ("le", "la", "les", "des", "et", "est", "une", "dans", "pour", "nous", "sont", "avec",
           "opérateur", "espace", "fonction", "théorème", "résultat", "groupe", "mesure", "borne")
_GERMAN = ("der", "die", "das", "und", "ist", "eine", "mit", "für", "wir", "sind", "nicht", "auf",
           "Operator", "Raum", "Funktion", "Satz", "Ergebnis", "Gruppe", "Maß", "Schranke")
_PREAMBLE = ("\\documentclass[11pt]{{article}}\n\\usepackage{{amsmath,amssymb}}\n\\usepackage{{graphicx}}\n"
             "% preamble comment\n\\newcommand{{\\R}}{{\\mathbb{{R}}}}\n\\title{{{title}}}\n\\begin{{document}}\n"
             "\\maketitle\n\\begin{{abstract}}\n{abstract}\n\\end{{abstract}}\n")


@dataclasses.dataclass(frozen=True)
class SynthArxiv:
  """The corpus.

  Attributes:
    records: metadata records in the snapshot's format (`id`, `title`, `abstract`,
      `categories`, `versions`, `comments`); the `incorrect_id` ones have no `id`.
    sources: id -> source bytes (absent for the `download_failed` records).
    defects: the defect of each record ("clean" or a key of `DEFECTS`), by position.
    math: id -> the math fragments of a clean paper, which must survive normalization verbatim.
    order: id -> the section markers of a multi-file paper, in `\\input` order.
  """

  records: list[dict]
  sources: dict[str, bytes]
  defects: list[str]
  math: dict[str, list[str]]
  order: dict[str, list[str]]

  def expected(self, match: str = "prefix") -> dict[str, int]:
    """The counters the pipeline must report (see `jaxpapers.text.latex.COUNTERS`)."""
    out: dict[str, int] = {}
    for d in self.defects:
      if d == "clean" or (d == "physics_only" and match == "substring"):
        continue
      counter = DEFECTS[d][1]
      out[counter] = out.get(counter, 0) + 1
    out["blocked_by_filter"] = sum(out.get(k, 0) for k in ("blocked_category", "short_abstract",
                                                            "too_old", "withdrawn"))
    passed = len(self.defects) - out.get("incorrect_id", 0) - out["blocked_by_filter"]
    out["downloaded"] = passed - out.get("download_failed", 0)
    out["extracted"] = out["downloaded"] - sum(out.get(k, 0) for k in ("incorrect_tar_path", "empty_tex",
                                                                       "bad_encoding"))
    out["written"] = out["extracted"] - sum(out.get(k, 0) for k in ("too_short", "non_english", "duplicate"))
    out["records"] = len(self.defects)
    return out


def _counts(n: int) -> dict[str, int]:
  return {d: int(round(share * n)) for d, (share, _) in DEFECTS.items()}


class _Writer:
  """Draws the prose, math and LaTeX of one paper from a `random.Random` stream."""

  def __init__(self, rng: random.Random):
    self.rng = rng
    self.math: list[str] = []

  def pick(self, items):
    return items[self.rng.randrange(len(items))]

  def sentence(self) -> str:
    r = self.rng
    s = self.pick(_SENTENCES).format(
        verb=self.pick(_VERBS), adj=self.pick(_ADJS), adj2=self.pick(_ADJS), noun=self.pick(_NOUNS),
        noun2=self.pick(_NOUNS), noun3=self.pick(_NOUNS), var=self.pick("xyzntk"), set=self.pick(_SETS),
        num=r.randrange(2, 100_000), small=r.randrange(1, 99))
    return s

  def inline_math(self) -> str:
    r = self.rng
    m = f"${self.pick('xyzab')}_{{{r.randrange(1, 10)}}} + {r.randrange(10, 10_000)} = {self.pick('uvw')}$"
    self.math.append(m)
    return m

  def display_math(self) -> str:
    n = self.rng.randrange(2, 50)
    m = f"\\[ \\sum_{{i=1}}^{{{n}}} \\frac{{a_i}}{{{n + 1}}} \\le \\sqrt{{{n * 3}}} \\]"
    self.math.append(m)
    return m

  def paragraph(self, sentences: int) -> str:
    parts = []
    for k in range(sentences):
      parts.append(self.sentence())
      roll = self.rng.random()
      if roll < 0.25:
        parts.append(f"Hence {self.inline_math()} holds.")
      elif roll < 0.35:
        parts.append(f"By \\cite{{ref{self.rng.randrange(100)}}} and Lemma~\\ref{{lem:{k}}} the claim follows.")
      elif roll < 0.4:
        parts.append("See \\url{https://example.org/data} for the code.% trailing comment")
      elif roll < 0.45:
        parts.append("The bound is tight\\footnote{See {the} appendix for {a} proof.}.")
      elif roll < 0.5:
        parts.append("Details are in \\href{https://example.org}{the report}.")
    return "\n".join(parts)

  def section(self, title: str) -> str:
    r = self.rng
    body = [f"\\section{{{title}}}\\label{{sec:{title.lower()}}}", self.paragraph(r.randrange(3, 7)),
            "% a comment line that must vanish", self.display_math(), self.paragraph(r.randrange(2, 5))]
    if r.random() < 0.4:
      body.append("\\begin{figure}[t]\n\\centering\n\\includegraphics[width=0.5\\linewidth]{fig1.pdf}\n"
                  "\\caption{A figure caption.}\\label{fig:one}\n\\end{figure}")
    if r.random() < 0.3:
      k = r.randrange(1, 100)
      body.append(f"\\begin{{tabular}}{{cc}}\n$n$ & {k} \\\\\n$m$ & {k + 1} \\\\\n\\end{{tabular}}")
    if r.random() < 0.4:
      eq = f"E = {r.randrange(2, 9)} m c^2"
      self.math.append(eq)
      body.append(f"\\begin{{equation}}\\label{{eq:one}}\n{eq}\n\\end{{equation}}")
    return "\n".join(body)


def _words(rng: random.Random, vocab, n: int) -> str:
  return " ".join(rng.choice(vocab) for _ in range(n))


def _tar_gz(files: list[tuple[str, bytes]]) -> bytes:
  buf = io.BytesIO()
  with tarfile.open(fileobj=buf, mode="w:gz", compresslevel=1) as tar:
    for name, data in files:
      info = tarfile.TarInfo(name)
      info.size, info.mtime = len(data), 0
      tar.addfile(info, io.BytesIO(data))
  return buf.getvalue()


def _gzip(data: bytes) -> bytes:
  return gzip.compress(data, compresslevel=1, mtime=0)


def _english_abstract(w: _Writer, words: int) -> str:
  text = " ".join(w.sentence() for _ in range(6))
  return " ".join(text.split()[:words])


def synth_arxiv(n: int = 2000, seed: int = 0) -> SynthArxiv:
  """`n` records with their sources and defects (see the module docstring); fixed by `seed`."""
  rng = np.random.default_rng(seed)
  counts = _counts(n)
  if sum(counts.values()) > n:
    raise ValueError(f"n={n} is too small for the defect shares")
  defects = ["clean"] * n
  order = rng.permutation(n)
  pos = 0
  for d, c in counts.items():
    for i in order[pos:pos + c]:
      defects[int(i)] = d
    pos += c
  clean_ids = [i for i in range(n) if defects[i] == "clean"]
  gzip_ids = set(int(i) for i in rng.choice(clean_ids, int(round(GZIP_SHARE * n)), replace=False))
  records, sources, math, orders = [], {}, {}, {}
  built: dict[int, tuple[dict, bytes]] = {}
  for i in range(n):
    d = defects[i]
    pid = f"{2100 + i // 10_000}.{i % 10_000:05d}"
    w = _Writer(random.Random(f"synth_arxiv/{seed}/{i}"))
    year = w.rng.randrange(1995, 2026) if d != "too_old" else w.rng.randrange(1988, 1995)
    categories = w.pick(GOOD_CATEGORIES)
    if d == "blocked_category":
      categories = w.pick(("q-bio.NC", "astro-ph.GA"))
    elif d == "physics_only":
      categories = "physics.optics"
    title = f"On the {w.pick(_ADJS)} {w.pick(_NOUNS)} of {w.pick(_ADJS)} {w.pick(_NOUNS)}s"
    abstract = _english_abstract(w, 10 if d == "short_abstract" else (20 if d == "too_short" else 40))
    comments = "This paper has been withdrawn by the author" if d == "withdrawn" else "12 pages, 3 figures"
    if d == "non_english":
      vocab = w.pick((_FRENCH, _GERMAN))
      title, abstract = _words(w.rng, vocab, 6), _words(w.rng, vocab, 40)
    record = {"id": pid, "title": title, "abstract": abstract, "categories": categories,
              "versions": [{"version": "v1", "created": f"Mon, 2 Apr {year} 14:00:00 GMT"}],
              "comments": comments}
    if d == "incorrect_id":
      del record["id"]
    if d == "duplicate":
      originals = [j for j in clean_ids if j in built and j not in gzip_ids]
      j = originals[w.rng.randrange(len(originals))] if originals else None
      if j is None:  # nothing clean before it: copy the next clean paper, built here first
        j = next(k for k in clean_ids if k not in gzip_ids)
        built[j] = built.get(j) or _paper(j, seed, gzip_ids, math, orders)
      original, data = built[j]
      record = dict(original, id=pid)
      sources[pid] = data
      records.append(record)
      continue
    if d == "clean":
      if i not in built:
        built[i] = _paper(i, seed, gzip_ids, math, orders)
      record, data = built[i]
      sources[pid] = data
      records.append(record)
      continue
    body_w = _Writer(w.rng)
    if d == "non_english":
      body = "\n\n".join(_words(w.rng, vocab, 60) for _ in range(4))
    elif d == "too_short":
      body = "Short note."
    elif d == "bad_encoding":
      body = body_w.section("Introduction") + "\nThe Schr\u00f6dinger operator is bounded."
    else:
      body = body_w.section("Introduction") + "\n" + body_w.section("Results")
    tex = _PREAMBLE.format(title=title, abstract=abstract) + body + "\n\\end{document}\n"
    if d == "too_short":  # no abstract environment in the body: the whole text stays under 50 words
      tex = "\\documentclass{article}\n\\begin{document}\n" + body + "\n\\end{document}\n"
    data = tex.encode("latin-1" if d == "bad_encoding" else "utf-8")
    if d == "corrupt_archive":
      full = _tar_gz([("main.tex", data)])
      sources[pid] = full[:len(full) // 2]
    elif d == "no_tex":
      sources[pid] = _tar_gz([("refs.bib", b"@article{ref1, title={A}}\n"), ("fig1.png", b"\x89PNG\r\n")])
    elif d != "download_failed" and d != "incorrect_id":
      sources[pid] = _tar_gz([("main.tex", data)])
    records.append(record)
  return SynthArxiv(records, sources, defects, math, orders)


def _paper(i: int, seed: int, gzip_ids, math, orders) -> tuple[dict, bytes]:
  """Record and source bytes of clean paper `i` (its own random stream, so any order builds it)."""
  pid = f"{2100 + i // 10_000}.{i % 10_000:05d}"
  w = _Writer(random.Random(f"synth_arxiv/{seed}/{i}/paper"))
  year = w.rng.randrange(1995, 2026)
  title = f"On the {w.pick(_ADJS)} {w.pick(_NOUNS)} of {w.pick(_ADJS)} {w.pick(_NOUNS)}s"
  abstract = _english_abstract(w, 40)
  record = {"id": pid, "title": title, "abstract": abstract, "categories": w.pick(GOOD_CATEGORIES),
            "versions": [{"version": "v1", "created": f"Tue, 7 Jan {year} 10:00:00 GMT"}],
            "comments": "10 pages"}
  head = _PREAMBLE.format(title=title, abstract=abstract)
  names = ["Introduction", "Method", "Details", "Results"]
  sections = {name: w.section(name) for name in names}
  multi = i not in gzip_ids and w.rng.random() < MULTI_FILE_SHARE
  if multi:
    main = (head + "% \\input{sections/old}\n\\input{sections/intro}\n\\include{sections/method}\n"
            "\\input sections/results.tex\n\\end{document}\n")
    files = [("sections/intro.tex", sections["Introduction"]),
             ("sections/method.tex", sections["Method"] + "\n\\input{sections/details}\n"),
             ("sections/details.tex", sections["Details"]),
             ("sections/results.tex", sections["Results"]),
             ("sections/old.tex", "OBSOLETE draft text that must not be read."),
             ("main.tex", main), ("refs.bib", "@article{ref1, title={A}}\n")]
    data = _tar_gz([(name, text.encode()) for name, text in files])
    orders[pid] = [f"\\section{{{name}}}" for name in names]
  else:
    tex = head + "\n".join(sections[name] for name in names) + "\n\\end{document}\n"
    data = _gzip(tex.encode()) if i in gzip_ids else _tar_gz([("main.tex", tex.encode()),
                                                              ("fig1.png", b"\x89PNG\r\n")])
  math[pid] = list(w.math)
  return record, data
