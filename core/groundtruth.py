"""The mask an image has now: its correction version chosen by the policy, else its official trimap.

    >>> from core import groundtruth
    >>> mask, version = groundtruth.current(settings, ds, "Abyssinian_1")    # version None = the official trimap
    >>> truth = groundtruth.snapshot(settings, ds, ids)                    # many images: one query for all of them
    >>> truth.versions["Abyssinian_1"], truth.mask("Abyssinian_1").shape   # masks came with that query
    (2, (400, 600))
    >>> groundtruth.snapshot(settings, ds, ids, policy="latest").versions   # also versions still under review

Training, evaluation, rescoring, the views and export all ask this module, so they can never disagree about
which mask is the ground truth. ``corrections=False`` gives the official trimaps only (training without
``--use-corrections``, and the evaluation's ``iou_pet_official`` column). Which correction counts is decided
here once, by the policy (``--corrections`` on train, evaluate and export; :data:`POLICIES`):

- ``accepted`` (the default): the latest accepted version that is not deleted. With review off every save is
  accepted at once, so this is simply the latest version.
- ``latest``: the latest version that is neither deleted nor rejected (submitted ones count).

Editing is not a ground-truth question: the Annotate page starts from the newest version whatever its state
(:func:`core.ledger.latest`), because a save must land on top of it.

A :class:`GroundTruth` snapshot reads the ledger once, when it is made: the rows and their mask PNGs in one query
(export, training, rescoring never open a connection per image). ``mask`` then only decodes (each PNG verified
against its sha256), so a snapshot can be shared by threads.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from core import ledger, store
from core.config import Settings
from core.dataset import Dataset, load_trimap
from core.errors import PetSegError

POLICIES = ("accepted", "latest")
DEFAULT_POLICY = "accepted"
_STATES = {"accepted": ("accepted",), "latest": ("submitted", "accepted")}


@dataclass(frozen=True)
class GroundTruth:
    """The ground truth of a set of images as it was when the snapshot was taken."""

    settings: Settings
    ds: Dataset
    rows: dict[str, ledger.Correction]  # the correction in force, for corrected images only
    versions: dict[str, int | None]  # every requested id: its correction version, None = the official trimap
    pngs: dict[str, bytes] = field(default_factory=dict, repr=False)  # image id -> stored PNG of its correction
    policy: str = DEFAULT_POLICY

    def mask(self, image_id: str) -> np.ndarray | None:
        """The trimap-coded mask at the image's size; None when the image has neither a trimap nor a correction.

        Raises ``ImageUnreadable`` for an official trimap that cannot be used, and ``PetSegError`` for a
        correction whose size does not match the photo (a workspace shared by two datasets).
        """
        row = self.rows.get(image_id)
        if row is None:
            return load_trimap(self.ds, image_id)
        size = _known_size(self.ds, image_id)
        if size is not None and size != (row.height, row.width):
            raise PetSegError(
                f"correction v{row.version} of {image_id} is {row.width}x{row.height} but the image is "
                f"{size[1]}x{size[0]}: this workspace's corrections belong to another dataset; "
                "use a separate --workspace per dataset"
            )
        return ledger.decode_mask(row, self.pngs.get(image_id))


def check_policy(policy: str) -> str:
    if policy not in POLICIES:
        raise PetSegError(f"corrections policy {str(policy)[:40]!r} is not one of {', '.join(POLICIES)} "
                          "(accepted: the latest accepted version; latest: the latest not rejected)")
    return policy


def snapshot(settings: Settings, ds: Dataset, image_ids: Iterable[str], *, corrections: bool = True,
             policy: str = DEFAULT_POLICY) -> GroundTruth:
    """The ground truth of ``image_ids`` (ids the dataset knows) under ``policy``, reading the ledger in one query."""
    states = _STATES[check_policy(policy)]
    ids = [ds.require(image_id) for image_id in image_ids]
    found = ledger.latest_with_masks(settings, ids, states=states) if corrections and store.exists(settings) else {}
    rows = {image_id: row for image_id, (row, _png) in found.items()}
    versions = {image_id: (rows[image_id].version if image_id in rows else None) for image_id in ids}
    return GroundTruth(settings, ds, rows, versions, {image_id: png for image_id, (_row, png) in found.items()},
                       policy)


def current(
    settings: Settings, ds: Dataset, image_id: str, *, corrections: bool = True, policy: str = DEFAULT_POLICY
) -> tuple[np.ndarray | None, int | None]:
    """``(mask, version)`` of one image: its correction under ``policy`` and that version, else
    ``(official trimap, None)``."""
    truth = snapshot(settings, ds, [image_id], corrections=corrections, policy=policy)
    image_id = ds.require(image_id)
    return truth.mask(image_id), truth.versions[image_id]


def _known_size(ds: Dataset, image_id: str) -> tuple[int, int] | None:
    row = ds.table.loc[image_id]
    height, width = int(row["height"]), int(row["width"])
    return (height, width) if height > 0 and width > 0 else None
