"""Synthetic criterion inputs shared by the tests: the harness's own generators."""
from harness.bench.inputs import SceneGT as Inst
from harness.bench.inputs import partition_masks, pred_leaves as leaves
from harness.bench.inputs import random_gts as make_insts
from harness.bench.inputs import random_pred as make_pred

__all__ = ['Inst', 'partition_masks', 'leaves', 'make_insts', 'make_pred']
