from .method import WorldOracle

__all__ = ["WorldOracle"]
