"""concept: multi-concept customization from one image (thesis chapter 3, spec ``research/ch3_attencraft.md``).

Each *scene* (a "dataset" in the thesis) is one input image holding two concepts. The generator is fitted on the
scenes (one image per scene, ``Sample.meta``: ``scene``, ``class_words``, ``placeholders``, and the concept masks
as ``object_masks`` only when ``fit_masks`` gives them) and must learn one identifier per concept per scene:
a method fits every scene independently, from the same base model. Conditions are text prompts holding the
placeholders (``"<new1> cat wearing sunglasses"``, canonical form with class nouns; methods trained without
class nouns drop them) for each concept alone (``subject1``, ``subject2``) and for the group (``global``):
``prompts_per_kind`` prompts x ``images_per_prompt`` images per kind (thesis: 10 x 10 x 3 = 300 per scene).

Scores (spec section 3, `bench.metrics.concept`), per scene and then averaged over scenes:
CLIP-I / CLIP-T / DINO for ``single`` (mean over the concepts of each concept's prompts against its references)
and ``group`` (the group prompts against the input image), and CLIP-I-sync. References (spec 2.3): DisenDiff's
subject crops; concept-mini's single-concept test images (other poses and backgrounds).

Beyond the thesis, on concept-mini (ground truth): ``presence[single]`` (a concept's distinctive colours appear
in its own images), ``leakage[single]`` (another concept's distinctive colours appear in a ``[V_i]``-only image),
``presence[group]`` (all concepts appear in a group image) — "appear": one connected region of the colour covers at
least ``presence_min_share`` of what it covers in the task's own references of that kind (task version 2) — and
``attn_mask_iou``: methods that learn concept
masks report them on the first condition of each scene (``meta["report_masks"]``) as
``Sample.meta["attention_masks"]``, a (K, h, w) 0/1 nested list in placeholder order; the task scores their IoU
with the true object masks.
"""
from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import torch

from bench.data.base import DataError
from bench.interface import Condition, RunContext, Sample
from bench.tasks.base import Evaluation, SampleScores, Task, TaskData
from bench.tasks.common import open_dataset, resize_image, resize_mask

logger = logging.getLogger(__name__)

KIND_SUBJECT = "subject{}"
KIND_GROUP = "global"

#: Evaluation contexts of scenes without prompt files (DreamBooth-style [I]); ``{}`` is the subject (group).
PHOTO_CONTEXTS = ("a photo of {}", "{} in the jungle", "{} in the snow", "{} on the beach",
                  "{} on a cobblestone street", "{} on top of pink fabric", "{} on top of a wooden floor",
                  "{} with a city in the background", "{} with a mountain in the background",
                  "{} on top of a purple rug in a forest", "{} floating on top of water", "{} in a garden")
#: Contexts in concept-mini's (and mini-clip's) vocabulary.
MINI_CONTEXTS = ("a photo of {}", "a photo of the {}", "{} and a red circle", "{} and a blue square",
                 "{} and a green triangle", "{} and a yellow star", "{} and a purple heart", "{} and an orange cross",
                 "a striped {}", "a dotted {}")


#: Real scene datasets (one two-concept image per scene, single-concept reference crops).
SCENE_FOLDERS = ("disendiff", "gen4gen")


@dataclass
class Scene:
    """One input image with its concepts, prompts and references (spec section 2)."""

    id: str
    image: torch.Tensor
    class_words: list[str]
    placeholders: list[str]
    prompts: dict[str, list[str]]
    references: dict[str, torch.Tensor]
    object_masks: torch.Tensor | None = None
    identities: list[dict[str, Any]] | None = None
    world: dict[str, Any] | None = None
    """A procedural scene's world (concept-mini: dataset, world seed, its concept ids), for world-oracle."""

    @property
    def kinds(self) -> list[str]:
        return [KIND_SUBJECT.format(k + 1) for k in range(len(self.class_words))] + [KIND_GROUP]


@dataclass(frozen=True)
class ConceptConfig:
    """Protocol of the concept task ([I] marks choices the thesis leaves open)."""

    dataset: str = "disendiff"
    """Dataset id: ``disendiff`` (paper: its 10 scenes), ``gen4gen`` (the 6 Gen4Gen composites; single-concept
    references user-supplied) or ``concept-mini``."""
    dataset_options: dict = field(default_factory=dict)
    """Options passed to the dataset (concept-mini: ``n_pairs``, ``test_views``)."""
    extra_datasets: list = field(default_factory=list)
    """More scene datasets scored in the same run and averaged with ``dataset``'s scenes (paper: ``[gen4gen]``,
    so one run holds the thesis's 16 datasets, 10 DisenDiff + 6 Gen4Gen); their scene ids get ``<id>-``."""
    image_size: int = 512
    """Side at which images are loaded, given to the generator and used as references (thesis: 512)."""
    n_scenes: int | None = None
    """Keep the first scenes only (None: all)."""
    prompts_per_kind: int = 10
    """Prompts per concept and for the group (thesis: 10 + 10 + 10)."""
    images_per_prompt: int = 10
    """Images per prompt (thesis: 10)."""
    placeholders: tuple[str, ...] = ("<new1>", "<new2>")
    """Identifier tokens, one per concept (DisenDiff's and AttenCraft's ``<new1>``, ``<new2>``)."""
    prompt_source: Literal["files", "templates"] = "files"
    """DisenDiff's prompt files where present (spec 2.2), else templates; ``templates`` always uses templates."""
    clip: str = "clip-vit-l-14"
    """CLIP of CLIP-I / CLIP-T (thesis: ViT-L/14; ``mini-clip`` in the mini profile)."""
    clip_image: Literal["pooler", "projected"] = "pooler"
    """CLIP-I image embedding: un-projected ``pooler_output`` (the author's code, default) or projected."""
    clip_t_identifiers: Literal["class", "strip"] = "class"
    """CLIP-T text: identifiers replaced by their class words (default [I]) or stripped (the author's code)."""
    dino: str | None = "dinov2-base"
    """DINO encoder: ``dinov2-base`` (default [I], the thesis' "DINO-V2"), ``dino-vitb16`` (DINO v1),
    ``mini-clip-patches`` (the mini profile's stand-in, keys ``dino[mini-clip-patches,...]``) or None."""
    weights_dir: str | None = None
    """Folder with the CLIP / DINO folders (else ``$BENCH_WEIGHTS``)."""
    fit_masks: Literal["none", "dataset", "folder"] = "none"
    """Concept masks handed to the generator in the fit set: none (AttenCraft makes its own), the dataset's
    (concept-mini, Break-a-Scene) or user-supplied files ``<mask_dir>/<scene>/mask<k>.png`` (Break-a-Scene's
    paper setting; Grounding DINO + SAM are not run here)."""
    mask_dir: str | None = None
    """Folder of user-supplied masks for ``fit_masks: folder``."""
    presence_tolerance: float = 0.2
    """RGB distance within which a pixel shows a concept colour (concept-mini presence / leakage)."""
    presence_min_share: float = 0.5
    """A concept counts as present in an image when one connected region of one of its distinctive colours covers
    at least this share of what it covers in the task's own references of that kind: the concept's reference views
    for a single concept (and for leakage), the input image for the group. (Task version 1 used an absolute 2 % of the image,
    which the two small objects of a group image, the input image itself included, never reached.)"""
    ratio_gap_scenes: int | None = None
    """Also score the subset of this many scenes with the largest estimated sampling-ratio gap
    ``|S_1 - S_2| / (S_1 + S_2)`` (the "w/o softmax" ratio difference of the attention scores S_i a method reports as
    ``ratio_scores``, AttenCraft's Eq. 3.4), keys tagged ``ratio-gap``: Table 3.3's "six datasets in which the
    difference in the estimated sampling ratio exceeds 0.5" (thesis: 6 of 16; None: no subset scores)."""
    trial_selection: Literal["none", "test-metrics"] = "none"
    """How this run's hyperparameters were chosen. ``test-metrics``: the run is a trial of a learning-rate x steps
    sweep whose best trial is selected on these test metrics, as the thesis did for Table 3.1 (a label; it changes
    nothing measured, so it stays out of the protocol hash)."""

    def validate(self) -> None:
        from bench.config import ConfigError

        if self.prompts_per_kind < 1 or self.images_per_prompt < 1:
            raise ConfigError("task.prompts_per_kind and task.images_per_prompt must be >= 1")
        if len(self.placeholders) < 2 or len(set(self.placeholders)) != len(self.placeholders):
            raise ConfigError(f"task.placeholders must be distinct, one per concept, got {list(self.placeholders)}")
        if not 0 < self.presence_min_share <= 1:
            raise ConfigError(f"task.presence_min_share must be in (0, 1], got {self.presence_min_share}")
        if self.ratio_gap_scenes is not None and self.ratio_gap_scenes < 1:
            raise ConfigError(f"task.ratio_gap_scenes must be >= 1 or null, got {self.ratio_gap_scenes}")
        if self.fit_masks == "folder" and not self.mask_dir:
            raise ConfigError("task.fit_masks=folder needs task.mask_dir (<mask_dir>/<scene>/mask<k>.png)")


def normalise_prompt(prompt: str, placeholders: Sequence[str], class_words: Sequence[str]) -> str:
    """A prompt file line in canonical form: DisenDiff's typos (``<mew2>``) and class-word tokens (``<chair>``) become
    ``<newK> <class>``; a placeholder not followed by its class word gets it (``<new1>`` -> ``<new1> cat``)."""
    out = prompt.replace("<mew", "<new")
    for token, word in zip(placeholders, class_words):
        out = re.sub(rf"<{re.escape(word)}>", f"{token} {word}", out)
        out = re.sub(rf"{re.escape(token)}(?!\s+{re.escape(word)}\b)", f"{token} {word}", out)
    return out


def template_prompts(contexts: Sequence[str], subject: str, n: int) -> list[str]:
    """The first ``n`` contexts filled with ``subject`` (cycling when ``n`` exceeds them)."""
    return [contexts[i % len(contexts)].format(subject) for i in range(n)]


class ConceptTask(Task):
    """Multi-concept customization from one image (thesis Tables 3.1-3.3, 3.6)."""

    id: ClassVar[str] = "concept"
    version: ClassVar[int] = 2  # 2: presence / leakage relative to the references' own colour coverage
    description: ClassVar[str] = "learn two concepts from one image; CLIP-I / CLIP-T / DINO / CLIP-I-sync"
    needs: ClassVar[frozenset[str]] = frozenset({"image"})
    main_metric: ClassVar[str] = "clip_i[single]"
    # scene means over the per-sample rows; recomputing them at submit is not implemented yet
    sample_scores: ClassVar[SampleScores] = SampleScores((), not_recomputed=("*",))
    has_real_only_arm: ClassVar[bool] = False
    # added after the chapter-3 mini records: a run without extra datasets keeps their protocol hash
    protocol_left_out_at: ClassVar[dict[str, Any]] = {"extra_datasets": []}
    generator_inputs: ClassVar[frozenset[str]] = frozenset({"fit_masks", "mask_dir", "trial_selection"})
    Config = ConceptConfig

    def fit_gives(self) -> frozenset[str]:
        return frozenset({"concepts", "mask"})  # concept-mini's scene mask: the union of its concept masks

    def given(self) -> frozenset[str]:
        return frozenset({"prompt"})

    def must_follow(self) -> frozenset[str]:
        return frozenset({"prompt"})

    # -- data -----------------------------------------------------------------------------------
    def load(self, ctx: RunContext) -> TaskData:
        c = self.config
        ds = open_dataset(c.dataset, c.dataset_options, c.image_size, ctx)
        if c.dataset == "concept-mini":
            splits = {"train": ds.load("train"), "test": ds.load("test")}
            scenes = self._mini_scenes(ds, splits)
        elif c.dataset in SCENE_FOLDERS:
            splits = {"train": ds.load("train"), "reference": ds.load("reference")}
            scenes = self._disendiff_scenes(splits, c.dataset)
        else:
            raise DataError(f"task concept: dataset '{c.dataset}' is not supported (concept-mini, disendiff, gen4gen)")
        checksums = {name: ds.split_checksum(name) for name in splits}
        for extra in c.extra_datasets:
            if extra not in SCENE_FOLDERS or extra == c.dataset or c.dataset not in SCENE_FOLDERS:
                raise DataError(f"task.extra_datasets: '{extra}' cannot join '{c.dataset}' (extra scene datasets: "
                                f"{', '.join(d for d in SCENE_FOLDERS if d != c.dataset)}, beside disendiff or gen4gen)")
            eds = open_dataset(extra, {}, c.image_size, ctx)
            extra_splits = {"train": eds.load("train"), "reference": eds.load("reference")}
            for scene in self._disendiff_scenes(extra_splits, extra):
                scene.id = f"{extra}-{scene.id}"
                scenes.append(scene)
            for name, split in extra_splits.items():
                splits[f"{extra}:{name}"] = split
                checksums[f"{extra}:{name}"] = eds.split_checksum(name)
        if c.n_scenes is not None:
            scenes = scenes[:c.n_scenes]
        if not scenes:
            raise DataError(f"dataset '{c.dataset}' gave no scene")
        if c.fit_masks == "folder":
            for scene in scenes:
                scene.object_masks = self._folder_masks(scene)
        return TaskData(c.dataset, splits, checksums, extra={"scenes": scenes})

    def _placeholders(self, n: int) -> list[str]:
        if n > len(self.config.placeholders):
            raise DataError(f"a scene has {n} concepts but task.placeholders names {len(self.config.placeholders)}")
        return list(self.config.placeholders[:n])

    def _mini_scenes(self, ds: Any, splits: dict[str, Any]) -> list[Scene]:
        from bench.data.concept_mini import concept_identity

        c = self.config
        test = splits["test"]
        refs: dict[tuple[int, int], list[torch.Tensor]] = {}
        for i in range(len(test)):
            s = test[i]
            refs.setdefault((s.meta["pair"], s.meta["concepts"][0]), []).append(s.image)
        scenes = []
        train = splits["train"]
        for i in range(len(train)):
            s = train[i]
            if s.meta["view"] != 0:
                continue
            words, concepts = list(s.meta["kinds"]), list(s.meta["concepts"])
            tokens = self._placeholders(len(words))
            subjects = [f"{t} {w}" for t, w in zip(tokens, words)]
            prompts = {KIND_SUBJECT.format(k + 1): template_prompts(MINI_CONTEXTS, subj, c.prompts_per_kind)
                       for k, subj in enumerate(subjects)}
            prompts[KIND_GROUP] = template_prompts(MINI_CONTEXTS, " and ".join(subjects), c.prompts_per_kind)
            references = {KIND_SUBJECT.format(k + 1): torch.stack(refs[(s.meta["pair"], concept)])
                          for k, concept in enumerate(concepts)}
            references[KIND_GROUP] = s.image[None]
            scenes.append(Scene(f"pair{s.meta['pair']:02d}", s.image, words, tokens, prompts, references,
                                object_masks=s.meta["object_masks"],
                                identities=[concept_identity(ds.world_seed, k) for k in concepts],
                                world={**s.meta["world"], "concepts": concepts}))
        return scenes

    def _disendiff_scenes(self, splits: dict[str, Any], dataset: str) -> list[Scene]:
        c = self.config
        reference = splits["reference"]
        crops: dict[tuple[str, int], list[torch.Tensor]] = {}
        for i in range(len(reference)):
            s = reference[i]
            crops.setdefault((s.meta["pair"], int(s.meta["subject"])), []).append(s.image)
        scenes = []
        train = splits["train"]
        for i in range(len(train)):
            s = train[i]
            words = list(s.meta["class_words"])
            tokens = self._placeholders(len(words))
            files = s.meta.get("prompts") or {}
            prompts = {}
            for k in range(len(words) + 1):
                kind = KIND_SUBJECT.format(k + 1) if k < len(words) else KIND_GROUP
                subject = f"{tokens[k]} {words[k]}" if k < len(words) else \
                    " and ".join(f"{t} {w}" for t, w in zip(tokens, words))
                lines = files.get(kind) if c.prompt_source == "files" else None
                if lines:
                    lines = [normalise_prompt(p, tokens, words) for p in lines]
                    prompts[kind] = [lines[j % len(lines)] for j in range(c.prompts_per_kind)]
                else:
                    prompts[kind] = template_prompts(PHOTO_CONTEXTS, subject, c.prompts_per_kind)
            references = {}
            for k in range(len(words)):
                if not crops.get((s.meta["pair"], k + 1)):
                    raise DataError(f"{dataset} scene {s.meta['pair']}: no subject{k + 1} reference crops")
                references[KIND_SUBJECT.format(k + 1)] = torch.stack(crops[(s.meta["pair"], k + 1)])
            references[KIND_GROUP] = s.image[None]
            scenes.append(Scene(s.meta["pair"], s.image, words, tokens, prompts, references,
                                object_masks=s.meta.get("object_masks")))
        return scenes

    def _folder_masks(self, scene: Scene) -> torch.Tensor:
        from bench.data import io as dio

        folder = Path(str(self.config.mask_dir)).expanduser() / scene.id
        masks = []
        for k in range(len(scene.class_words)):
            path = folder / f"mask{k}.png"
            if not path.is_file():
                raise DataError(f"task.mask_dir: missing {path} (one mask<k>.png per concept, white = concept)")
            masks.append(resize_mask(torch.from_numpy(dio.read_mask(path, 127)), self.config.image_size))
        return torch.stack(masks)

    # -- what the generator gets ----------------------------------------------------------------
    def fit_identity(self) -> dict[str, Any]:
        c = self.config
        return {"dataset": c.dataset, "dataset_options": c.dataset_options, "image_size": c.image_size,
                **({"extra_datasets": list(c.extra_datasets)} if c.extra_datasets else {}), "n_scenes": c.n_scenes, "placeholders": list(c.placeholders), "fit_masks": c.fit_masks,
                "mask_dir": c.mask_dir}

    def fit_set(self, data: TaskData) -> Sequence[Sample]:
        """One sample per scene: its image, the training caption with class nouns, and the scene in meta."""
        out = []
        for scene in data.extra["scenes"]:
            meta: dict[str, Any] = {"id": scene.id, "scene": scene.id, "class_words": list(scene.class_words),
                                    "placeholders": list(scene.placeholders)}
            if self.config.fit_masks != "none":
                if scene.object_masks is None:
                    raise DataError(f"task.fit_masks={self.config.fit_masks}: scene {scene.id} has no masks")
                meta["object_masks"] = scene.object_masks
            if scene.world is not None:
                meta["world"] = dict(scene.world)
            prompt = "a photo of " + " and ".join(f"{t} {w}" for t, w in zip(scene.placeholders, scene.class_words))
            out.append(Sample(image=scene.image, prompt=prompt, meta=meta))
        return out

    def conditions(self, data: TaskData, ctx: RunContext) -> list[Condition]:
        c = self.config
        out = []
        for scene in data.extra["scenes"]:
            first = True
            for kind in scene.kinds:
                for p, prompt in enumerate(scene.prompts[kind]):
                    for m in range(c.images_per_prompt):
                        out.append(Condition(prompt=prompt, meta={
                            "index": len(out), "scene": scene.id, "kind": kind, "prompt_index": p, "image_index": m,
                            "placeholders": list(scene.placeholders), "class_words": list(scene.class_words),
                            "report_masks": first}))
                        first = False
        return out

    # -- scores -----------------------------------------------------------------------------------
    def evaluate(self, data: TaskData, synthetic: Sequence[Sample], ctx: RunContext, method_id: str) -> Evaluation:
        from bench.metrics.concept import clip_t_text, load_concept_encoders, scene_scores

        c = self.config
        conditions = self.conditions(data, ctx)
        if len(synthetic) != len(conditions):
            raise ValueError(f"concept: {len(synthetic)} generated samples for {len(conditions)} conditions")
        encoders = load_concept_encoders(c.clip, c.clip_image, c.dino, c.weights_dir)
        by_scene: dict[str, dict[str, list[int]]] = {}
        for i, cond in enumerate(conditions):
            by_scene.setdefault(cond.meta["scene"], {}).setdefault(cond.meta["kind"], []).append(i)
        rows = []
        for scene in data.extra["scenes"]:
            kinds = by_scene[scene.id]
            generated = {k: self._stack([synthetic[i] for i in idx]) for k, idx in kinds.items()}
            texts = {k: [clip_t_text(conditions[i].prompt or "", scene.placeholders, scene.class_words,
                                     c.clip_t_identifiers) for i in idx] for k, idx in kinds.items()}
            row: dict[str, Any] = {"scene": scene.id, **scene_scores(encoders, generated, texts, scene.references)}
            if scene.identities is not None:
                row.update(self._presence(scene, generated))
            scene_samples = [synthetic[i] for idx in kinds.values() for i in idx]
            ious = self._mask_ious(scene, scene_samples)
            if ious is not None:
                row["attn_mask_iou"] = sum(ious) / len(ious)
            row.update(self._reported_scores(scene, scene_samples))
            rows.append(row)
        keys = sorted({k for r in rows for k in r if k != "scene" and not k.startswith("_")})
        metrics = {k: sum(r[k] for r in rows if k in r) / sum(k in r for r in rows) for k in keys}
        metrics.update(self._ratio_gap_subset(rows))
        rows = [{k: v for k, v in r.items() if not k.startswith("_")} for r in rows]
        higher = {k: not (k.startswith("clip_i_sync") or k.startswith("leakage") or k.startswith("ratio_gap"))
                  for k in metrics}
        return Evaluation(metrics=metrics, higher_is_better=higher, per_sample=rows,
                          counts={"scenes": len(rows), "generated": len(synthetic),
                                  "scenes_with_masks": sum("attn_mask_iou" in r for r in rows)})

    def _stack(self, samples: Sequence[Sample]) -> torch.Tensor:
        size = samples[0].image.shape[-1]
        return torch.stack([resize_image(s.image if s.image.shape[0] == 3 else s.image.expand(3, -1, -1), size)
                            for s in samples])

    def _presence(self, scene: Scene, generated: dict[str, torch.Tensor]) -> dict[str, float]:
        from bench.metrics.concept import colour_coverage, distinctive_colours

        c = self.config
        ids = scene.identities or []
        colours = [distinctive_colours(ids[k], [o for j, o in enumerate(ids) if j != k]) for k in range(len(ids))]

        def coverage(images: torch.Tensor) -> list[torch.Tensor]:
            return [colour_coverage(images, col, c.presence_tolerance) for col in colours]

        # what each concept covers in the task's own references: alone (its views) and in the input image
        alone = [float(colour_coverage(scene.references[KIND_SUBJECT.format(k + 1)], colours[k],
                                       c.presence_tolerance).mean()) for k in range(len(ids))]
        grouped = [float(v.mean()) for v in coverage(scene.references[KIND_GROUP])]

        def present(shares: list[torch.Tensor], reference: list[float]) -> list[torch.Tensor]:
            # a concept without distinctive colours (reference 0) is never found
            return [(share >= c.presence_min_share * ref) if ref > 0 else torch.zeros_like(share, dtype=torch.bool)
                    for share, ref in zip(shares, reference)]

        own, leak = [], []
        for k in range(len(ids)):
            found = present(coverage(generated[KIND_SUBJECT.format(k + 1)]), alone)
            own.append(found[k].float().mean())
            leak.extend(found[j].float().mean() for j in range(len(ids)) if j != k)
        group = torch.stack(present(coverage(generated[KIND_GROUP]), grouped)).all(0).float().mean()
        return {"presence[single]": float(sum(own) / len(own)), "leakage[single]": float(sum(leak) / len(leak)),
                "presence[group]": float(group)}

    @staticmethod
    def _reported_scores(scene: Scene, samples: Sequence[Sample]) -> dict[str, Any]:
        """What the method reported on the scene's flagged sample: ``max_ca_scores`` (highest cross-attention of
        each [V_k] in its mask, Table 3.5) as ``max_ca_score[<scene>,subject<k>]``, and ``ratio_scores`` (the
        attention scores S_k behind the sampling ratios) kept for the ratio-gap subset."""
        reported = next((s.meta for s in samples if s.meta and ("max_ca_scores" in s.meta or
                                                                   "ratio_scores" in s.meta)), None)
        if reported is None:
            return {}
        out: dict[str, Any] = {}
        for k, value in enumerate(reported.get("max_ca_scores") or []):
            out[f"max_ca_score[{scene.id},{KIND_SUBJECT.format(k + 1)}]"] = float(value)
        scores = reported.get("ratio_scores")
        if scores and len(scores) >= 2 and sum(scores[:2]) > 0:
            out["ratio_gap"] = abs(scores[0] - scores[1]) / (scores[0] + scores[1])
        return out

    def _ratio_gap_subset(self, rows: list[dict[str, Any]]) -> dict[str, float]:
        """Thesis metrics over the ``ratio_gap_scenes`` scenes with the largest ratio gap, keys tagged ``ratio-gap``
        (``clip_i[mini-clip,single,ratio-gap]``); nothing when the option is off or no scene has a gap."""
        n = self.config.ratio_gap_scenes
        scored = [r for r in rows if "ratio_gap" in r]
        if n is None or not scored:
            return {}
        chosen = sorted(scored, key=lambda r: -r["ratio_gap"])[:n]
        keys = sorted({k for r in chosen for k in r if re.match(r"(clip_i|clip_t|dino|clip_i_sync)(\[|$)", k)})
        out = {}
        for k in keys:
            base, _, tags = k.partition("[")
            tagged = f"{base}[{tags[:-1]},ratio-gap]" if tags else f"{base}[ratio-gap]"
            out[tagged] = sum(r[k] for r in chosen if k in r) / sum(k in r for r in chosen)
        out["ratio_gap[subset_min]"] = min(r["ratio_gap"] for r in chosen)
        return out

    @staticmethod
    def _mask_ious(scene: Scene, samples: Sequence[Sample]) -> list[float] | None:
        from bench.metrics.concept import mask_iou

        if scene.object_masks is None:
            return None
        reported = [s.meta["attention_masks"] for s in samples if s.meta and s.meta.get("attention_masks") is not None]
        if not reported:
            return None
        return mask_iou(torch.tensor(reported[0], dtype=torch.bool), scene.object_masks)
