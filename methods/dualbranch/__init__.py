from .method import DualBranch, DualBranchConfig

__all__ = ["DualBranch", "DualBranchConfig"]
