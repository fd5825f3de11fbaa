from .method import CxrRepairSelect

__all__ = ["CxrRepairSelect"]
