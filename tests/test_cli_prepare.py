"""`jaxpapers prepare arxiv` on hand-made folders and tars: outputs, counts, bad input (exit 2)."""

import gzip
import io
import json
import tarfile

import pytest

from jaxpapers import cli

WORDS = " ".join(f"the bound of the operator {i} is tight for the graph." for i in range(8))
MAIN = ("\\documentclass{article}\n\\title{A Real Title}\n\\begin{document}\n\\begin{abstract}\nWe study the graph."
        "\n\\end{abstract}\n\\input{sec}\n\\end{document}\n")
SEC = f"\\section{{Intro}} {WORDS} % comment\nSee \\cite{{k}} and $x_1 + 2$."
BODY = (f"\\begin{{abstract}} We study the graph. \\end{{abstract}} \\section{{Intro}} {WORDS} See and $x_1 + 2$.")


def _targz(files):
  buf = io.BytesIO()
  with tarfile.open(fileobj=buf, mode="w:gz") as tar:
    for name, text in files.items():
      data = text.encode()
      info = tarfile.TarInfo(name)
      info.size = len(data)
      tar.addfile(info, io.BytesIO(data))
  return buf.getvalue()


@pytest.fixture
def folder(tmp_path):
  root = tmp_path / "in"
  (root / "paper1").mkdir(parents=True)
  (root / "paper1" / "main.tex").write_text(MAIN)
  (root / "paper1" / "sec.tex").write_text(SEC)
  (root / "fragment.tex").write_text("no documentclass here")
  (root / "broken.tex.gz").write_bytes(b"\x1f\x8b\x08\x00broken")
  (root / "notes.txt").write_text("ignored")
  (root / "2101.00002.tar.gz").write_bytes(_targz({"ms.tex": MAIN.replace("A Real Title", "Other"), "sec.tex": SEC}))
  return root


def _read(path):
  return [json.loads(line) for line in path.read_text().splitlines()]


def test_folder_without_metadata(folder, tmp_path, capsys):
  out = tmp_path / "out"
  assert cli.main(["prepare", "arxiv", "--input", str(folder), "--out", str(out), "--no-progress"]) == 0
  docs = {d["id"]: d["text"] for d in _read(out / "documents.jsonl")}
  assert docs["paper1/main"] == f"Title: A Real Title\nAbstract: We study the graph.\nBody: {BODY}"
  assert set(docs) == {"paper1/main", "2101.00002"} and _read(out / "validation.jsonl") == []
  stats = json.loads((out / "stats.json").read_text())
  c = stats["counters"]
  assert (c["records"], c["written"], c["download_failed"], c["metadata_skipped"], c["inputs_resolved"]) == (3, 2, 1, 3, 2)
  assert (stats["input"]["fragments"], stats["input"]["ignored"], stats["input"]["unreadable"]) == (1, 1, 1)
  assert stats["metadata"].startswith("skipped")
  assert "written 2" in capsys.readouterr().out


def test_tar_input_with_metadata(folder, tmp_path):
  tar_path = tmp_path / "dump.tar"
  with tarfile.open(tar_path, "w") as tar:
    tar.add(folder, arcname=".")
  abstract = " ".join(["word"] * 25)
  meta = tmp_path / "meta.jsonl"
  meta.write_text("\n".join([
      json.dumps({"id": "2101.00002", "title": "Meta\n  Title", "abstract": abstract, "categories": "cs.LG",
                  "versions": [{"created": "Mon, 4 Jan 2021"}], "comments": ""}),
      json.dumps({"id": "2101.00003", "title": "Gone", "abstract": abstract, "categories": "math.AG",
                  "versions": [{"created": "Mon, 4 Jan 2021"}]}),
      json.dumps({"id": "2101.00004", "title": "Bio", "abstract": abstract, "categories": "q-bio.NC",
                  "versions": [{"created": "Mon, 4 Jan 2021"}]}),
      "{not json", "[1, 2]"]) + "\n")
  out = tmp_path / "out"
  assert cli.main(["prepare", "arxiv", "--input", str(tar_path), "--metadata", str(meta), "--out", str(out),
                   "--no-progress"]) == 0
  docs = _read(out / "documents.jsonl")
  assert [d["id"] for d in docs] == ["2101.00002"]
  assert docs[0]["text"].startswith(f"Title: Meta Title\nAbstract: {abstract}\nBody: \\begin{{abstract}}")
  stats = json.loads((out / "stats.json").read_text())
  c = stats["counters"]
  assert (c["records"], c["written"], c["download_failed"], c["blocked_category"]) == (3, 1, 1, 1)
  assert (stats["input"]["not_in_metadata"], stats["input"]["bad_metadata_lines"]) == (2, 2)


def test_bad_input_is_one_line_and_exit_2(folder, tmp_path, capsys):
  out = tmp_path / "out"
  assert cli.main(["prepare", "arxiv", "--input", str(tmp_path / "nope"), "--out", str(out)]) == 2
  assert "does not exist" in capsys.readouterr().err and not out.exists()
  not_tar = tmp_path / "x.txt"
  not_tar.write_text("hello")
  assert cli.main(["prepare", "arxiv", "--input", str(not_tar), "--out", str(out)]) == 2
  assert "neither a folder nor a readable tar" in capsys.readouterr().err
  assert cli.main(["prepare", "arxiv", "--input", str(folder), "--out", str(out), "--no-progress"]) == 0
  before = (out / "documents.jsonl").read_text()
  assert cli.main(["prepare", "arxiv", "--input", str(folder), "--out", str(out)]) == 2
  assert "already holds" in capsys.readouterr().err and (out / "documents.jsonl").read_text() == before
  assert cli.main(["prepare", "arxiv", "--input", str(folder), "--out", str(out), "--metadata",
                   str(tmp_path / "missing.jsonl"), "--overwrite"]) == 2
  assert "cannot read --metadata" in capsys.readouterr().err
  with pytest.raises(SystemExit) as e:
    cli.main(["prepare", "arxiv", "--out", str(out)])
  assert e.value.code == 2


def test_gzip_compressed_sources_in_a_folder(tmp_path):
  root = tmp_path / "in"
  root.mkdir()
  (root / "doc.tex.gz").write_bytes(gzip.compress(MAIN.replace("\\input{sec}", "\\input{part}").encode()))
  (root / "part.tex.gz").write_bytes(gzip.compress(SEC.encode()))
  out = tmp_path / "out"
  assert cli.main(["prepare", "arxiv", "--input", str(root), "--out", str(out), "--no-progress"]) == 0
  (doc,) = _read(out / "documents.jsonl")
  assert doc["id"] == "doc" and doc["text"].endswith(BODY)
