"""``thresher train``: training commands (``sft``, ``rm``, ``dpo``, ``ppo``, ``grpo``), all on the one loop.

No torch at import time: ``thresher train --help`` stays fast.
"""

from __future__ import annotations

import argparse

from thresher.curate.io.claims import claim
from thresher.train.config import add_training_flags, resolve
from thresher.train.rl.config import add_rl_flags


def configure(parser: argparse.ArgumentParser) -> None:
    commands = parser.add_subparsers(dest="train_command", metavar="SUBCOMMAND", required=True)
    sft = commands.add_parser(
        "sft", help="supervised fine-tuning (full, LoRA, QLoRA) on dialogue records",
        description="Supervised fine-tuning on dialogue records: loss on assistant turns only, "
        "rendered with the model's chat template (ChatML when it has none).",
    )
    add_training_flags(sft)
    S = argparse.SUPPRESS
    rm = commands.add_parser(
        "rm", help="reward model (full or LoRA) on Preference or Scored records",
        description="Train a one-output reward model from a decoder or encoder checkpoint: pairwise "
        "-logsigmoid(r_chosen - r_rejected - margin) on Preference records and Scored pairs, or "
        "mean squared error on Scored records (--loss regression).",
    )
    add_training_flags(rm)
    rm.add_argument("--loss", choices=("pairwise", "regression"), default=S, help="pairwise (default) or regression")
    rm.add_argument("--margin-field", default=S, metavar="FIELD",
                    help="field of each pair (meta or top level) holding its margin; Scored pairs have 'margin'")
    rm.add_argument("--center-coef", type=float, default=S, metavar="C",
                    help="reward centering: add C*(r_chosen + r_rejected)^2 (e.g. 0.01; default 0)")
    dpo = commands.add_parser(
        "dpo", help="direct preference optimisation (LoRA, full, QLoRA) on Preference records",
        description="Sigmoid DPO on summed reply log-probabilities; the reference is the model with its "
        "LoRA adapter disabled, a frozen copy (full) or --ref-model.",
    )
    add_training_flags(dpo)
    dpo.add_argument("--beta", type=float, default=S, help="DPO beta (default 0.1)")
    dpo.add_argument("--ref-model", default=S, metavar="PATH", help="reference model (default: the starting weights)")
    ppo = commands.add_parser(
        "ppo", help="PPO from an SFT model with a reward model (value head, GAE, KL to the SFT model)",
        description="Online RL with PPO: sample replies to --prompts, score them with --reward-model (and/or "
        "--reward rules), then update the policy with clipped policy and value losses and a per-token KL "
        "penalty against the SFT weights.",
    )
    add_rl_flags(ppo, ppo=True)
    grpo = commands.add_parser(
        "grpo", help="GRPO from an SFT model with rule rewards (identity) or a reward model",
        description="Online RL with GRPO: G replies per prompt, advantages relative to the group, no value "
        "head; rewards from rules (--reward identity) and/or reward models (--reward rm:PATH), weighted.",
    )
    add_rl_flags(grpo, ppo=False)


def run(args: argparse.Namespace) -> int:
    # The config (and every model path in it) is checked before torch is imported: a typo costs no time.
    from thresher.train.config import DPOConfig, RMConfig, TrainConfig

    if args.train_command in ("ppo", "grpo"):
        from thresher.train.rl.config import GRPOConfig, PPOConfig

        config = resolve(PPOConfig if args.train_command == "ppo" else GRPOConfig, args)
    else:
        config = resolve({"sft": TrainConfig, "rm": RMConfig, "dpo": DPOConfig}[args.train_command], args)
    if args.train_command == "sft":
        from thresher.train.sft import run_sft as train
    elif args.train_command == "rm":
        from thresher.train.rm import run_rm as train
    elif args.train_command == "dpo":
        from thresher.train.dpo import run_dpo as train
    else:
        from thresher.train.rl.run import run_rl as train
    # Paths may come from the YAML config, so they are claimed here, once resolved, before anything is written.
    reward_models = [spec.partition(":")[2] for spec in getattr(config, "reward", []) if spec.startswith("rm:")]
    inputs = [config.model, *config.data, *config.eval_data, getattr(args, "config", None), config.chat_template,
              getattr(config, "ref_model", None), *reward_models]
    with claim(inputs, [config.output]):
        train(config)
    return 0
