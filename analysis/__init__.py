"""emotion-heads: find the attention heads and MLP units that carry emotion in a causal LM.

Every pipeline stage is a module with a thin CLI over pure functions; `analysis.base.contract`
documents what each stage writes.
"""
