"""World models in the agent loop.

* `search`: `action_search` (propose -> imagine -> select, with coverage; Computer-Using World
  Model, arXiv 2602.17365), `gumbel_top_k`.
* `two_stage`: `TwoStageWM` (a delta head over a discrete change vocabulary, then a renderer,
  trained stage by stage), `DirectWM` (the direct pixel model it is compared with), the judge
  reward with the length-band penalty and `grpo_finetune` of the delta head (arXiv 2602.17365,
  Sec. 3).
* `refine`: `predict_then_refine` (StarWM, arXiv 2602.14857).
"""

from jaxpapers.worldmodel.search import SearchResult, action_search, gumbel_top_k
from jaxpapers.worldmodel.two_stage import (
    DELTA_PARAMS,
    RENDERER_PARAMS,
    DeltaHead,
    DirectWM,
    GRPOSettings,
    Renderer,
    TwoStageWM,
    change_f1,
    delta_logprobs,
    delta_loss,
    grpo_finetune,
    in_length_band,
    judge_reward,
    pixel_loss,
    render_loss,
    sample_deltas,
    sampled_reward,
)

# isort: split
# predict-then-refine (StarWM, arXiv 2602.14857).
from jaxpapers.worldmodel.refine import Refined, predict_then_refine
