"""Model-compression stages: fine-tune, distil, prune, and describe transformer classifiers.

Deliberately empty: importing ``harness.compress`` must not pull in torch/transformers,
so the CLI can start fast; import the submodules (``harness.compress.distill`` ...) directly.
"""
