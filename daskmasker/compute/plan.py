"""Planning: every budget of an extraction from shapes and byte budgets, in one plan object.

Pure functions of shapes, itemsizes and byte budgets (no I/O, no Dask), as rechunker plans:
:func:`plan_extraction` decides the chunks of whole volumes an image is read in, the batches of
chunks each maps product takes, the width of the float64 slabs a product runs through the cache,
and whether a batch of small runs runs whole, several items per job.  Readers, the projection
graph and the batch runner take their numbers from the returned :class:`ExtractionPlan`, whose
``repr`` shows them.  :class:`Budgets` holds the byte budgets; :meth:`Budgets.from_config` reads
them from the ``daskmasker.*`` settings (``daskmasker.yaml``).  A study's connectivity is
planned the same way (:func:`plan_connectivity`: runs per task, and whether tangent's descent
keeps the covariances between its steps).

Examples
--------
>>> budgets = Budgets(chunk_bytes=100, gemm_bytes=800, gemm_max_volumes=64, slab_bytes=8192)
>>> plan_extraction(10, 30, n_support=20, budgets=budgets)
ExtractionPlan(10 volumes × 30 B)
  time chunks      4 × ≤ 3 volumes, ≤ 100 B each: (3, 3, 2, 2)
  product batches  2 × ≤ 6 volumes, aiming at 5 (≤ 800 B of support): (6, 4)
  slab widths      256 support voxels dense, 2048 sparse (8.0 KiB of float64)
  items per job    1; runs whole: True (≤ 16.0 MiB)
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from daskmasker import config

MIN_SLAB_WIDTH = 256
"""Fewest support voxels a slab holds, however many volumes a batch has."""

MAX_ITEMS_PER_JOB = 16
"""Most small runs one job extracts (see :func:`items_per_job`)."""


@dataclass(frozen=True)
class Budgets:
    """The byte budgets an extraction is planned under.

    Attributes
    ----------
    chunk_bytes : int
        Voxels per chunk of whole volumes (reading, conversion).
    gemm_bytes : int
        Gathered support voxels per product batch.
    gemm_max_volumes : int
        Most volumes a product batch holds.
    slab_bytes : int
        float64 support values cast per product step (fits in L2).
    whole_item_bytes : int
        Voxels of a run small enough to run whole on a worker, several per job (0: none).
    """

    chunk_bytes: int = 32 * 2**20
    gemm_bytes: int = 64 * 2**20
    gemm_max_volumes: int = 64
    slab_bytes: int = 2**20
    whole_item_bytes: int = 16 * 2**20

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            least = 0 if field.name == "whole_item_bytes" else 1  # 0: no run is small enough
            if not isinstance(value, int) or value < least:
                raise ValueError(
                    f"budget {field.name} must be an integer of at least {least}, got {value!r}"
                )

    @classmethod
    def from_config(cls) -> Budgets:
        """The budgets set in Dask's configuration under ``daskmasker.*``."""
        return cls(
            chunk_bytes=int(config.get("chunk-bytes")),
            gemm_bytes=int(config.get("gemm-bytes")),
            gemm_max_volumes=int(config.get("gemm-max-volumes")),
            slab_bytes=int(config.get("slab-bytes")),
            whole_item_bytes=int(config.get("batch.whole-item-bytes")),
        )


@dataclass(frozen=True)
class ExtractionPlan:
    """Every budget of one image's extraction (see :func:`plan_extraction`).

    Attributes
    ----------
    n_volumes, volume_nbytes : int
        The image: its volumes and the bytes of one volume.
    time_chunks : tuple of int
        Volumes per chunk, in order.
    batch_volumes : int
        The volumes a product batch aims at (a batch takes whole chunks up to at least this).
    batches : tuple of tuples of int
        The chunks (by index) of each product batch.
    slab_widths, sparse_slab_widths : tuple of int
        Per batch, the support voxels of one float64 slab of its product with dense maps, and
        with sparse (CSR) maps.
    items_per_job : int
        Small runs extracted by one job when they run whole.
    runs_whole : bool
        Whether the image is small enough to run whole (``whole_item_bytes``).
    budgets : Budgets
    """

    n_volumes: int
    volume_nbytes: int
    time_chunks: tuple[int, ...]
    batch_volumes: int
    batches: tuple[tuple[int, ...], ...]
    slab_widths: tuple[int, ...]
    sparse_slab_widths: tuple[int, ...]
    items_per_job: int
    runs_whole: bool
    budgets: Budgets

    @property
    def batch_sizes(self) -> tuple[int, ...]:
        """Volumes in each product batch."""
        return tuple(sum(self.time_chunks[i] for i in batch) for batch in self.batches)

    def __repr__(self) -> str:
        b = self.budgets
        chunks, sizes = self.time_chunks, self.batch_sizes
        return "\n".join(
            [
                f"ExtractionPlan({self.n_volumes} volumes × {_bytes(self.volume_nbytes)})",
                f"  time chunks      {len(chunks)} × ≤ {max(chunks, default=0)} volumes, "
                f"≤ {_bytes(b.chunk_bytes)} each: {_shown(chunks)}",
                f"  product batches  {len(sizes)} × ≤ {max(sizes, default=0)} volumes, aiming at "
                f"{self.batch_volumes} (≤ {_bytes(b.gemm_bytes)} of support): {_shown(sizes)}",
                f"  slab widths      {max(self.slab_widths, default=0)} support voxels dense, "
                f"{max(self.sparse_slab_widths, default=0)} sparse "
                f"({_bytes(b.slab_bytes)} of float64)",
                f"  items per job    {self.items_per_job}; runs whole: {self.runs_whole} "
                f"(≤ {_bytes(b.whole_item_bytes)})",
            ]
        )


def plan_extraction(
    n_volumes: int,
    volume_nbytes: int,
    *,
    n_support: int = 0,
    gathered_itemsize: int = 8,
    time_chunks: tuple[int, ...] | None = None,
    batch_volumes: int | None = None,
    n_items: int = 1,
    slots: int = 1,
    budgets: Budgets | None = None,
) -> ExtractionPlan:
    """Plan every budget of an extraction.

    Parameters
    ----------
    n_volumes : int
        Volumes of the image.
    volume_nbytes : int
        Bytes of one volume as read.
    n_support : int, default=0
        Support voxels the products gather (0 when not known yet: the batches are then one
        volume's worth of ``gemm_bytes``).
    gathered_itemsize : int, default=8
        Bytes of a gathered support value (4 for float32 data, see
        :func:`~daskmasker.compute.dtypes.compact_dtype`).
    time_chunks : tuple of int, optional
        The chunks the image is already read in; planned from ``chunk_bytes`` by default.
    batch_volumes : int, optional
        Volumes per product batch, instead of the budgets' choice.
    n_items : int, default=1
        Runs of a batch (for ``items_per_job``).
    slots : int, default=1
        Threads that run jobs (for ``items_per_job``).
    budgets : Budgets, optional
        :meth:`Budgets.from_config` by default.

    Returns
    -------
    ExtractionPlan

    Raises
    ------
    ValueError
        Negative sizes, or ``time_chunks`` that do not add up to ``n_volumes``.
    """
    if budgets is None:
        budgets = Budgets.from_config()
    if min(n_volumes, volume_nbytes, n_support, n_items) < 0 or gathered_itemsize < 1:
        raise ValueError(
            f"invalid extraction plan: n_volumes={n_volumes}, volume_nbytes={volume_nbytes}, "
            f"n_support={n_support}, gathered_itemsize={gathered_itemsize}, n_items={n_items}"
        )
    if time_chunks is None:
        chunks = plan_time_chunks(n_volumes, volume_nbytes, budgets.chunk_bytes)
    else:
        chunks = tuple(int(c) for c in time_chunks)
        if sum(chunks) != n_volumes or any(c < 0 for c in chunks):
            raise ValueError(f"time chunks {chunks} do not split {n_volumes} volumes")
    step = batch_volumes or product_batch_volumes(
        n_support,
        n_volumes,
        budgets.gemm_bytes,
        budgets.gemm_max_volumes,
        gathered_itemsize,
    )
    batches = tuple(tuple(batch) for batch in batch_chunks(chunks, step))
    sizes = [sum(chunks[i] for i in batch) for batch in batches]
    return ExtractionPlan(
        n_volumes=n_volumes,
        volume_nbytes=volume_nbytes,
        time_chunks=chunks,
        batch_volumes=step,
        batches=batches,
        slab_widths=tuple(slab_width(n, budgets.slab_bytes) for n in sizes),
        sparse_slab_widths=tuple(slab_width(n, 8 * budgets.slab_bytes) for n in sizes),
        items_per_job=items_per_job(n_items, slots),
        runs_whole=n_volumes * volume_nbytes <= budgets.whole_item_bytes,
        budgets=budgets,
    )


def plan_time_chunks(n_volumes: int, volume_nbytes: int, target_nbytes: int) -> tuple[int, ...]:
    """Split ``n_volumes`` whole volumes into chunks of about ``target_nbytes`` each.

    Every chunk holds at least one volume; the chunks are as even as possible and none exceeds
    the budget unless a single volume does.

    Examples
    --------
    >>> plan_time_chunks(10, 30, target_nbytes=100)
    (3, 3, 2, 2)
    """
    if n_volumes < 0 or volume_nbytes < 0 or target_nbytes <= 0:
        raise ValueError(
            f"invalid chunk plan: n_volumes={n_volumes}, volume_nbytes={volume_nbytes}, "
            f"target_nbytes={target_nbytes}"
        )
    if n_volumes == 0:
        return ()
    per_chunk = max(1, target_nbytes // max(volume_nbytes, 1))
    n_chunks = -(-n_volumes // per_chunk)
    base, extra = divmod(n_volumes, n_chunks)
    return tuple(base + 1 if i < extra else base for i in range(n_chunks))


def product_batch_volumes(
    n_support: int, n_volumes: int, target_nbytes: int, max_volumes: int, itemsize: int = 8
) -> int:
    """Volumes per batch of the maps products.

    At most ``target_nbytes`` of gathered support voxels (of ``itemsize`` bytes) and
    ``max_volumes`` volumes: a batch reads the maps once, so larger batches are cheaper per
    volume, but they hold more memory while they wait for their chunks.

    Examples
    --------
    >>> product_batch_volumes(250_000, 600, 64 * 2**20, 64)
    33
    >>> product_batch_volumes(250_000, 600, 64 * 2**20, 64, itemsize=4)
    64
    >>> product_batch_volumes(1_000_000, 600, 64 * 2**20, 64)
    8
    >>> product_batch_volumes(250_000, 10, 64 * 2**20, 64)
    10
    """
    per_batch = max(1, target_nbytes // max(itemsize * n_support, 1))
    return int(max(1, min(per_batch, max_volumes, n_volumes)))


def batch_chunks(chunks: tuple[int, ...], step: int) -> list[list[int]]:
    """Group consecutive chunks (by index) into batches of at least ``step`` volumes, the last
    one excepted; a chunk larger than ``step`` is a batch of its own.

    Examples
    --------
    >>> batch_chunks((7, 7, 7, 7, 7, 7, 5), 14)
    [[0, 1], [2, 3], [4, 5, 6]]
    """
    batches: list[list[int]] = []
    size = step
    for index, chunk in enumerate(chunks):
        if size >= step:
            batches.append([])
            size = 0
        batches[-1].append(index)
        size += chunk
    if len(batches) > 1 and sum(chunks[i] for i in batches[-1]) < step / 2:
        last = batches.pop()
        batches[-1].extend(last)  # no small straggler batch
    return batches


def slab_width(n_volumes: int, slab_bytes: int) -> int:
    """Support voxels of one float64 slab of a product over ``n_volumes`` volumes:
    ``slab_bytes`` of them, never fewer than :data:`MIN_SLAB_WIDTH` voxels.

    Examples
    --------
    >>> slab_width(64, 2**20), slab_width(10_000, 2**20)
    (2048, 256)
    """
    return max(MIN_SLAB_WIDTH, slab_bytes // (8 * max(n_volumes, 1)))


def items_per_job(n_items: int, slots: int) -> int:
    """Small runs per job: enough to amortise a job's scheduling, few enough that every
    worker thread gets several jobs (and a progress bar moves).

    Examples
    --------
    >>> items_per_job(1000, 4), items_per_job(10, 4)
    (16, 1)
    """
    return max(1, min(MAX_ITEMS_PER_JOB, n_items // (4 * max(1, slots))))


@dataclass(frozen=True)
class ConnectivityPlan:
    """The budgets of a study's connectivity (see :func:`plan_connectivity`).

    Attributes
    ----------
    n_runs, n_frames, n_regions : int
        The signals: runs, time points of each (padded), regions.
    runs_per_chunk : int
        Whole runs per task (their signals and matrices together).
    chunk_bytes, keep_bytes : int
        The budgets planned under (``chunk-bytes``, ``connectivity.keep-bytes``).
    """

    n_runs: int
    n_frames: int
    n_regions: int
    runs_per_chunk: int
    chunk_bytes: int
    keep_bytes: int

    @property
    def run_chunks(self) -> tuple[int, ...]:
        """Runs in each task, in order."""
        full, rest = divmod(self.n_runs, self.runs_per_chunk)
        return (self.runs_per_chunk,) * full + ((rest,) if rest else ())

    @property
    def covariances_nbytes(self) -> int:
        """Bytes of every run's covariance (float64)."""
        return 8 * self.n_runs * self.n_regions**2

    @property
    def keep_covariances(self) -> bool:
        """Whether tangent's descent keeps the runs' covariances between its steps (they fit
        ``keep_bytes``) or recomputes them from the signals at every step."""
        return self.covariances_nbytes <= self.keep_bytes

    def __repr__(self) -> str:
        chunks = self.run_chunks
        kept = (
            f"kept between tangent's descent steps (≤ {_bytes(self.keep_bytes)})"
            if self.keep_covariances
            else f"recomputed at each of tangent's descent steps (> {_bytes(self.keep_bytes)})"
        )
        return "\n".join(
            [
                f"ConnectivityPlan({self.n_runs} runs × {self.n_frames} frames × "
                f"{self.n_regions} regions)",
                f"  run chunks       {len(chunks)} × ≤ {self.runs_per_chunk} runs, "
                f"≤ {_bytes(self.chunk_bytes)} each: {_shown(chunks)}",
                f"  covariances      {_bytes(self.covariances_nbytes)}, {kept}",
            ]
        )


def plan_connectivity(
    n_runs: int,
    n_frames: int,
    n_regions: int,
    *,
    chunk_runs: int | None = None,
    chunk_bytes: int | None = None,
    keep_bytes: int | None = None,
) -> ConnectivityPlan:
    """Plan the connectivity of ``n_runs`` runs (``n_frames`` × ``n_regions`` signals each).

    Parameters
    ----------
    n_runs, n_frames, n_regions : int
        The signals' shape (run, time, region); ``n_frames`` counts the padding.
    chunk_runs : int, optional
        Runs per task, instead of :func:`runs_per_chunk`'s.
    chunk_bytes, keep_bytes : int, optional
        The budgets; the ``daskmasker.chunk-bytes`` and ``daskmasker.connectivity.keep-bytes``
        settings by default.

    Returns
    -------
    ConnectivityPlan

    Examples
    --------
    >>> plan_connectivity(1000, 200, 64, chunk_bytes=32 * 2**20, keep_bytes=2**30)
    ConnectivityPlan(1000 runs × 200 frames × 64 regions)
      run chunks       6 × ≤ 199 runs, ≤ 32.0 MiB each: (199, 199, 199, 199, 199, 5)
      covariances      31.2 MiB, kept between tangent's descent steps (≤ 1.0 GiB)
    >>> plan_connectivity(20_000, 200, 400, chunk_bytes=32 * 2**20, keep_bytes=2**30)
    ConnectivityPlan(20000 runs × 200 frames × 400 regions)
      run chunks       2000 × ≤ 10 runs, ≤ 32.0 MiB each: (10, 10, 10, ..., 10, 10)
      covariances      23.8 GiB, recomputed at each of tangent's descent steps (> 1.0 GiB)
    >>> plan_connectivity(10, 200, 64, chunk_runs=4, chunk_bytes=1, keep_bytes=0).run_chunks
    (4, 4, 2)
    """
    chunk_bytes = int(config.get("chunk-bytes")) if chunk_bytes is None else chunk_bytes
    keep_bytes = int(config.get("connectivity.keep-bytes")) if keep_bytes is None else keep_bytes
    if min(n_runs, n_frames, n_regions, keep_bytes) < 0 or chunk_bytes < 1:
        raise ValueError(
            f"invalid connectivity plan: n_runs={n_runs}, n_frames={n_frames}, "
            f"n_regions={n_regions}, chunk_bytes={chunk_bytes}, keep_bytes={keep_bytes}"
        )
    if chunk_runs is not None and chunk_runs < 1:
        raise ValueError(f"chunk_runs must be at least 1, got {chunk_runs}")
    return ConnectivityPlan(
        n_runs=n_runs,
        n_frames=n_frames,
        n_regions=n_regions,
        runs_per_chunk=chunk_runs or runs_per_chunk(n_frames, n_regions, chunk_bytes),
        chunk_bytes=chunk_bytes,
        keep_bytes=keep_bytes,
    )


def runs_per_chunk(n_frames: int, n_regions: int, budget: int) -> int:
    """Whole runs per task: their padded signals and matrices (``n_frames + 2 · n_regions``
    float64 rows of ``n_regions``) in ``budget`` bytes, at least one.

    Examples
    --------
    >>> runs_per_chunk(200, 64, budget=32 * 2**20)
    199
    """
    per_run = 8 * n_regions * (n_frames + 2 * n_regions)
    return max(1, int(budget // max(per_run, 1)))


def _bytes(n: int) -> str:
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} B"


def _shown(sizes: tuple[int, ...] | list[int]) -> str:
    sizes = tuple(sizes)
    if len(sizes) <= 6:
        return str(sizes)
    return f"({', '.join(map(str, sizes[:3]))}, ..., {', '.join(map(str, sizes[-2:]))})"
