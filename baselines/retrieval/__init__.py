from .method import CxrRepairSelect, Retrieval

__all__ = ["CxrRepairSelect", "Retrieval"]
