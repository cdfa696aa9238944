"""Fine-tuning stage: recipes, data (task tables -> packed token batches), tiny model, Ray Train loop.

Modules: ``recipe`` (load/validate/resolve, memory estimate), ``data`` (Delta -> chat template -> cached
tokens -> packing, answer-only labels), ``tiny`` (tiny Llama + BPE tokenizer), ``loop`` (the worker
training loop and checkpoints), ``run`` (the driver: stages, TorchTrainer, MLflow).
"""
