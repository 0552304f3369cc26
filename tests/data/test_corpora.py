"""Tests for jaxpapers.data.corpora."""

import numpy as np
import pytest

from jaxpapers import data


def test_text_source_byte_level(tmp_path):
  path = tmp_path / "a.txt"
  text = "hello world, héllo again!\n" * 3
  path.write_text(text, encoding="utf-8")
  src = data.TextSource([path], seq_len=8)
  raw = np.frombuffer(text.encode("utf-8"), np.uint8)
  assert src.vocab_size == 256
  assert len(src) == (len(raw) - 1) // 8
  for i in range(len(src)):
    ex = src[i]
    assert ex["inputs"].dtype == np.int32 and ex["inputs"].shape == (8,)
    np.testing.assert_array_equal(ex["inputs"], raw[i * 8:(i + 1) * 8])
    np.testing.assert_array_equal(ex["targets"], raw[i * 8 + 1:(i + 1) * 8 + 1])
    np.testing.assert_array_equal(ex["inputs"][1:], ex["targets"][:-1])
  batch = next(data.batches(src, 4, shuffle=False))
  np.testing.assert_array_equal(batch["inputs"][1], src[1]["inputs"])
  assert src.decode(src.encode(text)) == text


def test_text_source_char_level(tmp_path):
  path = tmp_path / "b.txt"
  text = "abcabd ünïcode ✓\n" * 4
  path.write_text(text, encoding="utf-8")
  src = data.TextSource([str(path)], seq_len=5, level="char")
  assert src.vocab == "".join(sorted(set(text)))
  assert src.vocab_size == len(set(text))
  assert src.decode(src.encode(text)) == text
  assert src.decode(src.encode("✓ba")) == "✓ba"
  assert len(src) == (len(text) - 1) // 5
  ex = src[2]
  assert src.decode(ex["inputs"]) == text[10:15]
  assert src.decode(ex["targets"]) == text[11:16]
  np.testing.assert_array_equal(ex["inputs"][1:], ex["targets"][:-1])
  assert ex["inputs"].max() < src.vocab_size
  with pytest.raises(ValueError, match="vocabulary"):
    src.encode("xyz")
  shared = data.TextSource([path], seq_len=5, level="char", vocab=src.vocab)
  np.testing.assert_array_equal(shared.tokens, src.tokens)


def test_text_source_default_stdlib_corpus():
  src = data.TextSource(seq_len=64, max_bytes=20_000)
  assert 0 < len(src) <= 20_000 // 64
  batch = next(data.batches(src, 16, shuffle=False))
  assert batch["inputs"].shape == (16, 64)
  text = src.decode(np.concatenate(
      [src[i]["inputs"] for i in range(len(src))]
  ))
  assert "def " in text and "import " in text
  char_src = data.TextSource(seq_len=32, level="char", max_bytes=5_000)
  assert "d" in char_src.vocab and char_src.vocab_size < 256


def test_text_source_errors(tmp_path):
  missing = tmp_path / "nope.txt"
  with pytest.raises(ValueError, match="nope.txt"):
    data.TextSource([missing], seq_len=4)
  empty = tmp_path / "empty.txt"
  empty.write_text("")
  with pytest.raises(ValueError, match="empty.txt"):
    data.TextSource([empty], seq_len=4)
