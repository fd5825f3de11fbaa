from .method import AttenCraft, AttenCraftConfig

__all__ = ["AttenCraft", "AttenCraftConfig"]
