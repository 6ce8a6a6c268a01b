"""Training on TRL: ``train-ask`` (the user simulator), ``train-chat`` (SFT), ``train-dpo``.

- :mod:`parrot.train.render`  — the one render-and-mask function (chat → input_ids + labels)
- :mod:`parrot.train.config`  — the commands' settings; unknown keys pass through to TRL
- :mod:`parrot.train.sft`     — ``train-ask`` and ``train-chat`` (``SFTTrainer``)
- :mod:`parrot.train.dpo`     — ``train-dpo`` (``DPOTrainer``)
- :mod:`parrot.train.trainer` — TRL's trainers with Parrot's settings; train, save, manifest
- :mod:`parrot.train.launch`  — ``--accelerate``: the command again in several processes, the launch checked
- :mod:`parrot.train.lora`    — the LoRA (PEFT) config
- :mod:`parrot.train.dataset` — rendered data as Arrow files in a throw-away cache
- :mod:`parrot.train.save`    — the saved checkpoint (full, adapter, merged); resuming
- :mod:`parrot.train.cpu`     — CPU runs: bf16 only where native, the compact LM head

The role swap that makes user turns trainable lives in :mod:`parrot.synthesize.roleswap`.
"""
