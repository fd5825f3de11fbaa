from .method import LabelTemplate

__all__ = ["LabelTemplate"]
