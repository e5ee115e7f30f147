"""Pure tensor functions (no ``nn.Module`` state, nothing imported from the rest of the package);
custom autograd where needed.

- :mod:`.distances`: the one pairwise (squared) Euclidean distance and cosine similarity
- :mod:`.rank`: soft ranks (Blondel et al.) and the blackbox rank of RankSim
- :mod:`.softstep`: the SoftStep map
- :mod:`.streaming`: chunked reductions for neighbor heads (bounded memory)
- :mod:`.sinkhorn`: the self entropic OT plan of ROT-Reg
- :mod:`.codec`: target encoders / decoders and the KL and entropy terms of codec heads
"""

from .codec import (affine_encode, decode, entropy_from_logits, gaussian_encode, gaussian_logit_params,
                    gaussian_mixture_logits, hard_bin_encode, hl_gauss_probs, kl_divergence, kl_from_logits)
from .distances import cosine_similarity, pairwise_distances, squared_distances
from .rank import blackbox_rank, rank_normalised, soft_rank
from .sinkhorn import self_entropic_ot
from .softstep import softstep
from .streaming import (chunk_ranges, float_order_keys, streaming_kth_largest, streaming_row_min_max,
                        streaming_softmax_average, streaming_topk)

__all__ = ["softstep", "soft_rank", "blackbox_rank", "rank_normalised", "self_entropic_ot",
           "squared_distances", "pairwise_distances", "cosine_similarity",
           "chunk_ranges", "streaming_row_min_max", "streaming_softmax_average", "streaming_topk",
           "float_order_keys", "streaming_kth_largest",
           "affine_encode", "decode", "entropy_from_logits", "gaussian_encode",
           "gaussian_logit_params", "gaussian_mixture_logits", "hard_bin_encode", "hl_gauss_probs", "kl_divergence", "kl_from_logits"]
