"""The compact trainer: data collation, SFT, reward models, DPO, evaluation, export, chat."""
