"""Mobile-Agent-v3.5 / GUI-Owl-1.5: GRPO with MRPO's filtering rollout buffer (arXiv 2602.16855)."""
