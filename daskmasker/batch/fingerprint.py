"""What a run's numbers depend on, recorded so a rerun never keeps stale results.

A run group's fingerprint holds the masker parameters that shape the numbers, the sha256 of the
contents of every input (image, maps, mask, confounds; the sample mask's volumes), the region
names and the versions of the packages that compute them.  :func:`differences` compares two of
them and says what changed, in words a user can act on.

Contents, not paths, are compared (:mod:`daskmasker.io.checksum` hashes every kind of input;
a recorded digest whose file is unchanged is reused without reading the bytes again).
"""

from __future__ import annotations

import ast
import functools
import hashlib
import json
from typing import Any

import numpy as np

from daskmasker.batch import provenance
from daskmasker.io.checksum import array_sha

NOT_NUMBERS = ("verbose", "memory", "memory_level", "reports", "cmap")
"""Masker parameters that change no number, left out of the fingerprint."""
INPUT_PARAMS = ("maps_img", "mask_img", "region_names")
"""Masker parameters fingerprinted by content (maps, mask) or resolved value (names)."""
VERSIONED = ("daskmasker", "numpy", "scipy", "dask", "nibabel")
"""Packages whose versions shape the numbers: a change is a difference."""
ROLES = ("image", "maps", "mask", "confounds")
OPTIONAL_ROLES = ("brain_mask",)


def canonical(value: Any) -> Any:
    """A parameter as compared: dicts (``clean_args``, stored as their repr) with sorted keys,
    so ``{'a': 1, 'b': 2}`` and ``{'b': 2, 'a': 1}`` are the same parameter.

    Examples
    --------
    >>> canonical("{'filter': 'cosine', 'extrapolate': False}")
    "{'extrapolate': False, 'filter': 'cosine'}"
    """
    return _canonical_text(value) if isinstance(value, str) else value


@functools.lru_cache(maxsize=256)
def _canonical_text(value: str) -> str:
    """:func:`canonical` of a text, parsed once per process (a resume compares thousands)."""
    if value.startswith("{"):
        try:
            parsed = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            return value
        if isinstance(parsed, dict):
            return repr(dict(sorted(parsed.items())))
    return value


def fingerprint(
    params: dict,
    inputs: dict[str, dict | None],
    sample_mask: np.ndarray | None,
    region_names: list[str],
    denoise: dict | None = None,
) -> dict:
    """A run's fingerprint (JSON-friendly).

    Parameters
    ----------
    params : dict
        The masker's parameters as output attrs (:func:`~daskmasker.masker.transform.json_params`).
    inputs : dict
        Digests (:func:`digest`) of ``image``, ``maps``, ``mask`` and ``confounds``.
    sample_mask : ndarray of int, optional
        The volumes kept, in order.
    region_names : list of str
        The names of the extracted regions.
    denoise : dict, optional
        How the confounds and sample mask were chosen (a denoising strategy and its
        parameters); ``inputs`` may also hold a ``brain_mask`` digest.  Both are recorded only
        when given, so fingerprints without them are unchanged.

    Returns
    -------
    dict
    """
    shared = shared_fields(params, inputs.get("maps"), inputs.get("mask"), region_names)
    return run_fingerprint(shared, inputs, sample_mask, denoise)


def shared_fields(
    params: dict, maps: dict | None, mask: dict | None, region_names: list[str]
) -> dict:
    """The fields of a fingerprint every run of a batch shares: parameters, maps and mask
    digests, region names, versions (computed once per batch, not once per run)."""
    versions = provenance.versions()
    return {
        "parameters": {
            k: canonical(v) for k, v in params.items() if k not in NOT_NUMBERS + INPUT_PARAMS
        },
        "maps": maps,
        "mask": mask,
        "region_names": list(region_names),
        "versions": {name: versions[name] for name in VERSIONED},
    }


def run_fingerprint(
    shared: dict,
    inputs: dict[str, dict | None],
    sample_mask: np.ndarray | None,
    denoise: dict | None = None,
) -> dict:
    """A run's fingerprint from the batch's :func:`shared_fields` and the run's own inputs
    (``image``, ``confounds``, optionally ``brain_mask``), sample mask and denoising record:
    the same dict as :func:`fingerprint`, whose ``shared`` values it holds (not copies)."""
    extra = {role: inputs[role] for role in OPTIONAL_ROLES if inputs.get(role) is not None}
    if denoise is not None:
        extra["denoise"] = denoise
    return {
        **extra,
        **shared,
        "image": inputs.get("image"),
        "confounds": inputs.get("confounds"),
        "sample_mask": sample_mask_sha(sample_mask),
    }


def sample_mask_sha(sample_mask: Any) -> str | None:
    """The fingerprint's ``sample_mask``: the sha256 of the volumes kept (None: all)."""
    return None if sample_mask is None else array_sha(np.asarray(sample_mask))


_encode = json.JSONEncoder(sort_keys=True, default=str).encode
"""``json.dumps(value, sort_keys=True, default=str)``, without building an encoder per call."""


def fingerprint_sha(fp: dict) -> str:
    """sha256 of a fingerprint (its canonical JSON): what the store's root index records of each
    complete run, so a resume compares runs without opening their groups."""
    return hashlib.sha256(_encode(fp).encode()).hexdigest()


SHARED = ("parameters", "maps", "mask", "region_names", "versions")
"""The fingerprint fields every run of a batch shares (:func:`shared_fields`)."""
OWN = ("denoise", "sample_mask")
"""A run's own fingerprint fields besides its inputs' digests."""


def shared_sha(fields: dict) -> str:
    """sha256 of the :data:`SHARED` fields of a fingerprint (or of :func:`shared_fields`): one
    value for all the runs of a batch, so a resume compares them once, not once per run.

    Examples
    --------
    >>> fp = fingerprint({"detrend": "False"}, {}, None, ["a"])
    >>> shared_sha(fp) == shared_sha(shared_fields({"detrend": "False"}, None, None, ["a"]))
    True
    """
    return fingerprint_sha({key: fields.get(key) for key in SHARED})


def own_sha(fields: dict) -> str:
    """sha256 of a fingerprint's :data:`OWN` fields (the sample mask's sha256, the denoising
    record): with :func:`shared_sha` and the inputs' digests, all a fingerprint holds."""
    return fingerprint_sha({key: fields.get(key) for key in OWN})


def _short(digest_: dict | None) -> str:
    if digest_ is None:
        return "none"
    return f"{digest_['source']} (sha256 {digest_['sha256'][:12]})"


def differences(old: dict | None, new: dict) -> list[str]:
    """What differs between a recorded fingerprint and a new one, one phrase per difference.

    Examples
    --------
    >>> old = {"parameters": {"detrend": False}}
    >>> differences(old, {"parameters": {"detrend": True}})
    ["parameter 'detrend' was False, now True"]
    """
    if not old:
        return ["it was written without a fingerprint (by an older daskmasker)"]
    out = []
    old_params, new_params = old.get("parameters", {}), new.get("parameters", {})
    for key in sorted(set(old_params) | set(new_params)):
        # a parameter added since (absent from the old fingerprint) at its default is no change
        if {old_params.get(key, "None"), new_params.get(key, "None")} == {"None"}:
            continue
        if old_params.get(key, "<absent>") != new_params.get(key, "<absent>"):
            was, now = old_params.get(key, "<absent>"), new_params.get(key, "<absent>")
            out.append(f"parameter '{key}' was {was}, now {now}")
    old_denoise, new_denoise = old.get("denoise") or {}, new.get("denoise") or {}
    for key in sorted(set(old_denoise) | set(new_denoise)):
        if old_denoise.get(key, "<absent>") != new_denoise.get(key, "<absent>"):
            was, now = old_denoise.get(key, "<absent>"), new_denoise.get(key, "<absent>")
            out.append(f"denoising '{key}' was {was}, now {now}")
    for role in ROLES + OPTIONAL_ROLES:
        was, now = old.get(role), new.get(role)
        if (was is None) != (now is None):
            out.append(f"{role} was {_short(was)}, now {_short(now)}")
        elif was is not None and now is not None and was["sha256"] != now["sha256"]:
            out.append(f"{role} content changed: was {_short(was)}, now {_short(now)}")
    if old.get("sample_mask") != new.get("sample_mask"):
        out.append("sample_mask changed (other volumes kept)")
    if old.get("region_names") != new.get("region_names"):
        out.append(f"region names were {old.get('region_names')}, now {new.get('region_names')}")
    old_versions, new_versions = old.get("versions", {}), new.get("versions", {})
    for name in VERSIONED:
        if old_versions.get(name) != new_versions.get(name):
            was, now = old_versions.get(name), new_versions.get(name)
            out.append(f"package '{name}' was {was}, now {now}")
    return out
