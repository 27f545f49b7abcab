"""A batch's items: each image paired with its confounds, sample mask, brain mask and denoising
record, and named as its run in the store (the BIDS prefix of its file name, else
``item-<index>``), names checked and made unique."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from daskmasker.batch.store import check_name

_NIFTI_SUFFIXES = (".nii.gz", ".nii", ".zarr")


@dataclass(slots=True)
class Item:
    """One image to process: its source, name, confounds and sample mask; optionally its
    brain mask (the maps' coverage is measured inside it) and a ``denoise`` record (how the
    confounds and sample mask were chosen: kept in the run's attributes and fingerprint)."""

    image: Any
    name: str
    confounds: Any = None
    sample_mask: Any = None
    brain_mask: Any = None
    denoise: dict | None = None


def _base_name(path: str) -> str:
    """``PurePosixPath(path).name`` without pathlib's parsing (a resume names every run)."""
    tail = path.rsplit("/", 1)[-1]
    if tail and tail != ".":
        return tail
    parts = [p for p in path.split("/") if p and p != "."]
    return parts[-1] if parts else ""


def item_name(source: Any, index: int) -> str:
    """A group name for an input: the BIDS prefix of a file name, else ``item-<index>``.

    ``sub-01/func/sub-01_task-rest_bold.nii.gz`` gives ``sub-01_task-rest``.
    """
    if not isinstance(source, str) and (
        isinstance(source, PurePosixPath) or hasattr(source, "__fspath__")
    ):
        source = str(source)
    if isinstance(source, str):
        stem = source.rsplit("/", 1)[-1]  # string methods, not regular expressions: a resume
        if stem.endswith("_bold.nii.gz") and len(stem) > 12:  # names every run
            return stem[:-12]
        if not stem or stem == ".":
            stem = _base_name(source)
        for suffix in _NIFTI_SUFFIXES:
            if stem.endswith(suffix):
                stem = stem[: -len(suffix)]
                break
        stem = stem.removesuffix("_bold")
        if stem:
            return stem
    return f"item-{index:04d}"


def make_items(
    imgs: Sequence,
    confounds: Sequence | None = None,
    sample_masks: Sequence | None = None,
    names: Sequence[str] | None = None,
    brain_masks: Sequence | None = None,
    denoise: Sequence[dict | None] | None = None,
) -> list[Item]:
    """Pair images with their confounds, sample masks, brain masks and denoise records
    (lists of the same length)."""
    n = len(imgs)
    for label, values in (
        ("confounds", confounds),
        ("sample_masks", sample_masks),
        ("brain_masks", brain_masks),
        ("denoise", denoise),
    ):
        if values is not None and len(values) != n:
            raise ValueError(
                f"number of {label} ({len(values)}) unequal to number of images ({n})."
            )
    given = list(names) if names is not None else [item_name(img, i) for i, img in enumerate(imgs)]
    for name in given:
        check_name(name)
    seen: dict[str, int] = {}
    for i, name in enumerate(given):
        if name in seen:
            given[i] = f"{name}_{i:04d}"
        seen[given[i]] = i
    nothing = [None] * n
    columns = [nothing if v is None else v for v in (confounds, sample_masks, brain_masks, denoise)]
    return [Item(*fields) for fields in zip(imgs, given, *columns, strict=True)]
