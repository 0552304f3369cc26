"""Preference and policy-gradient post-training: sequence log-probs, DPO, pairwise labels, GRPO,
token-id transport and MRPO's rollout buffer.

* `logprob`: `token_logprobs`, `sequence_logprob` (logits at t score token t; the caller shifts).
* `dpo`: `dpo_loss` (arXiv 2305.18290, Eq. 7), as in reference-guided self-improvement
  (RefEval, arXiv 2602.16802).
* `pairwise`: `aggregate_pairwise` over all ordered pairs of K judged candidates (arXiv
  2602.16802, Sec. 3.2), `slot_probability`, `ordered_pairs`, the `Judge` protocol.
* `grpo`: `group_advantages`, `grpo_loss` with the k3 KL estimator (DeepSeekMath, arXiv
  2402.03300, Eqs. 3-4).
* `transport`: `Rollout`, `sample`, `recompute_logprobs`, `importance_ratio` on the exact
  sampled token ids (MRPO, arXiv 2602.16855).
* `rollout_buffer`: `RolloutBuffer` (MRPO's oversample-filter-select FIFO, fixed shapes).
* `policies`: `FactorizedPolicy` (toy MLP) and `LMPolicy` (the shared tiny LM).
"""

from jaxpapers.rl.dpo import dpo_loss
from jaxpapers.rl.grpo import group_advantages, grpo_loss, kl_k3
from jaxpapers.rl.logprob import sequence_logprob, token_logprobs
from jaxpapers.rl.pairwise import (
    Judge,
    PairwiseLabels,
    aggregate_pairwise,
    judge_ordered_pairs,
    ordered_pairs,
    slot_probability,
)
from jaxpapers.rl.policies import FactorizedPolicy, LMPolicy
from jaxpapers.rl.rollout_buffer import RolloutBuffer, select_rollouts
from jaxpapers.rl.transport import Rollout, importance_ratio, recompute_logprobs, sample

# isort: split
# policy_gradient: REINFORCE with a baseline and PPO's clipped loss on logits (Calibrate-Then-Act).
from jaxpapers.rl.policy_gradient import entropy, mean_baseline, ppo_loss, reinforce_loss
