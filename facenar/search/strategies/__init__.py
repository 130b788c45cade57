"""Search strategies: what proposes the architectures that shared-weight training samples and that
derivation scores (the contract: facenar.search.strategies.base.Strategy).

Adding one is one module here that registers its class, plus its name in `modules`.
"""
from facenar.registry import Registry

STRATEGIES = Registry("strategy", modules=("facenar.search.strategies.enas", "facenar.search.strategies.random",
                                           "facenar.search.strategies.evolution"))
