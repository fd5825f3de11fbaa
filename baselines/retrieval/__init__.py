from .method import Retrieval

__all__ = ["Retrieval"]
