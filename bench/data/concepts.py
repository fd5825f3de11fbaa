"""Multi-concept photographs for the concept task (thesis chapter 3, research/ch3_attencraft.md).

* ``disendiff``: the ten two-subject scenes of DisenDiff (Zhang et al., CVPR 2024), as in
  ``Monalissaa/DisenDiff:datasets``: ``images/<pair>/<file>.jpg`` (the one training image),
  ``data_eval/<pair>/subject{1,2}/<file>.jpg`` (single-subject crops: references for CLIP-I/DINO)
  and ``prompts/<pair>_{global,subject1,subject2}.txt`` (ten evaluation prompts each). The
  AttenCraft copy (``disendiff_data/<pair>/{global,subject1,subject2}/``, no prompts) is read too.
* ``gen4gen``: AttenCraft's six Gen4Gen composites (Yeh et al. 2024; thesis datasets 11-16), as in
  ``junjie-shentu/AttenCraft:data/gen4gen_dataset``: ``<pair>/global/<file>.png`` (the composite, the training
  input and the group reference), optional ``<pair>/mask/mask{0,1}.png`` (concept masks, three pairs have them)
  and ``<pair>/subject{1,2}/`` (the single-concept reference photos: not in the repository, supplied by the user).
* ``break-a-scene``: the Break-a-Scene examples (Avrahami et al. 2023): ``<scene>/img.jpg`` plus
  one ``mask<k>.png`` per concept (white = concept; anti-aliased, binarised at > 127).
"""
from __future__ import annotations

import logging
from pathlib import Path


from bench.data import io as dio
from bench.data.base import DataError, Problem
from bench.data.real import Record, RealDataset
from bench.interface import Sample

logger = logging.getLogger(__name__)

PROMPT_KINDS = ("global", "subject1", "subject2")


def _read_prompts(path: Path) -> list[str]:
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


class DisenDiff(RealDataset):
    """DisenDiff scenes: split ``train`` = one global image per pair, ``reference`` = the subject crops.

    ``train`` samples carry the training caption ``"<new1> cat and <new2> dog"`` (DisenDiff's
    form, with class nouns) as prompt, and in meta the pair, its two class words (from the pair
    name), the evaluation prompts (``meta["prompts"]["global"|"subject1"|"subject2"]``, copied as
    found, typos included) and the reference crop ids. ``reference`` samples carry the class word
    as prompt and ``meta["subject"]`` (1 or 2).

    Options:
        scenes: list of pair names to keep (default: all found).
        placeholders: the two placeholder tokens (default ``["<new1>", "<new2>"]``).
    """

    id = "disendiff"
    splits = ("train", "reference")
    fields = frozenset({"image", "prompt"})
    option_defaults = {"scenes": None, "placeholders": ("<new1>", "<new2>")}

    def looks_like(self, folder: Path) -> bool:
        return (folder / "images").is_dir() and (folder / "data_eval").is_dir() or self._attencraft_pairs(folder) != []

    @staticmethod
    def _attencraft_pairs(folder: Path) -> list[Path]:
        if not folder.is_dir() or (folder / "images").is_dir():
            return []
        return sorted(p for p in folder.iterdir() if (p / "global").is_dir() and (p / "subject1").is_dir())

    def scan(self) -> tuple[list[Record], list[Problem]]:
        problems: list[Problem] = []
        attencraft = self._attencraft_pairs(self.folder)
        if attencraft:
            pair_dirs = {p.name: (p / "global", p) for p in attencraft}
        else:
            pair_dirs = {p.name: (p, self.folder / "data_eval" / p.name)
                         for p in sorted((self.folder / "images").iterdir()) if p.is_dir()}
        wanted = self.options["scenes"]
        if wanted is not None:
            unknown = sorted(set(wanted) - set(pair_dirs))
            if unknown:
                raise DataError(f"{self.folder}: unknown scene(s) {', '.join(unknown)}; found {', '.join(pair_dirs)}")
            pair_dirs = {k: v for k, v in pair_dirs.items() if k in wanted}
        records = []
        new1, new2 = self.options["placeholders"]
        for pair, (image_dir, eval_dir) in pair_dirs.items():
            images = dio.list_images(image_dir)
            if len(images) != 1:
                problems.append(Problem(str(image_dir), f"expected one scene image, found {len(images)}"))
                if not images:
                    continue
            words = pair.split("_")
            if len(words) != 2:
                problems.append(Problem(str(image_dir), f"pair name '{pair}' is not '<subject1>_<subject2>'"))
                continue
            prompts = {}
            for kind in PROMPT_KINDS:
                path = self.folder / "prompts" / f"{pair}_{kind}.txt"
                if path.is_file():
                    prompts[kind] = _read_prompts(path)
                elif not attencraft:
                    problems.append(Problem(str(path), "missing prompt file"))
            references = []
            for k in (1, 2):
                crops = dio.list_images(eval_dir / f"subject{k}") if (eval_dir / f"subject{k}").is_dir() else []
                if not crops:
                    problems.append(Problem(str(eval_dir / f"subject{k}"), "missing subject crops"))
                for crop in crops:
                    ref_id = f"{pair}/subject{k}/{crop.stem}"
                    references.append(ref_id)
                    records.append(Record(ref_id, crop, prompt=words[k - 1], split="reference",
                                          meta={"pair": pair, "subject": k, "class_word": words[k - 1]}))
            records.append(Record(pair, images[0], prompt=f"{new1} {words[0]} and {new2} {words[1]}", split="train",
                                  meta={"pair": pair, "class_words": list(words), "placeholders": [new1, new2],
                                        "prompts": prompts, "references": references}))
        return records, problems


class Gen4Gen(RealDataset):
    """Gen4Gen composites: split ``train`` = one composite per pair (meta as `DisenDiff`'s, with
    ``object_masks`` (2, H, W) bool when the pair has ``mask/mask0.png`` and ``mask1.png``), ``reference`` = the
    single-concept references ``<pair>/subject{1,2}/`` (a pair without them is a problem: the repository does not
    ship them and the thesis does not name the instances). No prompt files exist: the concept task uses its
    DreamBooth-style templates.

    Options:
        scenes: list of pair names to keep (default: all found).
        placeholders: the two placeholder tokens (default ``["<new1>", "<new2>"]``).
    """

    id = "gen4gen"
    splits = ("train", "reference")
    fields = frozenset({"image", "prompt"})
    mask_threshold = 127
    binary_masks = False
    option_defaults = {"scenes": None, "placeholders": ("<new1>", "<new2>")}

    def looks_like(self, folder: Path) -> bool:
        return folder.is_dir() and any((p / "global").is_dir() for p in folder.iterdir() if p.is_dir())

    def scan(self) -> tuple[list[Record], list[Problem]]:
        problems: list[Problem] = []
        pairs = {p.name: p for p in sorted(self.folder.iterdir()) if (p / "global").is_dir()}
        wanted = self.options["scenes"]
        if wanted is not None:
            unknown = sorted(set(wanted) - set(pairs))
            if unknown:
                raise DataError(f"{self.folder}: unknown scene(s) {', '.join(unknown)}; found {', '.join(pairs)}")
            pairs = {k: v for k, v in pairs.items() if k in wanted}
        new1, new2 = self.options["placeholders"]
        records = []
        for pair, folder in pairs.items():
            images = dio.list_images(folder / "global")
            if len(images) != 1:
                problems.append(Problem(str(folder / "global"), f"expected one composite, found {len(images)}"))
                if not images:
                    continue
            words = pair.split("_")
            if len(words) != 2:
                problems.append(Problem(str(folder), f"pair name '{pair}' is not '<concept1>_<concept2>'"))
                continue
            masks = tuple(folder / "mask" / f"mask{k}.png" for k in (0, 1))
            present = [m.is_file() for m in masks]
            if any(present) and not all(present):
                problems.append(Problem(str(folder / "mask"), "needs both mask0.png and mask1.png"))
            references = []
            for k in (1, 2):
                crops = dio.list_images(folder / f"subject{k}") if (folder / f"subject{k}").is_dir() else []
                if not crops:
                    problems.append(Problem(str(folder / f"subject{k}"), "missing single-concept references "
                                            "(not in the AttenCraft repository: supply the concept's photos)"))
                for crop in crops:
                    ref_id = f"{pair}/subject{k}/{crop.stem}"
                    references.append(ref_id)
                    records.append(Record(ref_id, crop, prompt=words[k - 1], split="reference",
                                          meta={"pair": pair, "subject": k, "class_word": words[k - 1]}))
            records.append(Record(pair, images[0], masks if all(present) else (), split="train",
                                  prompt=f"{new1} {words[0]} and {new2} {words[1]}",
                                  meta={"pair": pair, "class_words": list(words), "placeholders": [new1, new2],
                                        "prompts": {}, "references": references}))
        return records, problems

    def make_sample(self, rec: Record, split: str) -> Sample:
        import torch

        if not rec.masks:
            return super().make_sample(rec, split)
        sample = super().make_sample(rec, split)
        sample.meta["object_masks"] = torch.stack([dio.to_tensors(None, dio.read_mask(p, self.mask_threshold),
                                                                  self.image_size)[1] for p in rec.masks])
        return sample


class BreakAScene(RealDataset):
    """Break-a-Scene example scenes: image, union mask, and one mask per concept in meta.

    ``Sample.mask`` is the union of the concept masks; ``meta["object_masks"]`` is a bool
    tensor (K, H, W) in ``mask<k>`` order, ``meta["assets"]`` the placeholder tokens
    ``<asset0>``... (``mask<k>`` is ``<asset k>`` in Break-a-Scene training), and the prompt is
    Break-a-Scene's union prompt over all concepts.

    Options:
        scenes: list of scene names to keep (default: all found).
    """

    id = "break-a-scene"
    splits = ("train",)
    fields = frozenset({"image", "mask", "prompt"})
    mask_threshold = 127
    binary_masks = False  # anti-aliased edges by design
    option_defaults = {"scenes": None}

    def looks_like(self, folder: Path) -> bool:
        return folder.is_dir() and any((p / "img.jpg").is_file() for p in folder.iterdir() if p.is_dir())

    def scan(self) -> tuple[list[Record], list[Problem]]:
        problems: list[Problem] = []
        scenes = [p for p in sorted(self.folder.iterdir()) if p.is_dir()]
        wanted = self.options["scenes"]
        if wanted is not None:
            unknown = sorted(set(wanted) - {p.name for p in scenes})
            if unknown:
                raise DataError(f"{self.folder}: unknown scene(s) {', '.join(unknown)}")
            scenes = [p for p in scenes if p.name in wanted]
        records = []
        for scene in scenes:
            image = scene / "img.jpg"
            masks = sorted(scene.glob("mask*.png"), key=lambda p: int(p.stem[4:]) if p.stem[4:].isdigit() else 99)
            if not image.is_file():
                problems.append(Problem(str(image), "missing image"))
                for mask in masks:
                    problems.append(Problem(str(mask), "unpaired mask: no img.jpg in this scene"))
                continue
            if not masks:
                problems.append(Problem(str(scene), "missing masks (mask0.png ...)"))
                continue
            numbers = [p.stem[4:] for p in masks]
            if numbers != [str(k) for k in range(len(masks))]:
                problems.append(Problem(str(scene), f"masks are not mask0..mask{len(masks) - 1}: {numbers}"))
            assets = [f"<asset{k}>" for k in range(len(masks))]
            records.append(Record(scene.name, image, tuple(masks), split="train",
                                  prompt="a photo of " + " and ".join(assets),
                                  meta={"scene": scene.name, "assets": assets}))
        return records, problems

    def make_sample(self, rec: Record, split: str) -> Sample:
        import torch

        sample = super().make_sample(rec, split)
        per_object = []
        for path in rec.masks:
            _, mask_t = dio.to_tensors(None, dio.read_mask(path, self.mask_threshold), self.image_size)
            per_object.append(mask_t)
        sample.meta["object_masks"] = torch.stack(per_object)
        return sample


__all__ = ["BreakAScene", "DisenDiff", "Gen4Gen"]
