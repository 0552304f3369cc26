"""Documents of a folder or a tar file of LaTeX sources, as pipeline `Source`s (real inputs for
the ArXiv-to-Model pipeline, arXiv 2602.17288, `jaxpapers.text.latex`).

What counts as one document:
  * a source archive (`.tar`, `.tar.gz`, `.tgz`, or `.gz` other than `.tex.gz`): one paper, as
    in arXiv's source dumps; its id is the file name without the suffix;
  * a `.tex` (or gzip-compressed `.tex.gz`, as Debian ships larger documentation sources) file
    with `\\documentclass` outside comments: a main file; its `\\input` / `\\include` files are
    looked up among the .tex files of its folder and below; its id is its path without suffix.
A .tex file without `\\documentclass` that no main file inputs is a fragment, not a document
(counted in `fragments`). Other files are ignored (counted). A file that cannot be read is
still a source: reading it fails, and the pipeline counts it in `download_failed`.
"""

from __future__ import annotations

import dataclasses
import gzip
import posixpath
import re
import tarfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from jaxpapers.text import extraction
from jaxpapers.text.clean import remove_comments
from jaxpapers.text.latex import PipelineConfig, Source, bytes_source

ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".gz")
# Where .ci/run unpacks Debian's texlive-science-doc (`apt-get download` + `dpkg-deb -x`).
DEBIAN_TEX_CACHE = Path.home() / ".cache" / "jaxpapers" / "texlive"
DEBIAN_TEX_PACKAGE = "texlive-science-doc"
DEBIAN_TEX_INSTALL = (f"mkdir -p {DEBIAN_TEX_CACHE} && cd {DEBIAN_TEX_CACHE} && apt-get download "
                      f"{DEBIAN_TEX_PACKAGE} && dpkg-deb -x {DEBIAN_TEX_PACKAGE}_*.deb .")
_DOCUMENTCLASS = re.compile(r"\\documentclass(?![A-Za-z])")

Reader = Callable[[], bytes]


@dataclasses.dataclass
class Inventory:
  """What a folder or tar holds.

  Attributes:
    archives: id -> reader of a source archive's bytes.
    tex: path (".gz" dropped) -> reader of a .tex file's bytes (decompressed).
    ignored: files of other kinds.
    unreadable: .tex files that could not be read while looking for main files.
  """

  archives: dict[str, Reader] = dataclasses.field(default_factory=dict)
  tex: dict[str, Reader] = dataclasses.field(default_factory=dict)
  ignored: int = 0
  unreadable: list[str] = dataclasses.field(default_factory=list)


def debian_tex_dir(cache: Path = DEBIAN_TEX_CACHE) -> Path | None:
  """The unpacked texlive documentation tree (`usr/share/doc/texlive-doc`) if it holds .tex files."""
  root = Path(cache) / "usr" / "share" / "doc" / "texlive-doc"
  return root if root.is_dir() and next(root.rglob("*.tex*"), None) is not None else None


def _classify(inventory: Inventory, path: str, read: Reader) -> None:
  lower = path.lower()
  if lower.endswith(".tex"):
    inventory.tex[path] = read
  elif lower.endswith(".tex.gz"):
    inventory.tex[path[:-3]] = lambda: gzip.decompress(read())
  else:
    for suffix in ARCHIVE_SUFFIXES:
      if lower.endswith(suffix):
        inventory.archives[posixpath.basename(path)[:-len(suffix)]] = read
        return
    inventory.ignored += 1


def folder_inventory(root: Path, archives: bool = True) -> Inventory:
  """The files under `root` (recursively, sorted); `archives=False` ignores source archives
  (e.g. in a Debian documentation tree, where `.gz` files are compressed READMEs and styles)."""
  inventory = Inventory()
  for path in sorted(p for p in Path(root).rglob("*") if p.is_file() or p.is_symlink()):
    _classify(inventory, path.relative_to(root).as_posix(), path.read_bytes)
  if not archives:
    inventory.ignored += len(inventory.archives)
    inventory.archives = {}
  return inventory


def tar_inventory(archive: tarfile.TarFile) -> Inventory:
  """The regular members of an open tar archive (read while it stays open)."""
  inventory = Inventory()
  for member in archive.getmembers():
    if member.isfile():
      _classify(inventory, posixpath.normpath(member.name.lstrip("/")),
                lambda m=member: archive.extractfile(m).read())
  return inventory


def _folder_source(doc_id: str, main: str, group: dict[str, bytes], record) -> Source:
  def load(config: PipelineConfig):
    files = {p: data for p, data in group.items() if len(data) <= config.max_bytes}
    if main not in files:
      return extraction.Extracted(None, "empty_tex", "folder")
    return extraction.latex_from_files(files, "folder", config.faithful, config.max_depth, main=main)
  return Source(doc_id, record, load)


def _unreadable(doc_id: str, record) -> Source:
  def load(config: PipelineConfig):  # pylint: disable=unused-argument
    raise OSError(f"cannot read {doc_id}")
  return Source(doc_id, record, load)


def documents(inventory: Inventory) -> tuple[dict[str, Callable[[Any], Source]], dict[str, int]]:
  """The documents of an inventory: id -> `make(record) -> Source`, and counts of what was found.

  Returns:
    (documents in a stable order, {"archives", "main_files", "fragments", "ignored",
    "unreadable"}).
  """
  contents: dict[str, bytes] = {}
  unreadable = []
  for path, read in inventory.tex.items():
    try:
      contents[path] = read()
    except (OSError, EOFError):
      unreadable.append(path)
  mains = [p for p, data in contents.items()
           if b"\\documentclass" in data and _DOCUMENTCLASS.search(remove_comments(data.decode("utf-8", "replace")))]
  docs: dict[str, Callable[[Any], Source]] = {}
  for doc_id, read in inventory.archives.items():
    docs[doc_id] = lambda record, i=doc_id, r=read: bytes_source(i, record, r)
  included: set[str] = set(mains)
  for main in mains:
    folder = posixpath.dirname(main)
    group = {p: d for p, d in contents.items() if folder == "" or p == main or p.startswith(folder + "/")}
    included |= _inputs_of(main, group)
    doc_id = main[:-4] if main.lower().endswith(".tex") else main
    docs[doc_id] = lambda record, i=doc_id, m=main, g=group: _folder_source(i, m, g, record)
  for path in unreadable:
    doc_id = path[:-4] if path.lower().endswith(".tex") else path
    docs[doc_id] = lambda record, i=doc_id: _unreadable(i, record)
  found = {"archives": len(inventory.archives), "main_files": len(mains),
           "fragments": len(set(contents) - included), "ignored": inventory.ignored,
           "unreadable": len(unreadable)}
  return docs, found


def _inputs_of(main: str, group: Mapping[str, bytes]) -> set[str]:
  """The files `main` reaches through `\\input` / `\\include` (without decoding errors)."""
  decoded = {p: d.decode("utf-8", "replace") for p, d in group.items()}
  seen, todo = set(), [main]
  while todo:
    path = todo.pop()
    for m in extraction.INPUT_COMMAND.finditer(remove_comments(decoded[path])):
      target = extraction.lookup_input(decoded, m.group(2) if m.group(2) is not None else m.group(3),
                                  posixpath.dirname(main))
      if target is not None and target not in seen:
        seen.add(target)
        todo.append(target)
  return seen
