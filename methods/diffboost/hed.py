"""HED lives in `bench.diffusion.hed` (the radimagenet-synthesis task computes the same edges); re-exported here."""
from bench.diffusion.hed import HED, MEANS_BGR, load_hed

__all__ = ["HED", "MEANS_BGR", "load_hed"]
