"""Training on TRL: ``train-ask`` (the user simulator), ``train-chat`` (SFT), ``train-dpo``.

- :mod:`parrot.train.render`  — the one render-and-mask function (chat → input_ids + labels)
- :mod:`parrot.train.config`  — the commands' settings; unknown keys pass through to TRL
- :mod:`parrot.train.sft`     — ``train-ask`` and ``train-chat`` (``SFTTrainer``)
- :mod:`parrot.train.dpo`     — ``train-dpo`` (``DPOTrainer``)
- :mod:`parrot.train.runtime` — launcher, TRL config, LoRA, saving and the manifest

The role swap that makes user turns trainable lives in :mod:`parrot.synthesize.roleswap`.
"""
