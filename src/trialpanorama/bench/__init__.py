"""The benchmark: any model over the eight tasks' test splits, scored, stored, tracked and ranked.

Shaped like lm-evaluation-harness: one LM interface (``lm``) with backends behind it (``hf``, ``vllm``,
``openai``), tasks from ``trialpanorama.tasks.registry``, a runner that streams test samples through Ray
Data into a ``predictions`` Delta table (``store``), and a report (``report``) that turns the scores into a
leaderboard beside the study's published numbers.
"""
