from .method import BreakAScene, BreakASceneConfig

__all__ = ["BreakAScene", "BreakASceneConfig"]
