from .method import ControlNet, ControlNetConfig

__all__ = ["ControlNet", "ControlNetConfig"]
