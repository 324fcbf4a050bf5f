"""The paper's ablation ladder (Table 1) as switches of one model and one training plan."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Variant:
    ranking: bool  # stage 2 trains the soft-triplet loss on triplets of regions (L_T)
    localization: bool  # heads pool each attribute's AAM box; otherwise the whole conv5 map
    global_learning: bool  # stage 3 learns lambda_a and w_r with L_G; otherwise F = [s_1, ..., s_A]
    memory_updatable: bool  # stage 3 also updates the memory block M ("Full")
    fusion: bool  # whole-map pooled conv5 features concatenated before fc9 ("w/ FF")


VARIANTS: dict[str, Variant] = {
    "wo_rank": Variant(ranking=False, localization=False, global_learning=False, memory_updatable=False, fusion=False),
    "rank": Variant(ranking=True, localization=False, global_learning=False, memory_updatable=False, fusion=False),
    "rank_l": Variant(ranking=True, localization=True, global_learning=False, memory_updatable=False, fusion=False),
    "rank_lg": Variant(ranking=True, localization=True, global_learning=True, memory_updatable=False, fusion=False),
    "full": Variant(ranking=True, localization=True, global_learning=True, memory_updatable=True, fusion=False),
    "full_ff": Variant(ranking=True, localization=True, global_learning=True, memory_updatable=True, fusion=True),
}
