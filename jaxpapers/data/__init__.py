"""Input pipeline: example sources, text corpora, batching, document streams and packing.

* `sources`: random-access example sources (arrays, scikit-learn digits, TFDS).
* `corpora`: local text corpora (the Python standard library) as next-token windows.
* `pipeline`: grain pipelines of process-sliced, padded, masked batches (training, evaluation,
  full batch), resumable.
* `documents`: deterministic document streams (synthetic Markov domains, stdlib files).
* `packing`: packed-sequence loaders over document streams (RSDB, sequential packing).
* `synth_touch`: unpaired glove and Xela-like tactile demos over known hidden states (TactAlign).
"""

from jaxpapers.data.corpora import TextSource, stdlib_paths
from jaxpapers.data.documents import (
    Document,
    DocumentStream,
    MarkovDocuments,
    MarkovDomains,
    StdlibDocuments,
    iterate,
    markov_domains,
)
from jaxpapers.data.packing import RSDB, PackedDataset, SequentialPacker, domain_tv
from jaxpapers.data.pipeline import (
    FullBatch,
    IndexedBatches,
    batch_dataset,
    batches,
    eval_batches,
    full_batch,
    iterator,
)
from jaxpapers.data.sources import ArraySource, Source, TfdsSource, digits_source, tfds_source

# isort: split
# synth-touch (TactAlign, arXiv 2602.13579): tactile demos with known hidden states.
from jaxpapers.data.synth_touch import TouchFrames, pivot_demos, play_states

# isort: split
# markov2 (hardware co-design, arXiv 2602.10377): sparse second-order Markov windows with a known
# entropy floor.
from jaxpapers.data.markov2 import Markov2Chain, Markov2Source, markov2_chain
