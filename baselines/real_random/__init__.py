from .method import RealRandom

__all__ = ["RealRandom"]
