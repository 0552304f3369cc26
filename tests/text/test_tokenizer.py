"""The paper's tokenizer and the byte-level BPE (jaxpapers.text.tokenizer, HF tokenizers)."""

import numpy as np
import pytest

from jaxpapers.text import tokenizer as tok_lib

TEXTS = [f"Title: On {k} sets\nAbstract: We prove $\\frac{{a}}{{b}} \\le \\sum_i x_{k}$ for {k * 1234} cases.\n"
         f"Body: \\section{{Intro}} The \\alpha bound \\sqrt{{{k}}} holds with \\textbf{{value}} {k * 98765}."
         for k in range(1, 60)]


@pytest.fixture(scope="module")
def toks():
  return {d: tok_lib.train_tokenizer(TEXTS, 400, d) for d in tok_lib.DESIGNS}


def test_paper_digits_and_seeds(toks):
  tok = toks["paper"]
  for number in ("7", "42", "31415", "1234567890"):
    assert tok.encode(number, add_special_tokens=False).tokens == list(number)
  assert tok.encode("\\frac \\sum \\sqrt", add_special_tokens=False).tokens == ["\\frac", "\\sum", "\\sqrt"]
  assert tok_lib.digit_violations(tok, TEXTS)[1] == 0
  seen, bad = tok_lib.seeded_command_violations(tok, TEXTS)
  assert seen == 3 * len(TEXTS) + len(TEXTS) and bad == 0  # \frac \sum \sqrt \alpha per text
  enc = tok.encode("x")
  assert enc.tokens[0] == "[BOS]" and enc.tokens[-1] == "[EOS]"


def test_bytelevel_merges_digits(toks):
  tok = toks["bytelevel"]
  seen, bad = tok_lib.digit_violations(tok, TEXTS)
  assert seen == 5 * len(TEXTS) and bad > 0  # frequent multi-digit strings become one token
  assert tok.decode(tok.encode(TEXTS[0]).ids) == TEXTS[0]  # byte-level round trip


def test_fragmentation_counts_tokens_per_command(toks):
  frag, n = tok_lib.command_fragmentation(toks["paper"], ["\\frac \\textbf"])
  # \frac is a seed (1 token); \textbf is the seed \text then "bf"
  assert n == 2 and frag == pytest.approx(1.5)


def test_deterministic_and_encode_documents(toks):
  again = tok_lib.train_tokenizer(TEXTS, 400, "paper")
  assert again.to_str() == toks["paper"].to_str()
  ids = tok_lib.encode_documents(toks["paper"], ["a b", TEXTS[0]], 8)
  pad = tok_lib.pad_id(toks["paper"])
  want = toks["paper"].encode("a b").ids
  np.testing.assert_array_equal(ids[0], want + [pad] * (8 - len(want)))
  assert ids[1, 0] == toks["paper"].token_to_id("[BOS]") and pad not in ids[1]
  with pytest.raises(ValueError, match="design"):
    tok_lib.train_tokenizer(TEXTS, 400, "wordpiece")
