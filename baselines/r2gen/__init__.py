from .method import R2Gen

__all__ = ["R2Gen"]
