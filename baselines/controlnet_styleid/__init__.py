from .method import ControlNetStyleID, ControlNetStyleIDConfig

__all__ = ["ControlNetStyleID", "ControlNetStyleIDConfig"]
