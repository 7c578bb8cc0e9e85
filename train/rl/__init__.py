"""Online RL after the reward model: PPO and GRPO on the one training loop (see ``run.py``)."""
