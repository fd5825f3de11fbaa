"""``bench submit``: accept result records into ``results/leaderboard/``.

A submission is data only. Each file is read as bytes, decoded as UTF-8 and parsed
with the standard JSON parser (NaN/Infinity constants and duplicate keys refused);
nothing is imported from it, executed or unpickled. A record is accepted when:

1. it is a regular file of at most `MAX_RECORD_BYTES` holding one JSON object;
2. it follows the record schema (``bench/schema/record.schema.json``);
3. its run id is a plain file name whose leaderboard path stays inside the leaderboard;
4. its task is a known task;
5. every metric key (headline and per-model) is in the metric catalogue, every value
   lies in the metric's range, and every stated direction agrees with the catalogue;
6. its protocol hash equals the one recomputed from the current task definition and
   split checksums (`bench.runner.recompute_protocol_hash`);
7. it is not already on the leaderboard: neither the same run id nor the same
   (task, dataset, method, profile, seed, protocol) — nor twice in one submission;
8. its profile is ``mini`` or ``paper`` (``smoke`` only when explicitly allowed);
9. it agrees with itself (`bench.leaderboard.checks`): run id, dataset, profile and configs tell one story; its
   content hashes match; headline, per-model values and comparisons recompute from its per-sample scores, which
   cover exactly the protocol's test split.

Accepted records are re-serialised from the parsed object and written atomically
without ever replacing an existing file (temporary file + hard link). The files a
record points to come along only when they are plain data inside the record's own
folder: PNG artefacts (checked by their signature, sample grids and plots for the
site) and the per-sample CSV (UTF-8 text, used for the chapter 5 bias plots). They
are stored as ``<run_id>.<name>.png`` and ``<run_id>.scores.csv`` and the record's
paths are rewritten to those names; anything else is left behind and dropped from
the record, with a note in the verdict.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.store import MAX_RECORD_BYTES, sealed

logger = logging.getLogger(__name__)

MAX_ATTACHMENT_BYTES = 5_000_000
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
RANKED_PROFILES = ("mini", "paper")


class SubmissionError(ValueError):
    """Why one record is refused (a single line)."""


@dataclass(frozen=True)
class Verdict:
    """The outcome for one submitted file."""

    source: Path
    accepted: bool
    reason: str
    run_id: str | None = None
    destination: Path | None = None

    def line(self) -> str:
        if self.accepted:
            extra = self.reason[self.reason.index("("):] if "(" in self.reason else ""
            verb = "would accept" if self.reason.startswith("dry run") else "accepted"
            return f"{verb} {self.source} -> {self.destination} {extra}".rstrip()
        return f"refused {self.source}: {self.reason}"


def default_leaderboard_dir() -> Path:
    """``results/leaderboard`` of the source tree."""
    from bench.paths import project_dir

    return project_dir() / "results" / "leaderboard"


def expected_protocol_hash(record: dict[str, Any]) -> str:
    """The protocol hash the record should carry; the one seam to the runner.

    Raises:
        SubmissionError: if the task config in the record is invalid or the split
            checksums cannot be recomputed (the runner's one-line reason).
    """
    from bench.runner import BenchError, recompute_protocol_hash

    try:
        return recompute_protocol_hash(record)
    except BenchError as exc:
        raise SubmissionError(f"cannot verify the protocol hash: {exc}") from None


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key '{key}'")
        out[key] = value
    return out


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def read_submission(path: Path) -> dict[str, Any]:
    """Parse one submitted file as a JSON object, refusing anything else (one-line SubmissionError)."""
    path = Path(path)
    if not path.exists():
        raise SubmissionError("no such file")
    if not path.is_file():
        raise SubmissionError("not a regular file")
    size = path.stat().st_size
    if size > MAX_RECORD_BYTES:
        raise SubmissionError(f"file is {size} bytes, more than the {MAX_RECORD_BYTES} allowed for a record")
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise SubmissionError("not JSON: the file is not UTF-8 text (binary or pickled content?)") from None
    try:
        obj = json.loads(text, parse_constant=_refuse_constant, object_pairs_hook=_no_duplicate_keys)
    except (json.JSONDecodeError, ValueError) as exc:
        raise SubmissionError(f"not JSON: {str(exc).splitlines()[0]}") from None
    except RecursionError:
        raise SubmissionError("not a record: the JSON is nested too deeply to read") from None
    if not isinstance(obj, dict):
        raise SubmissionError(f"not a record: the JSON top level is a {type(obj).__name__}, not an object")
    return obj


def leaderboard_path(run_id: str, leaderboard: Path) -> Path:
    """Where ``run_id`` is stored; refuses any id that would leave ``leaderboard``."""
    if not run_id or run_id in (".", "..") or any(c in run_id for c in "/\\\0") or run_id.startswith("."):
        raise SubmissionError(f"run_id '{run_id}' is not a plain file name")
    root = leaderboard.resolve()
    dest = (root / f"{run_id}.json").resolve()
    if dest.parent != root:
        raise SubmissionError(f"run_id '{run_id}' would be written outside the leaderboard")
    return dest


def check_metrics(record: dict[str, Any]) -> None:
    """Every metric key known, in range, and with the catalogue's direction (SubmissionError otherwise)."""
    from bench.metrics import METRIC_INFO, check_value

    places: list[tuple[str, dict[str, Any]]] = [("metrics", record["metrics"])]
    places += [(f"per_model.{model}", values) for model, values in sorted(record["per_model"].items())]
    for where, values in places:
        for key, value in values.items():
            if key not in METRIC_INFO:
                raise SubmissionError(f"unknown metric '{key}' in {where}")
            problem = check_value(key, value)
            if problem:
                raise SubmissionError(f"{where}: {problem}")
    for key, info in record["metric_info"].items():
        if key not in METRIC_INFO:
            raise SubmissionError(f"unknown metric '{key}' in metric_info")
        expected = METRIC_INFO[key].higher_is_better
        if expected is not None and info["higher_is_better"] != expected:
            raise SubmissionError(f"metric_info.{key}.higher_is_better is {info['higher_is_better']}, the metric catalogue says {expected}")


def identity(record: dict[str, Any]) -> tuple[str, ...]:
    """What makes two records the same run: task, dataset, method and its resolved config, profile, seed,
    protocol, and what the generator was given (a method's variants, e.g. DiDGen's prefix and DermPrompt rows of
    Table 4.1, are distinct entries)."""
    from bench.store import stable_hash

    config = record.get("config") or {}
    return (record["task"]["id"], record["dataset"]["id"], record["method"]["id"], record["profile"],
            str(record["seed"]), record["protocol_hash"],
            stable_hash({"method": config.get("method"), "task": config.get("task")}, 16))


def existing_identities(leaderboard: Path) -> dict[tuple[str, ...], str]:
    """Identity -> run id of every record already accepted."""
    from bench.store import iter_records

    if not leaderboard.is_dir():
        return {}
    return {identity(rec): rec["run_id"] for _, rec in iter_records(leaderboard)}


def check_record(record: dict[str, Any], leaderboard: Path, allow_profiles: Sequence[str],
                 protocol_hash_of: Callable[[dict[str, Any]], str]) -> Path:
    """Run checks 2-6 and 8 of the module doc on a parsed record; returns its leaderboard path."""
    from bench.registry import TASKS
    from bench.store import RecordError, validate_record

    try:
        validate_record(record)
    except RecordError as exc:
        raise SubmissionError(str(exc)) from None
    dest = leaderboard_path(record["run_id"], leaderboard)
    if record["profile"] not in allow_profiles:
        hint = " (--allow-smoke accepts smoke records, for testing the pipeline)" if record["profile"] == "smoke" else ""
        raise SubmissionError(f"profile '{record['profile']}' is not ranked; the leaderboard takes "
                              f"{', '.join(allow_profiles)}{hint}")
    task_id = record["task"]["id"]
    if task_id not in TASKS:
        raise SubmissionError(TASKS.unknown_message(task_id))
    check_metrics(record)
    expected = protocol_hash_of(record)
    if record["protocol_hash"] != expected:
        raise SubmissionError(f"protocol hash mismatch: the record says {record['protocol_hash'][:12]}..., the current "
                              f"task definition and split checksums give {expected[:12]}...")
    return dest


def write_new(dest: Path, content: str | bytes) -> None:
    """Write ``content`` to ``dest`` atomically, failing with FileExistsError if ``dest`` exists."""
    data = content.encode("utf-8") if isinstance(content, str) else content
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp's 0600 would hide the leaderboard from other users
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.link(tmp, dest)  # atomic, and never replaces an existing file
    finally:
        Path(tmp).unlink(missing_ok=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _inside(folder: Path, rel: Any) -> Path | None:
    """``folder / rel`` if it is an existing regular file inside ``folder`` (no escape by .. or symlinks)."""
    if not isinstance(rel, str) or not rel:
        return None
    root = folder.resolve()
    candidate = (root / rel).resolve()
    try:
        candidate.relative_to(root)
    except ValueError:
        return None
    return candidate if candidate.is_file() and candidate.stat().st_size <= MAX_ATTACHMENT_BYTES else None


def attachments(record: dict[str, Any], source: Path) -> tuple[dict[str, Any], list[tuple[str, bytes]], list[str]]:
    """Data files to store with the record, the record rewritten to their new names, and what was left out.

    Returns:
        ``(record, files, dropped)``: the record with ``artifacts``/``per_sample_file``
        pointing at the stored names, ``[(file name, bytes)]`` to write, and the names of
        the references that were not taken (outside the folder, missing, not PNG/CSV).
    """
    folder = Path(source).parent
    run_id = record["run_id"]
    files: list[tuple[str, bytes]] = []
    dropped: list[str] = []
    kept: dict[str, str] = {}
    for name, rel in sorted((record.get("artifacts") or {}).items()):
        if not re.fullmatch(r"[A-Za-z0-9_-]{1,60}", name):
            raise SubmissionError(f"artefact key '{name}' is not a plain name (letters, digits, '_' and '-')")
        path = _inside(folder, rel)
        data = path.read_bytes() if path is not None and path.suffix.lower() == ".png" else b""
        safe = re.sub(r"[^A-Za-z0-9_-]", "_", name)[:60] or "artifact"
        if not data.startswith(PNG_MAGIC):
            dropped.append(f"artifacts.{name}")
            continue
        target = f"{run_id}.{safe}.png"
        if target in {f for f, _ in files}:
            dropped.append(f"artifacts.{name}")
            continue
        files.append((target, data))
        kept[name] = target
    out = dict(record)
    if "artifacts" in record:
        out["artifacts"] = kept
    if record.get("per_sample_file"):
        path = _inside(folder, record["per_sample_file"])
        data = path.read_bytes() if path is not None and path.suffix.lower() == ".csv" else None
        try:
            ok = data is not None and b"\0" not in data and bool(data.decode("utf-8"))
        except UnicodeDecodeError:
            ok = False
        if ok:
            files.append((f"{run_id}.scores.csv", data))
            out["per_sample_file"] = f"{run_id}.scores.csv"
        else:
            dropped.append("per_sample_file")
            out["per_sample_file"] = None
    return out, files, dropped


def _store(dest: Path, record: dict[str, Any], files: Sequence[tuple[str, bytes]]) -> None:
    """Write the attachments, then the record (the commit point); undo the attachments on failure."""
    written: list[Path] = []
    try:
        for name, data in files:
            target = dest.parent / name
            write_new(target, data)
            written.append(target)
        write_new(dest, json.dumps(record, indent=2, ensure_ascii=False) + "\n")
    except BaseException:
        for path in written:
            path.unlink(missing_ok=True)
        raise


def submit(paths: Iterable[Path], leaderboard: Path | None = None, allow_profiles: Sequence[str] = RANKED_PROFILES,
           protocol_hash_of: Callable[[dict[str, Any]], str] = expected_protocol_hash, dry_run: bool = False) -> list[Verdict]:
    """Check every file and copy the accepted records into the leaderboard.

    Args:
        paths: submitted record files.
        leaderboard: the leaderboard folder (default ``results/leaderboard``).
        allow_profiles: profiles that may be ranked (``smoke`` is refused by default).
        protocol_hash_of: record -> expected protocol hash (the runner's recomputation).
        dry_run: check only, write nothing.

    Returns:
        One `Verdict` per file, in order; a refusal's ``reason`` is one line.
    """
    leaderboard = Path(leaderboard) if leaderboard else default_leaderboard_dir()
    leaderboard.mkdir(parents=True, exist_ok=True)
    seen = existing_identities(leaderboard)
    verdicts = []
    for path in paths:
        path = Path(path)
        run_id = None
        try:
            record = read_submission(path)
            run_id = record.get("run_id") if isinstance(record.get("run_id"), str) else None
            dest = check_record(record, leaderboard, allow_profiles, protocol_hash_of)
            from bench.leaderboard.checks import self_consistency

            notes = self_consistency(record, path.parent)
            if dest.exists():
                raise SubmissionError(f"duplicate: run id '{record['run_id']}' is already on the leaderboard")
            key = identity(record)
            if key in seen:
                raise SubmissionError(f"duplicate: the same task, dataset, method and config, profile, seed and protocol is "
                                      f"already accepted as '{seen[key]}'")
            stored, files, dropped = attachments(record, path)
            # the stored copy names its files as the leaderboard does and leaves out what was not taken: its
            # content hashes are those of what is stored (the same as submitted when nothing was renamed)
            stored = sealed(stored, {name: hashlib.sha256(data).hexdigest() for name, data in files})
            if not dry_run:
                try:
                    _store(dest, stored, files)
                except FileExistsError:
                    raise SubmissionError(f"duplicate: run id '{record['run_id']}' or one of its files is already on "
                                          "the leaderboard") from None
            seen[key] = record["run_id"]
            stored_note = f"{len(files) + 1} file(s) {'to store' if dry_run else 'stored'}"
            note = " (" + "; ".join([stored_note] + ([f"not taken: {', '.join(dropped)}"] if dropped else []) + notes) + ")"
            reason = ("dry run: would accept" if dry_run else "accepted") + note
            verdicts.append(Verdict(path, True, reason, run_id, dest))
            logger.info("%s %s as %s", "would accept" if dry_run else "accepted", path, dest)
        except SubmissionError as exc:
            verdicts.append(Verdict(path, False, str(exc), run_id))
            logger.info("refused %s: %s", path, exc)
    return verdicts
