from .method import ZestGuide, ZestGuideConfig

__all__ = ["ZestGuide", "ZestGuideConfig"]
