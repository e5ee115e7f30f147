"""Pure tensor functions (no training state); custom autograd where needed.

``similarity`` also holds the small similarity strategy objects (``NegSquaredL2``, ``Cosine``,
``RBF``) that heads take as ``similarity=``; they are Modules only so that a bandwidth can be
learned.
"""

from .codec import (affine_encode, decode, entropy_from_logits, gaussian_encode, gaussian_logit_params,
                    hard_bin_encode, hl_gauss_probs, kl_divergence, kl_from_logits)
from .similarity import RBF, Cosine, NegSquaredL2, Similarity, make_similarity
from .sinkhorn import self_entropic_ot
from .soft_rank import soft_rank
from .softstep import softstep

__all__ = ["softstep", "soft_rank", "self_entropic_ot", "Similarity", "NegSquaredL2", "Cosine", "RBF",
           "make_similarity", "affine_encode", "decode", "entropy_from_logits", "gaussian_encode",
           "gaussian_logit_params", "hard_bin_encode", "hl_gauss_probs", "kl_divergence", "kl_from_logits"]
