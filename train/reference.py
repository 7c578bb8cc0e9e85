"""The reference model of DPO and online RL: the starting weights, without a second model where possible.

Three forms, one way to run them (``reference_mode``):

* LoRA on a full model: the policy itself with its adapter switched off
  (peft's ``disable_adapter()``), no copy at all;
* LoRA continuing an adapter (RL from a LoRA SFT output): the starting
  adapter loaded a second time, frozen, as ``REFERENCE_ADAPTER``; the
  reference swaps it in (a copy of the adapter's few MB, not of the model);
* full training: a frozen copy of the starting weights (``frozen_copy``).

The reference always runs in eval mode (no dropout) and the caller runs it
under ``no_grad``.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

#: The adapter name of a frozen starting adapter inside a PEFT policy.
REFERENCE_ADAPTER = "reference"


def frozen_copy(model: Any, device: Any) -> Any:
    """A frozen, eval-mode copy of ``model`` on ``device``: full training's reference."""
    reference = copy.deepcopy(model)
    reference.requires_grad_(False)
    return reference.to(device).eval()


@contextmanager
def reference_mode(policy: Any, reference: Any = None) -> Iterator[Any]:
    """Yield the module to call as the reference: ``reference`` when there is one, else ``policy``
    with its adapter off (or the frozen starting adapter swapped in); everything is restored after."""
    policy = getattr(policy, "module", policy)  # under DDP: the peft model itself
    target = reference if reference is not None else policy
    was_training = target.training
    target.eval()
    try:
        if reference is not None:
            yield reference
        elif REFERENCE_ADAPTER in getattr(policy, "peft_config", {}):
            active = policy.active_adapter
            policy.set_adapter(REFERENCE_ADAPTER, inference_mode=True)
            try:
                yield policy
            finally:
                policy.set_adapter(active)  # makes the trained adapter trainable again, the reference frozen
        else:
            with policy.disable_adapter():
                yield policy
    finally:
        target.train(was_training)
