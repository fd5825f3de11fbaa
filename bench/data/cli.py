"""``bench data``: list the datasets, show a data card, check a dataset folder, export a split.

Mounted by ``bench/cli.py`` as ``bench data``; importing it imports no torch.

Examples:
    bench data list
    bench data info ph2
    bench data check ph2 --root ~/data/dermoscopy
    bench data split busi --root ~/data --out busi-split.csv
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

import typer

logger = logging.getLogger(__name__)

app = typer.Typer(help="Real datasets: list them, show their data cards, check a folder against its card.",
                  no_args_is_help=True, add_completion=False)


def _dataset_class(name: str):
    from bench.registry import DATASETS, UnknownEntryError

    try:
        return DATASETS.get(name)
    except UnknownEntryError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None


@app.command("list")
def list_datasets() -> None:
    """List every registered dataset with its card's name and split source.

    Example: bench data list
    """
    from bench.data.base import DataError
    from bench.data.cards import load_card
    from bench.registry import DATASETS

    for name in DATASETS.names():
        try:
            card = load_card(name)
            sources = sorted({str((v or {}).get("source", "?")).split()[0] for v in card["splits"].values()})
            typer.echo(f"{name:16s} {card['name']}  [splits: {', '.join(card['splits'])}; {'/'.join(sources)}]")
        except DataError:
            typer.echo(f"{name:16s} (built in, no data card: needs no --data-root)")


@app.command()
def info(name: str = typer.Argument(..., help="dataset id, e.g. ph2"),
         root: Optional[Path] = typer.Option(None, "--root", help="data root: also count the samples per split")) -> None:
    """Show a dataset's data card (and, with --root, the counts found there).

    Examples: bench data info ph2 | bench data info ph2 --root ~/data/dermoscopy
    """
    import yaml

    from bench.data.base import DataError
    from bench.data.cards import card_path, load_card

    _dataset_class(name)
    try:
        card = load_card(name)
    except DataError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from None
    typer.echo(f"# {card_path(name)}")
    typer.echo(yaml.safe_dump(card, sort_keys=False, allow_unicode=True, width=100).rstrip())
    if root is not None:
        try:
            dataset = _dataset_class(name)(root=root)
            typer.echo(f"# counts under {root}")
            for split in dataset.splits:
                ids = dataset.split_ids(split)
                typer.echo(f"{split}: {len(ids)} samples, checksum {dataset.split_checksum(split)}")
        except DataError as exc:
            typer.echo(str(exc), err=True)
            raise typer.Exit(1) from None


@app.command()
def check(name: str = typer.Argument(..., help="dataset id, e.g. ph2"),
          root: Path = typer.Option(..., "--root", help="data root (--data-root of bench run)"),
          quick: bool = typer.Option(False, "--quick", help="layout and counts only; do not decode every file")) -> None:
    """Check a dataset folder against its card; one line per problem, exit 1 if any.

    Reports missing folders, missing masks, unpaired files, wrong counts, unreadable images,
    non-binary masks and image-mask size mismatches.

    Example: bench data check ph2 --root ~/data/dermoscopy
    """
    from bench.data.base import DataError

    cls = _dataset_class(name)
    try:
        dataset = cls(root=root)
        problems = dataset.check(decode=not quick) if _accepts_decode(dataset) else dataset.check()
    except DataError as exc:
        typer.echo(str(exc))
        typer.echo("1 problem")
        raise typer.Exit(1) from None
    for problem in problems:
        typer.echo(str(problem))
    if problems:
        typer.echo(f"{len(problems)} problem{'s' if len(problems) != 1 else ''}")
        raise typer.Exit(1)
    counts = ", ".join(f"{s} {len(dataset.split_ids(s))}" for s in dataset.splits)
    typer.echo(f"{name}: OK ({counts}) under {getattr(dataset, 'folder', root)}")
    typer.echo("0 problems")


@app.command()
def split(name: str = typer.Argument(..., help="dataset id, e.g. busi"),
          root: Optional[Path] = typer.Option(None, "--root", help="data root (--data-root of bench run)"),
          out: Optional[Path] = typer.Option(None, "--out", help="write the CSV here instead of printing it")) -> None:
    """Print the split of a dataset as the standard ``id,split`` CSV, with each split's checksum on stderr.

    For derived splits this is the file a run's split checksums refer to; for committed ones it
    reproduces the committed file from the folder.

    Example: bench data split busi --root ~/data --out busi-split.csv
    """
    from bench.data.base import DataError
    from bench.data.splits import split_csv_text

    try:
        dataset = _dataset_class(name)(root=root)
        named = [s for s in dataset.splits if s != "all"]
        assignment = {sid: s for s in named for sid in dataset.split_ids(s)}
        checksums = {s: dataset.split_checksum(s) for s in named}
    except DataError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from None
    text = split_csv_text(assignment, named)
    if out is not None:
        out.write_text(text, encoding="utf-8")
    else:
        typer.echo(text, nl=False)
    for s, checksum in checksums.items():
        typer.echo(f"{s}: {sum(1 for v in assignment.values() if v == s)} ids, checksum {checksum}", err=True)


def _accepts_decode(dataset: object) -> bool:
    import inspect

    return "decode" in inspect.signature(dataset.check).parameters
