from .method import M2Trans

__all__ = ["M2Trans"]
