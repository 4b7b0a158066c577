"""Views over the per-image tables: filter, sort, neighbours, label-error score, breed and run-vs-run summaries.

    >>> from core.views import Filters, apply_filters, compare_runs, load_view, neighbours, review_queue, sort_table
    >>> view = load_view(settings, "quick-1", "test")       # dataset rows + metrics + corrected + tag + tension
    >>> ids = list(sort_table(apply_filters(view, Filters(species=("cat",)), "iou_pet"), "metric_asc", "iou_pet").index)
    >>> neighbours(ids, ids[1])                             # (previous id, next id)
    >>> review_queue(view, Filters(), "iou_pet", "tension").head(10)     # suspected label errors first
    >>> breed_summary(view[view["evaluated"]], "iou_pet")  # n, mean, median, p10, worst image per breed
    >>> box_stats(scored, "iou_pet", by="breed")            # q1, median, q3, fences per breed; box_outliers the rest
    >>> histogram_counts(scored, "iou_pet", bins=40)        # images per species and bin (what the histogram draws)
    >>> c = compare_runs(settings, "before", "after", "test")
    >>> c.overall.delta, c.corrected.improved             # B − A over all shared images; moves on corrected ones
    >>> other_differences(compare_configs(read_config(dir_a), read_config(dir_b)))  # ["epochs", ...]

Pure pandas over DataFrames (no Streamlit); only :func:`load_view` and :func:`compare_runs` read the workspace.
The dashboard pages and the CLI (``python -m core review``, ``python -m core compare``) call the same functions.

Suspected label errors: lowest ``label_quality`` first (:mod:`core.quality`; out-of-fold after a cross-validation,
in-sample otherwise), when the table has it. Tables without it fall back to the older heuristic
``tension = mean_confidence * (1 - uncertain_fraction) * (1 - iou_pet)``, in [0, 1]: high only when the model is
confident on average, has few uncertain pixels *and* disagrees with the ground truth (on planted errors it
finds far fewer than an out-of-fold label quality: benchmarks/label_errors.py). Images without a score are last; a
prediction with (almost) no pet (``EMPTY_PREDICTION``) has tension 0: it is a model failure. For a weak run
(:func:`weak_run_warning`) either ranking mostly lists model failures, and the pages say so.

Run against run: only images that both runs scored against a ground truth take part; ``delta`` is B minus A.

Headline numbers (:func:`evaluation_headline`, :func:`join_runs`) are against the official trimaps: a correction of
a test image is evaluation-only (training never sees test images), so it must not move the benchmark or read as a
model change. The score against the corrections is a separate, labelled figure.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

import numpy as np
import pandas as pd

from core.config import Settings
from core.errors import PetSegError
from core.review import TAG_LABELS, TAGS

EVALUATED = "evaluated"  # split filter value: the images of the selected evaluation table
SPLIT_CHOICES = (EVALUATED, "all", "trainval", "test", "unlisted")
CORRECTED_CHOICES = ("any", "corrected", "not corrected")
UNTAGGED = "untagged"
TAG_CHOICES = (*TAGS, UNTAGGED)
AGREEMENT = "iou_pet"  # the disagreement half of the tension score
EMPTY_PREDICTION = 0.01  # predicted pet fraction below which a prediction counts as "no pet found" (tension 0)
WEAK_RUN = 0.5  # mean per-image IoU below which the tension ranking is flagged as meaningless
SORTS = {
    "metric_asc": "metric, worst first",
    "metric_desc": "metric, best first",
    "tension": "suspected label errors first",
    "id": "image id",
    "gt_pet_asc": "GT pet fraction, smallest first",
    "gt_pet_desc": "GT pet fraction, largest first",
    "confidence_desc": "confidence, highest first",
    "confidence_asc": "confidence, lowest first",
    "quality_asc": "label quality, most suspect first",
}
_SORT_COLUMN = {
    "gt_pet_asc": ("gt_pet_fraction", True),
    "gt_pet_desc": ("gt_pet_fraction", False),
    "confidence_desc": ("mean_confidence", False),
    "confidence_asc": ("mean_confidence", True),
    "tension": ("tension", False),
    "quality_asc": ("label_quality", True),
}
REVIEW_ORDERS = {"worst": "worst first by the metric", "tension": "suspected label errors (lowest label quality)"}
QUALITY = "label_quality"
MAX_SEARCH = 100
MAX_SELECTION = 2000  # images a selection may name (a URL of 2,000 ids is ~40 kB, still accepted by browsers)
MAX_ID_LENGTH = 200
MAX_QUERY_VALUE = MAX_SELECTION * (MAX_ID_LENGTH + 1)
# Filters field -> URL parameter (short, and clear of the sidebar's run/split/metric and Compare's image).
_QUERY = {"split": "in", "species": "species", "breeds": "breeds", "metric_min": "min", "metric_max": "max",
          "corrected": "corrected", "tags": "tags", "problems_only": "problems", "search": "q", "sort": "sort",
          "ids": "ids"}
QUERY_PARAMS = tuple(_QUERY.values())
# Per-image metrics where higher is better (the deltas of the others would read upside down).
COMPARABLE_METRICS = ("iou_pet", "iou_pet_border_as_pet", "miou_3class", "pixel_accuracy", "dice_pet")
# Metrics are float32 in the table: smaller differences are rounding, not a change.
TIE = 1e-6
_KEEP = ("image_id", "breed", "species", "split")


@dataclass(frozen=True)
class Filters:
    split: str = EVALUATED
    species: tuple[str, ...] = ()
    breeds: tuple[str, ...] = ()
    metric_min: float = 0.0
    metric_max: float = 1.0
    corrected: str = "any"
    tags: tuple[str, ...] = ()
    problems_only: bool = False
    quality_max: float = 1.0  # label quality at most this (below 1: images without a label quality drop out)
    search: str = ""
    sort: str = "metric_asc"
    ids: tuple[str, ...] = ()  # a selection (e.g. points picked on Distributions): only these images; () = all

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> Filters:
        """Tolerant of junk (old session state, hand-edited values): anything invalid falls back to the default."""
        base = cls()
        if not isinstance(data, Mapping):
            return base
        known = {f.name for f in fields(cls)}
        clean: dict[str, Any] = {}
        for name, value in data.items():
            if name in known:
                default = getattr(base, name)
                if isinstance(default, tuple) and isinstance(value, list | tuple):
                    clean[name] = tuple(str(v) for v in value)
                elif isinstance(default, bool):
                    clean[name] = bool(value)
                elif isinstance(default, float) and isinstance(value, int | float) and not math.isnan(value):
                    clean[name] = float(min(max(value, 0.0), 1.0))
                elif isinstance(default, str) and isinstance(value, str):
                    clean[name] = value[:MAX_SEARCH]
        filters = replace(base, **clean)
        if filters.split not in SPLIT_CHOICES:
            filters = replace(filters, split=base.split)
        if filters.corrected not in CORRECTED_CHOICES:
            filters = replace(filters, corrected=base.corrected)
        if filters.sort not in SORTS:
            filters = replace(filters, sort=base.sort)
        if filters.metric_min > filters.metric_max:
            filters = replace(filters, metric_min=base.metric_min, metric_max=base.metric_max)
        ids = tuple(dict.fromkeys(i for i in filters.ids if 0 < len(i) <= MAX_ID_LENGTH))[:MAX_SELECTION]
        return replace(filters, tags=tuple(t for t in filters.tags if t in TAG_CHOICES), ids=ids)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_query(self) -> dict[str, str]:
        """URL query parameters naming this filter (only what differs from the default), for a shareable queue."""
        base, query = Filters(), {}
        for name, param in _QUERY.items():
            value = getattr(self, name)
            if value == getattr(base, name):
                continue
            if isinstance(value, tuple):
                query[param] = ",".join(value)
            elif isinstance(value, bool):
                query[param] = "1"
            elif isinstance(value, float):
                query[param] = f"{value:g}"
            else:
                query[param] = value
        return query

    @classmethod
    def from_query(cls, query: Mapping[str, Any]) -> Filters | None:
        """The filter a URL names (see :meth:`to_query`), None when it names none; junk falls back to defaults."""
        data: dict[str, Any] = {}
        for name, param in _QUERY.items():
            raw = query.get(param)
            if not isinstance(raw, str):
                continue
            raw = raw[:MAX_QUERY_VALUE]
            default = getattr(cls(), name)
            if isinstance(default, tuple):
                data[name] = [v for v in raw.split(",") if v]
            elif isinstance(default, bool):
                data[name] = raw in ("1", "true")
            elif isinstance(default, float):
                try:
                    data[name] = float(raw)
                except ValueError:
                    continue
            else:
                data[name] = raw
        return cls.from_dict(data) if data else None


# --- the per-image view ----------------------------------------------------------------------------------------


def tension_score(table: pd.DataFrame, agreement: str = AGREEMENT) -> pd.Series:
    """Confident disagreement per image (see the module docstring); NaN where an input is missing."""
    needed = ("mean_confidence", "uncertain_fraction", agreement)
    if any(name not in table.columns for name in needed):
        return pd.Series(np.nan, index=table.index, dtype="float64")
    confidence = pd.to_numeric(table["mean_confidence"], errors="coerce")
    certain = 1.0 - pd.to_numeric(table["uncertain_fraction"], errors="coerce")
    disagreement = 1.0 - pd.to_numeric(table[agreement], errors="coerce")
    tension = (confidence * certain * disagreement).clip(0.0, 1.0).astype("float64")
    if "pred_pet_fraction" in table.columns:
        # A model that finds no pet is failing, not disagreeing with the trimap: its certainty says nothing.
        empty = pd.to_numeric(table["pred_pet_fraction"], errors="coerce") < EMPTY_PREDICTION
        tension = tension.where(~empty | tension.isna(), 0.0)
    return tension


def weak_run_warning(view: pd.DataFrame, metric: str = AGREEMENT) -> str | None:
    """Why the label-error ranking cannot be trusted for this evaluation (a sentence), or None when it can.

    A run whose mean per-image ``metric`` is below ``WEAK_RUN`` mostly disagrees with the ground truth because
    it is wrong: its confident disagreements are model failures, not label errors.
    """
    values = pd.to_numeric(view[metric], errors="coerce").dropna() if metric in view else pd.Series(dtype=float)
    if values.empty:
        return None
    mean = float(values.mean())
    if mean >= WEAK_RUN:
        return None
    return (f"This run is too weak for this ranking to mean much: its mean per-image {metric} is {mean:.2f} "
            f"(below {WEAK_RUN:.2f}), so most confident disagreements are the model's mistakes, not wrong "
            "trimaps. Train a stronger run before trusting the order.")


def view_table(
    dataset_table: pd.DataFrame,
    eval_table: pd.DataFrame | None,
    corrections: Mapping[str, int],
    reviews: pd.DataFrame | None,
) -> pd.DataFrame:
    """One row per dataset image: identity columns, the evaluation's metrics, correction and review status.

    Added columns: ``evaluated`` (row in the evaluation table), ``correction_version`` (Int64, NA = official
    trimap), ``corrected``, ``scored_gt_version`` (the GT version the stored metrics were computed against, NA =
    official trimap), ``tag`` (review tag or None), ``tension``.
    """
    view = dataset_table.copy()
    view["evaluated"] = False
    if eval_table is not None and len(eval_table):
        evaluated = eval_table.drop(
            columns=[c for c in ("image_id", "split", "breed", "species", "width", "height") if c in eval_table],
        )
        evaluated = evaluated.rename(columns={"gt_version": "scored_gt_version"})
        # The evaluation's GT pet fraction is the one its metrics used; the index's stays where it has none.
        view = view.drop(columns=[c for c in evaluated.columns if c in view.columns and c != "gt_pet_fraction"])
        view = view.join(evaluated.add_prefix("_ev_"), how="left")
        for column in evaluated.columns:
            source = view.pop(f"_ev_{column}")
            if column == "gt_pet_fraction" and "gt_pet_fraction" in view:
                view[column] = source.where(source.notna(), view[column])
            else:
                view[column] = source
        view["evaluated"] = view.index.isin(eval_table.index)
    if "scored_gt_version" not in view:
        view["scored_gt_version"] = pd.NA
    view["scored_gt_version"] = view["scored_gt_version"].astype("Int64")
    versions = pd.Series({k: int(v) for k, v in corrections.items()}, dtype="Int64")
    view["correction_version"] = versions.reindex(view.index).astype("Int64")
    view["corrected"] = view["correction_version"].notna()
    tags = pd.Series(dtype="object")
    if reviews is not None and len(reviews) and "tag" in reviews:
        tags = reviews["tag"]
    view["tag"] = tags.reindex(view.index).astype("object")
    view["tag"] = view["tag"].where(view["tag"].notna(), None)
    view["tension"] = tension_score(view)
    return view


def load_view(settings: Settings, run: str, split: str) -> pd.DataFrame:
    """:func:`view_table` of the dataset and ``run``'s evaluation of ``split``, read from the workspace.

    Raises :class:`PetSegError` for an unknown run or split, or a run that has not evaluated ``split``.
    """
    from core.dataset import open_dataset

    evaluation = _evaluation(settings, run, split)
    ds = open_dataset(settings.data, settings.workspace)
    corrections, reviews = workspace_status(settings)
    return view_table(ds.table, evaluation, corrections, reviews)


def workspace_status(settings: Settings) -> tuple[dict[str, int], pd.DataFrame]:
    """``(latest correction version per corrected image, review table)`` from the workspace database."""
    from core import store

    if not store.exists(settings):  # nothing corrected or reviewed yet: do not create the database to say so
        return {}, pd.DataFrame(columns=["image_id", "tag", "note", "author", "updated_at"])
    from core.ledger import latest_versions
    from core.review import all_reviews

    return latest_versions(settings), all_reviews(settings)


# --- filter, sort, walk ----------------------------------------------------------------------------------------


def apply_filters(view: pd.DataFrame, filters: Filters, metric: str) -> pd.DataFrame:
    """The rows of ``view`` (from :func:`view_table`) that pass ``filters``; ``metric`` is the ranged column."""
    keep = pd.Series(True, index=view.index)
    if filters.split == EVALUATED:
        if "evaluated" in view and view["evaluated"].any():
            keep &= view["evaluated"].astype(bool)
    elif filters.split != "all":
        keep &= view["split"] == filters.split
    if filters.species:
        keep &= view["species"].isin(filters.species)
    if filters.breeds:
        keep &= view["breed"].isin(filters.breeds)
    if (filters.metric_min > 0.0 or filters.metric_max < 1.0) and metric in view:
        values = pd.to_numeric(view[metric], errors="coerce")
        # A narrowed range means "images scored in this range": unscored images drop out.
        keep &= values.between(filters.metric_min, filters.metric_max) & values.notna()
    if filters.quality_max < 1.0 and QUALITY in view:
        quality = pd.to_numeric(view[QUALITY], errors="coerce")
        keep &= (quality <= filters.quality_max) & quality.notna()
    if filters.corrected == "corrected":
        keep &= view["corrected"].astype(bool)
    elif filters.corrected == "not corrected":
        keep &= ~view["corrected"].astype(bool)
    if filters.tags:
        wanted = [t for t in filters.tags if t != UNTAGGED]
        tag_ok = view["tag"].isin(wanted)
        if UNTAGGED in filters.tags:
            tag_ok |= view["tag"].isna()
        keep &= tag_ok
    if filters.problems_only:
        keep &= view["problem"].fillna("").astype(str) != ""
    text = filters.search.strip().lower()[:MAX_SEARCH]
    if text:
        keep &= view.index.to_series().str.lower().str.contains(text, regex=False)
    if filters.ids:
        keep &= view.index.isin(filters.ids)
    return view[keep.to_numpy()]


def natural_key(text: object) -> tuple:
    """Sort key that reads digit runs as numbers and ignores case: ``Ragdoll_2`` before ``Ragdoll_10``."""
    return tuple((0, int(part), "") if part.isdigit() else (1, 0, part.lower())
                 for part in re.split(r"(\d+)", str(text)) if part)


# "Worst" everywhere (Overview, Distributions, Browse, Review, Model): the metric ascending; ties (e.g. the many
# images at IoU 0) by the border-as-pet IoU ascending (no overlap even counting the border band is worse), then by
# the ground-truth pet fraction descending (missing a large pet is a bigger failure than missing a small one),
# then by image id in natural order. "Best first" reverses the value keys and keeps the natural id order.
WORST_TIEBREAKS = (("iou_pet_border_as_pet", True), ("gt_pet_fraction", False))


def worst_first(view: pd.DataFrame, metric: str, ascending: bool = True) -> pd.DataFrame:
    """``view`` worst ``metric`` first (``ascending`` False: best first), missing values last; see WORST_TIEBREAKS."""
    keys = [(metric, ascending)] + [(c, a if ascending else not a) for c, a in WORST_TIEBREAKS if c != metric]
    return _sorted(view, keys)


def sort_table(view: pd.DataFrame, sort: str, metric: str) -> pd.DataFrame:
    """Stable sort with missing values last and the image id (natural order) as the last key, so the order is
    reproducible; the metric sorts are :func:`worst_first`."""
    if sort == "id" or sort not in SORTS:
        return _sorted(view, [])
    if sort in ("metric_asc", "metric_desc"):
        if metric not in view:
            return _sorted(view, [])
        return worst_first(view, metric, ascending=sort == "metric_asc")
    column, ascending = suspect_order(view) if sort == "tension" else _SORT_COLUMN[sort]
    return _sorted(view, [(column, ascending)] if column in view else [])


def _sorted(view: pd.DataFrame, keys: Sequence[tuple[str, bool]]) -> pd.DataFrame:
    """``view`` by the numeric ``keys`` (column, ascending), each with missing values last, then by natural id."""
    frame = pd.DataFrame(index=view.index)
    columns, ascending = [], []
    for n, (column, up) in enumerate(k for k in keys if k[0] in view):
        values = pd.to_numeric(view[column], errors="coerce")
        frame[f"m{n}"] = values.isna()  # missing last, whatever the direction
        frame[f"v{n}"] = values.fillna(0.0)
        columns += [f"m{n}", f"v{n}"]
        ascending += [True, up]
    rank = pd.Series(range(len(view)), index=view.index)
    by_name = sorted(range(len(view)), key=lambda i: natural_key(view.index[i]))
    rank.iloc[by_name] = range(len(view))
    frame["id"] = rank.to_numpy()
    frame = frame.reset_index(drop=True)
    ordered = frame.sort_values([*columns, "id"], ascending=[*ascending, True], kind="stable").index
    return view.iloc[ordered.to_numpy()]


def suspect_order(view: pd.DataFrame) -> tuple[str, bool]:
    """``(column, ascending)`` of "suspected label errors first": label quality where the table has it, else the
    tension heuristic."""
    if QUALITY in view and pd.to_numeric(view[QUALITY], errors="coerce").notna().any():
        return QUALITY, True
    return "tension", False


def order(view: pd.DataFrame, filters: Filters, metric: str) -> list[str]:
    """Ids in ``filters``' filter and sort."""
    return list(sort_table(apply_filters(view, filters, metric), filters.sort, metric).index)


def neighbours(ids: Sequence[str], image_id: str) -> tuple[str | None, str | None]:
    """``(previous, next)`` of ``image_id`` in ``ids``; an image outside the list has the first one as next."""
    try:
        at = list(ids).index(image_id)
    except ValueError:
        return None, (ids[0] if len(ids) else None)
    return (ids[at - 1] if at > 0 else None), (ids[at + 1] if at + 1 < len(ids) else None)


def review_queue(view: pd.DataFrame, filters: Filters, metric: str, ordering: str = "worst") -> pd.DataFrame:
    """The images of ``filters`` to review: worst ``metric`` first, or (``"tension"``) suspected label errors first
    (:func:`suspect_order`).

    Images without a value for the ranking (not evaluated, no ground truth) are not in the queue; the filter's
    own sort is ignored.
    """
    if ordering not in REVIEW_ORDERS:
        raise PetSegError(f"unknown review order {ordering!r}: use one of {', '.join(REVIEW_ORDERS)}")
    candidates = apply_filters(view, filters, metric)
    ranking = suspect_order(candidates)[0] if ordering == "tension" else metric
    if ranking not in candidates:
        return candidates.iloc[0:0]
    candidates = candidates[pd.to_numeric(candidates[ranking], errors="coerce").notna()]
    return sort_table(candidates, "tension" if ordering == "tension" else "metric_asc", metric)


def queue_position(ids: Sequence[str], image_id: str | None, index: int = 0) -> int:
    """Where a walk through ``ids`` continues: at ``image_id`` while it is in the queue (the queue may have grown
    or shrunk around it), else at ``index`` (the image left the queue, e.g. tagged with "hide reviewed": the
    same place now holds the next one), clipped to the queue."""
    if not ids:
        return 0
    if image_id in ids:
        return list(ids).index(image_id)
    return min(max(int(index), 0), len(ids) - 1)


def tag_label(tag: object) -> str:
    return TAG_LABELS.get(tag, "untagged") if isinstance(tag, str) else "untagged"


# --- summaries of one evaluation ----------------------------------------------------------------------------


def breed_summary(view: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Per breed: n, mean, median, 10th percentile and worst image (:func:`worst_first`) of ``metric``; breeds in
    :func:`group_order` (worst mean first), the order Distributions draws its boxes in."""
    scored = view[pd.to_numeric(view[metric], errors="coerce").notna()] if metric in view else view.iloc[0:0]
    rows = []
    for breed, group in scored.groupby("breed", sort=True):
        values = pd.to_numeric(group[metric], errors="coerce")
        worst = worst_first(group, metric).index[0]
        rows.append({
            "breed": breed,
            "species": group["species"].iloc[0],
            "n": int(len(values)),
            "mean": float(values.mean()),
            "median": float(values.median()),
            "p10": float(values.quantile(0.10)),
            "worst_image": worst,
            "worst": float(values.loc[worst]),
        })
    columns = ["breed", "species", "n", "mean", "median", "p10", "worst_image", "worst"]
    frame = pd.DataFrame(rows, columns=columns)
    ranks = {name: n for n, name in enumerate(group_order(scored, metric, "breed"))}
    return frame.sort_values("breed", key=lambda names: names.map(ranks), kind="stable").reset_index(drop=True)


def group_order(view: pd.DataFrame, metric: str, by: str = "breed") -> list[str]:
    """The groups of ``by`` worst first: lowest mean ``metric``, then lowest median, then name in natural order.

    The one "worst breed" ordering: Overview's table and Distributions' boxes both use it.
    """
    values = _numeric(view, metric)
    if not len(values):
        return []
    groups = values.groupby(view.loc[values.index, by], sort=True)
    stats = pd.DataFrame({"mean": groups.mean(), "median": groups.median()})
    return sorted(stats.index, key=lambda g: (stats.at[g, "mean"], stats.at[g, "median"], natural_key(g)))


def histogram_counts(view: pd.DataFrame, metric: str, bins: int = 40) -> pd.DataFrame:
    """Images per species in ``bins`` equal-width bins of ``metric`` over its whole range (the same edges for all).

    One row per species and bin: species, left, right, count (``numpy.histogram``: the last bin is closed).
    """
    values = _numeric(view, metric)
    if not len(values):
        return pd.DataFrame(columns=["species", "left", "right", "count"])
    edges = np.histogram_bin_edges(values.to_numpy(float), bins=bins)
    parts = []
    for species, group in values.groupby(view.loc[values.index, "species"], sort=True):
        counts, _ = np.histogram(group.to_numpy(float), bins=edges)
        parts.append(pd.DataFrame({"species": species, "left": edges[:-1], "right": edges[1:], "count": counts}))
    return pd.concat(parts, ignore_index=True)


def box_stats(view: pd.DataFrame, metric: str, by: str = "breed") -> pd.DataFrame:
    """Box-plot numbers of ``metric`` per ``by`` group, in :func:`group_order` (worst mean first).

    Indexed by group: species, n, q1, median, q3 (linear interpolation, as numpy and pandas), and the fences
    as Plotly draws them: the furthest values within 1.5 IQR of the box. Values beyond are :func:`box_outliers`.
    """
    values = _numeric(view, metric)
    columns = ["species", "n", "q1", "median", "q3", "lowerfence", "upperfence"]
    if not len(values):
        return pd.DataFrame(columns=columns, index=pd.Index([], name=by))
    groups = values.groupby(view.loc[values.index, by], sort=True)
    quartiles = groups.quantile([0.25, 0.5, 0.75]).unstack()
    stats = pd.DataFrame({"q1": quartiles[0.25], "median": quartiles[0.5], "q3": quartiles[0.75]})
    stats.insert(0, "n", groups.size())
    stats.insert(0, "species", view.loc[values.index].groupby(by, sort=True)["species"].first())
    low, high = _whiskers(values, view.loc[values.index, by], stats)
    inside = values[(values >= low) & (values <= high)]
    inside_groups = inside.groupby(view.loc[inside.index, by], sort=True)
    stats["lowerfence"], stats["upperfence"] = inside_groups.min(), inside_groups.max()
    stats.index.name = by
    return stats.loc[group_order(view, metric, by), columns]


def box_outliers(view: pd.DataFrame, metric: str, stats: pd.DataFrame, by: str = "breed") -> pd.DataFrame:
    """The images beyond the fences of :func:`box_stats`, indexed by image id: group, species, value."""
    values = _numeric(view, metric)
    groups = view.loc[values.index, by]
    low, high = _whiskers(values, groups, stats)
    out = values[(values < low) | (values > high)]
    return pd.DataFrame({"group": groups.loc[out.index], "species": view.loc[out.index, "species"], "value": out},
                        index=out.index)


def densities(view: pd.DataFrame, metric: str, by: str = "breed", points: int = 64) -> pd.DataFrame:
    """Gaussian kernel density of ``metric`` per group on ``points`` values spanning the group's range.

    Rows: group, value, density. Bandwidth by Silverman's rule (as Plotly's violins), so a violin drawn from
    these few numbers looks like one drawn from every image.
    """
    values = _numeric(view, metric)
    parts = []
    for group, v in values.groupby(view.loc[values.index, by], sort=True):
        x = v.to_numpy(float)
        std = float(x.std(ddof=1)) if len(x) > 1 else 0.0
        sigma = min(std, float(np.quantile(x, 0.75) - np.quantile(x, 0.25)) / 1.349) or std or 1e-3
        bandwidth = 1.059 * sigma * len(x) ** -0.2
        grid = np.linspace(x.min(), x.max(), points) if x.max() > x.min() else np.array([x.min()])
        kernel = np.exp(-0.5 * ((grid[:, None] - x[None, :]) / bandwidth) ** 2).sum(axis=1)
        parts.append(pd.DataFrame({"group": group, "value": grid,
                                   "density": kernel / (len(x) * bandwidth * math.sqrt(2 * math.pi))}))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=["group", "value", "density"])


def thin(view: pd.DataFrame, x: str, y: str, cells: tuple[int, int] = (120, 80)) -> pd.DataFrame:
    """One row per species and cell of a ``cells`` grid over the (x, y) range: what a scatter needs to look
    the same (a cell is about a marker wide) with fewer points. Rows missing x or y are left out.

    Box and lasso selections are not limited to these rows: :func:`inside` finds every image in a region.
    """
    frame = view[pd.to_numeric(view[x], errors="coerce").notna() & pd.to_numeric(view[y], errors="coerce").notna()]
    if not len(frame):
        return frame
    keys = [frame["species"].astype(str)]
    for column, n in ((x, cells[0]), (y, cells[1])):
        v = pd.to_numeric(frame[column], errors="coerce").to_numpy(float)
        span = v.max() - v.min()
        keys.append(pd.Series(np.floor((v - v.min()) / span * n) if span > 0 else np.zeros(len(v)), index=frame.index))
    return frame[~pd.concat(keys, axis=1).duplicated()]


def inside(view: pd.DataFrame, x: str, y: str,
           polygons: Sequence[tuple[Sequence[float], Sequence[float]]]) -> list[str]:
    """Ids of the rows whose (x, y) lies inside any of ``polygons`` (vertex xs, vertex ys; even-odd rule)."""
    frame = view[[x, y]].apply(pd.to_numeric, errors="coerce").dropna()
    px, py = frame[x].to_numpy(float), frame[y].to_numpy(float)
    hit = np.zeros(len(frame), dtype=bool)
    for xs, ys in polygons:
        vx, vy = np.asarray(xs, dtype=float), np.asarray(ys, dtype=float)
        if len(vx) < 3 or len(vx) != len(vy) or not (np.isfinite(vx).all() and np.isfinite(vy).all()):
            continue
        odd = np.zeros(len(frame), dtype=bool)
        for x0, y0, x1, y1 in zip(vx, vy, np.roll(vx, -1), np.roll(vy, -1), strict=True):
            crosses = (y0 > py) != (y1 > py)
            with np.errstate(divide="ignore", invalid="ignore"):
                at = x0 + (py - y0) * (x1 - x0) / (y1 - y0)
            odd ^= crosses & (px < at)
        hit |= odd
    return list(frame.index[hit])


def _numeric(view: pd.DataFrame, metric: str) -> pd.Series:
    values = pd.to_numeric(view[metric], errors="coerce") if metric in view else pd.Series(dtype=float)
    return values.dropna()


def _whiskers(values: pd.Series, groups: pd.Series, stats: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    """Per value, the lowest and highest value its group keeps inside the box's 1.5 IQR reach."""
    iqr = stats["q3"] - stats["q1"]
    low = (stats["q1"] - 1.5 * iqr).reindex(groups.to_numpy())
    high = (stats["q3"] + 1.5 * iqr).reindex(groups.to_numpy())
    return pd.Series(low.to_numpy(), index=values.index), pd.Series(high.to_numpy(), index=values.index)


def evaluation_headline(table: pd.DataFrame) -> dict[str, Any]:
    """Headline numbers of an evaluation table, against the official trimaps (the benchmark's ground truth).

    ``per_image_iou`` (mean per-image pet IoU), ``dataset_iou`` (all pixels) and ``images`` score every image
    against its official trimap even where a correction exists: correcting test masks must not move the benchmark.
    The score with corrections is a separate figure: ``per_image_iou_corrected`` over the images with ground truth,
    ``corrected_images`` of them scored against a correction. ``per_image_iou_border_as_pet`` and
    ``pixel_accuracy`` are only stored against the ground truth in use (equal to the official unless
    ``corrected_images``). ``dataset_iou`` is NaN for a table written before the official counts were stored.
    """
    scored = table[table["has_gt"].astype(bool)] if "has_gt" in table else table
    corrected = (pd.to_numeric(scored["gt_version"], errors="coerce").notna() if "gt_version" in scored
                 else pd.Series(False, index=scored.index))
    official_iou = (pd.to_numeric(scored["iou_pet_official"], errors="coerce") if "iou_pet_official" in scored
                    else pd.to_numeric(scored["iou_pet"], errors="coerce").where(~corrected))
    official = official_iou.dropna()
    numbers: dict[str, Any] = {
        "per_image_iou": math.nan, "dataset_iou": math.nan, "per_image_iou_border_as_pet": math.nan,
        "pixel_accuracy": math.nan, "images": int(len(official)), "per_image_iou_corrected": math.nan,
        "corrected_images": int(corrected.sum()),
    }
    if not len(scored):
        return numbers
    from core.metrics import dataset_iou  # imports torch: only callers of the headline pay for it

    counts = scored[["pet_tp", "pet_fp", "pet_fn", "pet_tn"]].astype("Float64")
    for name in counts.columns:
        replacement = scored[f"{name}_official"] if f"{name}_official" in scored else pd.Series(pd.NA, scored.index)
        counts.loc[corrected, name] = pd.to_numeric(replacement[corrected], errors="coerce").astype("Float64")
    counts = counts[official_iou.notna().to_numpy()]
    pixels = (scored["width"] * scored["height"]).astype("float64")
    numbers.update({
        "per_image_iou": float(official.mean()) if len(official) else math.nan,
        "dataset_iou": math.nan if counts.isna().any().any() or not len(counts) else float(dataset_iou(counts)),
        "per_image_iou_border_as_pet": float(scored["iou_pet_border_as_pet"].mean()),
        # Over all pixels of the split, as the original seed notebook reported it (not a mean of per-image values);
        # NaN for a binary run, whose 3-class accuracy is not applicable.
        "pixel_accuracy": float((scored["pixel_accuracy"] * pixels).sum(min_count=1) / pixels.sum()),
        "per_image_iou_corrected": float(pd.to_numeric(scored["iou_pet"], errors="coerce").mean()),
    })
    return numbers


# --- run against run ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Headline:
    """Mean per-image metric of runs A and B over the images both scored, and how many moved."""

    images: int
    mean_a: float | None
    mean_b: float | None
    delta: float | None  # mean_b - mean_a
    improved: int
    worsened: int
    unchanged: int


def common_splits(splits_a: Iterable[str], splits_b: Iterable[str]) -> list[str]:
    """Splits evaluated by both runs, in the order of ``splits_a``."""
    other = set(splits_b)
    return [s for s in splits_a if s in other]


def join_runs(a: pd.DataFrame, b: pd.DataFrame, metric: str = "iou_pet", official: bool = True) -> pd.DataFrame:
    """One row per image scored by both runs: identity columns, ``a``, ``b``, ``delta`` (b - a), and the
    ground-truth version each run was scored against (``gt_version_a``/``gt_version_b``, NaN = official trimap).

    ``official``: ``iou_pet`` against the official trimaps (the benchmark; a correction of a test image is
    evaluation-only and must not read as a model change); False scores against the ground truth in use. The
    other metrics are stored only against the ground truth in use.
    """
    if metric not in COMPARABLE_METRICS:
        raise ValueError(f"metric {metric!r} cannot be compared; use one of {', '.join(COMPARABLE_METRICS)}")
    left, right = _scored(a, metric, official), _scored(b, metric, official)
    keep = [c for c in _KEEP if c in left.columns]
    joined = left[keep].join(
        pd.DataFrame({"a": left["_value"], "gt_version_a": _versions(left)}), how="inner"
    ).join(pd.DataFrame({"b": right["_value"], "gt_version_b": _versions(right)}), how="inner")
    joined["a"] = joined["a"].astype("float64")
    joined["b"] = joined["b"].astype("float64")
    joined["delta"] = joined["b"] - joined["a"]
    joined.index.name = None
    return joined.sort_index()


def _scored(table: pd.DataFrame, metric: str, official: bool) -> pd.DataFrame:
    table = table if "image_id" not in table.columns else table.set_index("image_id", drop=False)
    if "has_gt" in table.columns:
        table = table[table["has_gt"].astype(bool)]
    values = pd.to_numeric(table[metric], errors="coerce")
    # A table without the official column (written before it existed) has only the score in use.
    if official and metric == "iou_pet" and "iou_pet_official" in table.columns:
        values = pd.to_numeric(table["iou_pet_official"], errors="coerce")
    table = table.assign(_value=values)
    return table[table["_value"].notna()]


def _versions(table: pd.DataFrame) -> pd.Series:
    if "gt_version" in table.columns:
        return pd.to_numeric(table["gt_version"], errors="coerce")
    return pd.Series(math.nan, index=table.index)


def headline(joined: pd.DataFrame) -> Headline:
    """Mean per-image metric of each run over the shared images, the difference, and how many moved."""
    if joined.empty:
        return Headline(0, None, None, None, 0, 0, 0)
    mean_a, mean_b = float(joined["a"].mean()), float(joined["b"].mean())
    improved = int((joined["delta"] > TIE).sum())
    worsened = int((joined["delta"] < -TIE).sum())
    return Headline(len(joined), mean_a, mean_b, mean_b - mean_a, improved, worsened,
                    len(joined) - improved - worsened)


def mismatched_ground_truth(joined: pd.DataFrame) -> int:
    """Images the two runs were scored against different ground truths for (a correction landed in between)."""
    a, b = joined["gt_version_a"], joined["gt_version_b"]
    return int(((a != b) & ~(a.isna() & b.isna())).sum())


def top_changes(joined: pd.DataFrame, n: int = 10) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The ``n`` most improved (largest positive delta) and ``n`` most worsened images, ties by id."""
    ordered = joined.assign(_id=joined.index).sort_values(["delta", "_id"], ascending=[False, True])
    improved = ordered[ordered["delta"] > TIE].head(n)
    worsened = ordered[ordered["delta"] < -TIE].sort_values(["delta", "_id"]).head(n)
    return improved.drop(columns="_id"), worsened.drop(columns="_id")


def restrict(joined: pd.DataFrame, image_ids: Iterable[str]) -> pd.DataFrame:
    """The rows of ``image_ids`` (e.g. the corrected images), in the joined order."""
    wanted = set(image_ids)
    return joined[joined.index.isin(wanted)]


@dataclass(frozen=True)
class RunComparison:
    """What the Runs page shows for two runs on one split: all shared images, and the corrected ones."""

    run_a: str
    run_b: str
    split: str
    metric: str
    joined: pd.DataFrame  # from join_runs, against the official trimaps
    corrected_ids: tuple[str, ...]  # every corrected image of the workspace (not only the joined ones)
    joined_in_use: pd.DataFrame | None = None  # from join_runs(official=False): against the corrections

    @property
    def corrected_in_use(self) -> Headline:
        """The corrected images scored against their corrections (a separate figure, never the headline)."""
        rows = self.joined if self.joined_in_use is None else self.joined_in_use
        return headline(restrict(rows, self.corrected_ids))

    @property
    def overall(self) -> Headline:
        return headline(self.joined)

    @property
    def corrected_rows(self) -> pd.DataFrame:
        return restrict(self.joined, self.corrected_ids)

    @property
    def corrected(self) -> Headline:
        return headline(self.corrected_rows)

    @property
    def mismatched(self) -> int:
        return mismatched_ground_truth(self.joined)

    def to_dict(self, top: int = 10) -> dict[str, Any]:
        """JSON-ready: both headlines, the mismatch count and the ``top`` most improved / worsened images."""
        improved, worsened = top_changes(self.joined, top)

        def rows(frame: pd.DataFrame) -> list[dict[str, Any]]:
            return [{"image_id": i, "a": float(r.a), "b": float(r.b), "delta": float(r.delta)}
                    for i, r in frame[["a", "b", "delta"]].iterrows()]

        return {
            "run_a": self.run_a, "run_b": self.run_b, "split": self.split, "metric": self.metric,
            "all": asdict(self.overall), "corrected": asdict(self.corrected),
            "corrected_against_corrections": asdict(self.corrected_in_use),
            "mismatched_ground_truth": self.mismatched,
            "most_improved": rows(improved), "most_worsened": rows(worsened),
        }


def compare(a: pd.DataFrame, b: pd.DataFrame, run_a: str, run_b: str, split: str, metric: str,
            corrected_ids: Iterable[str]) -> RunComparison:
    """:class:`RunComparison` of two evaluation tables (``delta`` = B − A), against the official trimaps."""
    return RunComparison(run_a, run_b, split, metric, join_runs(a, b, metric), tuple(sorted(set(corrected_ids))),
                         join_runs(a, b, metric, official=False))


def compare_runs(settings: Settings, run_a: str, run_b: str, split: str = "test",
                 metric: str = "iou_pet") -> RunComparison:
    """Read both runs' evaluation of ``split`` and the workspace's corrections, and compare them.

    Raises :class:`PetSegError` when a run has no evaluation of ``split`` or the metric cannot be compared.
    """
    if metric not in COMPARABLE_METRICS:
        raise PetSegError(f"metric {metric!r} cannot be compared; use one of {', '.join(COMPARABLE_METRICS)}")
    if run_a == run_b:
        raise PetSegError(f"both runs are {run_a!r}: compare two different runs")
    a, b = _evaluation(settings, run_a, split), _evaluation(settings, run_b, split)
    corrected, _ = workspace_status(settings)
    return compare(a, b, run_a, run_b, split, metric, corrected)


def _evaluation(settings: Settings, run: str, split: str) -> pd.DataFrame:
    from core.runs import load_eval

    if not settings.run_dir(run).is_dir():
        raise PetSegError(f"run {run!r} does not exist in {settings.runs_dir}")
    table = load_eval(settings, run, split)
    if table is None:
        raise PetSegError(f"run {run!r} has no evaluation of {split!r}: "
                          f"run `python -m core evaluate --run {run} --split {split}` first")
    return table


# --- what differs between two runs' configs ----------------------------------------------------------------------

CORRECTIONS_SETTING = "corrections used"


def config_rows(config: Mapping[str, Any]) -> dict[str, Any]:
    """The settings of a run's config.json that decide its numbers, as displayable values (None = not recorded)."""
    train = config.get("train") or {}
    model = config.get("model") or {}
    data = config.get("dataset") or {}
    pretrained = train.get("pretrained")
    if not isinstance(pretrained, bool) and model:
        pretrained = bool(model.get("encoder_weights"))
    val_ids = data.get("val_ids")
    corrections = config.get("corrections")
    return {
        "epochs": train.get("epochs"),
        "input size (px)": model.get("image_size") or train.get("image_size"),
        "encoder": model.get("encoder") or train.get("encoder"),
        "encoder weights": (None if pretrained is None else
                            f"{train.get('encoder_weights') or 'none'} requested, "
                            f"{'pretrained' if pretrained else 'random init'}"),
        "batch size": train.get("batch_size"),
        "learning rate": train.get("lr"),
        "seed": train.get("seed"),
        "max images": train.get("max_images"),
        "dataset": data.get("fingerprint"),
        "validation images": (None if val_ids is None else
                              f"{len(val_ids)} ({_digest(sorted(map(str, val_ids)))})"),
        CORRECTIONS_SETTING: (None if corrections is None else "none" if not corrections else
                              f"{len(corrections)} ({_digest(sorted(f'{k}:{v}' for k, v in corrections.items()))})"),
    }


def compare_configs(config_a: Mapping[str, Any], config_b: Mapping[str, Any]) -> pd.DataFrame:
    """Two runs' settings side by side: one row per setting with A, B and ``same`` (unrecorded counts as same)."""
    a, b = config_rows(config_a), config_rows(config_b)
    rows = [{"setting": name, "A": _shown(a[name]), "B": _shown(b[name]),
             "same": a[name] is None or b[name] is None or a[name] == b[name]} for name in a]
    return pd.DataFrame(rows, columns=["setting", "A", "B", "same"])


def other_differences(configs: pd.DataFrame) -> list[str]:
    """The settings besides the corrections in which two runs differ (from :func:`compare_configs`): when any,
    B − A is not the effect of the corrections alone."""
    return [s for s, same in zip(configs["setting"], configs["same"], strict=True)
            if not same and s != CORRECTIONS_SETTING]


def _digest(items: Sequence[str]) -> str:
    import hashlib

    return "ids " + hashlib.sha256("\n".join(items).encode()).hexdigest()[:8]


def _shown(value: object) -> str:
    return "not recorded" if value is None else str(value)
