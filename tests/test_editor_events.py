"""The editor's events come from the browser: whatever they hold, parsing gives a mask or a clear PetSegError.

The regression payloads are the ones that killed the server (issue 12 item 1): run lengths sent as strings whose
int64 sum wraps to the image size made ``np.repeat`` write past its buffer (segfault), and a count of 2**70 raised
an uncaught OverflowError. The fuzz test throws wrapped, negative, huge, non-integer, wrong-type and
wrong-shape payloads at the parser.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.errors import PetSegError
from core.masks import TRIMAP_VALUES
from dashboard.editor import ACTIONS, EditorEvent, parse_event, rle_decode, rle_encode
from tests.conftest import PROJECT_ROOT

SHAPE = (3, 4)
IMAGE = "Abyssinian_1"
INT64_MAX = 2**63 - 1
# Two counts of 2**63-1 plus 6 sum to 2**64 + 4: as int64 that wraps to 4 = 2*2, the size of the image.
WRAPPING_RUNS = [1, str(INT64_MAX), 1, str(INT64_MAX), 1, "6"]


def _valid_mask(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).choice(np.array(sorted(TRIMAP_VALUES), np.uint8), size=SHAPE)


def test_the_wrapping_payload_is_refused_without_killing_the_process():
    # In a child process: before the fix this segfaulted, which must fail this test rather than end pytest.
    script = textwrap.dedent(f"""
        from core.errors import PetSegError
        from dashboard.editor import rle_decode
        for runs in ({WRAPPING_RUNS!r}, [1, {INT64_MAX}, 1, {INT64_MAX}, 1, 6], [1, 2**70]):
            try:
                rle_decode(runs, (2, 2), frozenset({{1, 2, 3}}))
            except PetSegError as exc:
                print("refused:", exc)
    """)
    done = subprocess.run([sys.executable, "-c", script], cwd=PROJECT_ROOT, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.count("refused: the editor sent a malformed mask") == 1, done.stdout  # the strings
    assert done.stdout.count("refused: the editor sent a mask of the wrong size") == 2, done.stdout


@pytest.mark.parametrize("runs", [
    WRAPPING_RUNS,
    [1, 2**70],
    [1, 2**63, 1, 2**63, 1, 12],
    [1, -1, 1, 13],
    [1, 0, 1, 12],
    [1, 12.0],
    [1, True, 1, 11],
    [True, 12],
    [1, "12"],
    [1, None],
    [[1], 12],
    [1, 6, 2, 6, 3],
    [7, 12],
    [256 + 1, 12],  # would wrap to 1 in uint8
    [-255, 12],
    [1, 1] * 13,
    [],
    "1,12",
    {"1": 12},
    None,
])
def test_hostile_runs_are_refused_with_a_message(runs):
    with pytest.raises(PetSegError, match="the editor sent a"):
        rle_decode(runs, SHAPE, TRIMAP_VALUES)


def test_numpy_integers_are_not_taken_for_browser_ints():
    # JSON from the browser only ever gives Python ints; anything else did not come from the editor.
    with pytest.raises(PetSegError):
        rle_decode([np.int64(1), np.int64(12)], SHAPE, TRIMAP_VALUES)


def test_a_valid_event_round_trips():
    mask = _valid_mask()
    event = parse_event({"action": "save", "image": IMAGE, "shape": list(SHAPE), "mask": rle_encode(mask)},
                        IMAGE, SHAPE)
    assert isinstance(event, EditorEvent) and np.array_equal(event.mask, mask) and event.strokes is None


@pytest.mark.parametrize("payload, message", [
    ({"action": ["save"], "image": IMAGE}, "unknown request"),
    ({"action": {"save": 1}, "image": IMAGE}, "unknown request"),
    ({"action": "save", "image": ["x"]}, "without an image"),
    ({"action": "save", "image": IMAGE, "shape": 12, "mask": [1, 12]}, "does not match"),
    ({"action": "save", "image": IMAGE, "shape": "34", "mask": [1, 12]}, "does not match"),
    ({"action": "save", "image": IMAGE, "shape": [3.0, 4.0], "mask": [1, 12]}, "does not match"),
    ({"action": "save", "image": IMAGE, "shape": [4, 3], "mask": [1, 12]}, "does not match"),
    ({"action": "save", "image": IMAGE, "shape": [3, 4, 1], "mask": [1, 12]}, "does not match"),
    ({"action": "grabcut", "image": IMAGE, "shape": [3, 4], "mask": [1, 12], "strokes": [3, 12]}, "stroke map"),
    ({"action": "grabcut", "image": IMAGE, "shape": [3, 4], "mask": [1, 12], "strokes": "x"}, "stroke map"),
    ([("action", "save")], "unknown request"),
])
def test_wrong_type_and_wrong_shape_events_are_refused(payload, message):
    with pytest.raises(PetSegError, match=message):
        parse_event(payload, IMAGE, SHAPE)


# --- fuzz -----------------------------------------------------------------------------------------------------------

_scalars = st.one_of(
    st.integers(),                                               # negative, zero, huge
    st.integers(min_value=2**62, max_value=2**66),               # around the int64 wrap
    st.integers(min_value=-3, max_value=20),                     # near-valid values and counts
    st.integers(min_value=0, max_value=2**64).map(str),          # numbers as strings (wrapped sums)
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.none(),
    st.text(max_size=8),
)
_json = st.recursive(_scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner,
                                                                                          max_size=3), max_leaves=8)
_runs = st.one_of(st.lists(_scalars, max_size=30), _json)


@st.composite
def _mutated_runs(draw) -> list:
    """A valid encoding with one element replaced: the payloads closest to passing the checks."""
    runs = rle_encode(_valid_mask(draw(st.integers(0, 50))))
    index = draw(st.integers(0, len(runs) - 1))
    runs[index] = draw(_scalars)
    return runs


@st.composite
def _events(draw) -> object:
    payload = {
        "action": draw(st.one_of(st.sampled_from(sorted(ACTIONS)), _json)),
        "image": draw(st.one_of(st.just(IMAGE), _json)),
        "shape": draw(st.one_of(st.just(list(SHAPE)), st.lists(st.integers(-5, 2**64), max_size=3), _json)),
        "mask": draw(st.one_of(_runs, _mutated_runs())),
    }
    if draw(st.booleans()):
        payload["strokes"] = draw(st.one_of(_runs, _mutated_runs()))
    return draw(st.one_of(st.just(payload), _json))


def _check_outcome(call) -> None:
    try:
        result = call()
    except PetSegError as exc:
        assert str(exc).startswith("the editor"), exc
        return
    if isinstance(result, EditorEvent) and result.mask is not None:
        assert result.mask.shape == SHAPE and result.mask.dtype == np.uint8
        assert set(np.unique(result.mask).tolist()) <= TRIMAP_VALUES


@settings(max_examples=400, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(runs=st.one_of(_runs, _mutated_runs()))
def test_fuzzed_runs_give_a_mask_or_a_message(runs):
    _check_outcome(lambda: rle_decode(runs, SHAPE, TRIMAP_VALUES))


@settings(max_examples=400, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(payload=_events())
def test_fuzzed_events_give_an_event_or_a_message(payload):
    _check_outcome(lambda: parse_event(payload, IMAGE, SHAPE))
