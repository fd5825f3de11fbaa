from .method import Noise

__all__ = ["Noise"]
