"""Event-camera emulation: still images seen by a DVS that makes small saccades (numpy only).

The N-MNIST recipe (Orchard et al. 2015) moved a real DVS in three saccades in front of a
screen; :class:`SaccadeSensor` does the same to an image in software, deterministically:

* **Motion.** The image sits in the middle of a sensor ``margin`` pixels larger on every side
  and moves, relative to it, along a closed triangle of three straight saccades (corners
  ``(-a, +a) -> (0, -a) -> (+a, +a) -> (-a, +a)`` in pixels (x, y), ``a = amplitude``), each
  lasting ``saccade_us`` microseconds at constant speed, sampled in ``steps_per_saccade``
  steps. Sub-pixel positions are rendered by bilinear interpolation: at step ``k`` sensor pixel
  ``(X, Y)`` sees ``img(X - margin - ox_k, Y - margin - oy_k)``, the image (scaled to [0, 1] by
  ``full_scale``) interpolated bilinearly between its four nearest pixels, black outside it.
* **Pixels.** Each sensor pixel holds a reference log intensity ``R``, set to
  ``L_0 = log(I_0 + eps)`` at ``t = 0`` (a DVS reports change only, so nothing is emitted then).
  Whenever ``L = log(I + eps)`` moves ``n`` whole contrast thresholds ``C`` away from ``R``,
  the pixel emits ``n`` events, ON (``p = 1``) upwards or OFF (``p = 0``) downwards, and
  ``R`` moves by ``n C`` towards ``L``::

      n_on = floor((L_k - R) / C)  if L_k > R;   n_off = floor((R - L_k) / C)  if L_k < R

  (a level reached exactly counts as crossed, :data:`CROSSING_TOLERANCE`). The path is closed,
  so every pixel ends at its starting intensity and its ON and OFF events balance.
  Within a step ``L`` is taken as linear in time, so the ``j``-th crossing, of level
  ``R + j C`` (ON; ``R - j C`` OFF), is stamped at ``t_{k-1} + (level - L_{k-1}) / (L_k -
  L_{k-1}) (t_k - t_{k-1})``, floored to whole microseconds. Timestamps lie in
  ``[0, duration_us]`` with ``duration_us = 3 saccade_us``.
* **Mismatch.** Real pixels do not share one threshold: with ``threshold_mismatch = s > 0``
  pixel ``(x, y)`` of sample ``i`` uses ``C (1 + s z)``, ``z ~ N(0, 1)`` clipped to
  ``[-2, 2]``, from ``numpy.random.default_rng((seed, key_i))``: a sample's events depend on
  the seed and its key (its index in the source dataset), never on which other samples are
  converted with it.

Events are tonic's structured array (:data:`EVENT_DTYPE`, ``tonic.io.events_struct``: x, y int16,
t int64 in microseconds, p bool), sorted by t (then y, x). :func:`spike_frames` turns them into
binary frames with tonic's own ``ToFrame`` (imported only there).

Defaults, measured on scikit-learn's digits (8x8, 0..16) with ``digits-cnn``: a 12x12 sensor
(margin 2: the pooled 12 -> 6 -> 3 maps lose no border, and an amplitude of 1.5 px keeps the
image on the sensor), ``C = 0.2`` and ``eps = 0.1`` (a black-to-white edge crosses
``log(1.1 / 0.1) / 0.2`` = 12 thresholds), 100 ms saccades in 16 steps each (about 0.2 px per step),
mismatch 0.05. docs/benchmarks.md gives the accuracy they reach.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

#: tonic 1.7's ``tonic.io.events_struct``, the dtype its transforms read (a test checks they agree)
EVENT_DTYPE = np.dtype([("x", np.int16), ("y", np.int16), ("t", np.int64), ("p", bool)])
#: a change of ``n C`` up to this many thresholds short of it still crosses ``n`` levels
CROSSING_TOLERANCE = 1e-9
POLARITIES = 2


@dataclass(frozen=True)
class SaccadeSensor:
    """The emulated DVS and its saccades (see the module docstring for the equations)."""

    margin: int = 2  #: sensor pixels beyond the image on each side
    amplitude: float = 1.5  #: ``a``, the triangle's half-size in pixels; must be <= margin
    saccade_us: int = 100_000  #: duration of one saccade in microseconds
    steps_per_saccade: int = 16  #: motion samples per saccade
    threshold: float = 0.2  #: ``C``, contrast threshold in log intensity
    eps: float = 0.1  #: ``eps`` in ``log(I + eps)``, intensity in [0, 1]
    threshold_mismatch: float = 0.05  #: ``s``, relative spread of the per-pixel threshold

    def __post_init__(self) -> None:
        checks = [
            (isinstance(self.margin, int) and self.margin >= 0, f"margin must be an integer >= 0, got {self.margin!r}"),
            (0 <= self.amplitude <= self.margin, f"amplitude must lie in [0, margin {self.margin}], "
                                                 f"got {self.amplitude!r}"),
            (isinstance(self.saccade_us, int) and self.saccade_us >= 1,
             f"saccade_us must be an integer >= 1, got {self.saccade_us!r}"),
            (isinstance(self.steps_per_saccade, int) and self.steps_per_saccade >= 1,
             f"steps_per_saccade must be an integer >= 1, got {self.steps_per_saccade!r}"),
            (self.threshold > 0, f"threshold must be positive, got {self.threshold!r}"),
            (self.eps > 0, f"eps must be positive, got {self.eps!r}"),
            (0 <= self.threshold_mismatch < 0.5, f"threshold_mismatch must lie in [0, 0.5), "
                                                 f"got {self.threshold_mismatch!r}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)

    @property
    def duration_us(self) -> int:
        return 3 * self.saccade_us

    def sensor_size(self, image_shape: tuple[int, int]) -> tuple[int, int, int]:
        """tonic's ``sensor_size``, ``(W, H, 2)``, for images of ``(h, w)``."""
        h, w = image_shape
        return (w + 2 * self.margin, h + 2 * self.margin, POLARITIES)

    def offsets(self) -> tuple[np.ndarray, np.ndarray]:
        """``(times, xy)``: the ``3 steps_per_saccade + 1`` sample times (microseconds, float)
        and the image's offset from its centred position at each, (steps + 1, 2) pixels (x, y)."""
        a = self.amplitude
        corners = np.array([(-a, a), (0.0, -a), (a, a), (-a, a)])
        k = self.steps_per_saccade
        f = np.arange(k) / k
        xy = np.concatenate([c0 + f[:, None] * (c1 - c0) for c0, c1 in zip(corners[:-1], corners[1:], strict=True)]
                            + [corners[-1:]])
        times = np.arange(3 * k + 1) * (self.saccade_us / k)
        return times, xy

    def render(self, images: np.ndarray, offset: tuple[float, float]) -> np.ndarray:
        """Intensities (N, H, W) on the sensor of images (N, h, w) in [0, 1] displaced by
        ``offset`` (x, y) pixels from the centre, by bilinear interpolation."""
        n, h, w = images.shape
        m = self.margin
        # sensor pixel (X, Y) sees image point (X - m - ox, Y - m - oy), which lies in the image
        # padded by 2m + 1 (black) at column X + m + 1 - ox: the whole 2x2 neighbourhood, |ox| <= m
        pad = 2 * m + 1
        padded = np.zeros((n, h + 2 * pad, w + 2 * pad))
        padded[:, pad:pad + h, pad:pad + w] = images
        ox, oy = offset
        ix, fx = math.floor(-ox), -ox - math.floor(-ox)
        iy, fy = math.floor(-oy), -oy - math.floor(-oy)
        hs, ws = h + 2 * m, w + 2 * m
        r, c = iy + m + 1, ix + m + 1

        def window(dr: int, dc: int) -> np.ndarray:
            return padded[:, r + dr:r + dr + hs, c + dc:c + dc + ws]

        return ((1 - fy) * ((1 - fx) * window(0, 0) + fx * window(0, 1))
                + fy * ((1 - fx) * window(1, 0) + fx * window(1, 1)))

    def events(self, images: np.ndarray, full_scale: float, keys: np.ndarray, seed: int) -> list[np.ndarray]:
        """One structured event array (:data:`EVENT_DTYPE`) per image of ``images`` (N, h, w),
        pixel values in [0, full_scale]; ``keys`` (N,) and ``seed`` draw the threshold mismatch."""
        images = np.asarray(images, dtype=np.float64) / float(full_scale)
        n, h, w = images.shape
        keys = np.asarray(keys)
        if keys.shape != (n,):
            raise ValueError(f"keys must have shape ({n},), got {keys.shape}")
        W, H, _ = self.sensor_size((h, w))
        thresholds = np.full((n, H, W), self.threshold)
        if self.threshold_mismatch > 0:
            for i, key in enumerate(keys):
                z = np.random.default_rng((int(seed), int(key))).standard_normal((H, W))
                thresholds[i] *= 1 + self.threshold_mismatch * np.clip(z, -2, 2)
        times, xy = self.offsets()
        level = np.log(self.render(images, tuple(xy[0])) + self.eps)
        reference = level.copy()
        parts: list[tuple[np.ndarray, ...]] = []
        for k in range(1, len(times)):
            previous, level = level, np.log(self.render(images, tuple(xy[k])) + self.eps)
            delta = level - reference
            # + CROSSING_TOLERANCE: a level reached exactly (as on returning to the start) counts
            # as crossed, however the float rounding of log() falls
            crossings = np.floor(np.abs(delta) / thresholds + CROSSING_TOLERANCE).astype(np.int64)
            sample, y, x = np.nonzero(crossings)
            if not len(sample):
                continue
            count = crossings[sample, y, x]
            up = delta[sample, y, x] > 0
            step = np.where(up, 1.0, -1.0) * thresholds[sample, y, x]
            start = reference[sample, y, x]
            reference[sample, y, x] = start + count * step
            # the j-th crossing (j = 1..count) of each pixel, as flat arrays
            owner = np.repeat(np.arange(len(count)), count)
            j = np.arange(len(owner)) - np.repeat(np.cumsum(count) - count, count) + 1
            crossed = start[owner] + j * step[owner]
            low, high = previous[sample, y, x][owner], level[sample, y, x][owner]
            change = high - low  # 0 only for a crossing left over by rounding: stamped at the step's end
            fraction = np.clip((crossed - low) / np.where(change == 0, 1.0, change), 0.0, 1.0)
            fraction[change == 0] = 1.0
            t = np.floor(times[k - 1] + fraction * (times[k] - times[k - 1])).astype(np.int64)
            parts.append((sample[owner], t, x[owner], y[owner], up[owner]))
        if not parts:
            return [np.zeros(0, dtype=EVENT_DTYPE) for _ in range(n)]
        sample, t, x, y, p = (np.concatenate(column) for column in zip(*parts, strict=True))
        order = np.lexsort((x, y, t, sample))
        flat = np.empty(len(order), dtype=EVENT_DTYPE)
        flat["x"], flat["y"], flat["t"], flat["p"] = x[order], y[order], t[order], p[order]
        bounds = np.searchsorted(sample[order], np.arange(n + 1))
        return [flat[bounds[i]:bounds[i + 1]] for i in range(n)]


class EventsExtraMissing(ImportError):
    """tonic (the ``events`` extra) is not installed, or does not import."""


def tonic_to_frame() -> type:
    """``tonic.transforms.ToFrame``, imported on first use: only the event path needs tonic."""
    try:
        from tonic.transforms import ToFrame
    except ImportError as exc:
        first_line = (str(exc).strip().splitlines() or [""])[0]
        raise EventsExtraMissing(f"event frames need tonic 1.7.0, the events extra ({first_line}): "
                                 f'pip install -e ".[events]" or make events') from exc
    return ToFrame


def frame_window_us(duration_us: int, timesteps: int) -> int:
    """Length of each of the ``timesteps`` frames: ``duration_us // T + 1``, so that T frames
    from t = 0 cover every timestamp in ``[0, duration_us]`` in whole microseconds."""
    return duration_us // timesteps + 1


def spike_frames(streams: list[np.ndarray], sensor_size: tuple[int, int, int], timesteps: int,
                 duration_us: int) -> np.ndarray:
    """Binary frames (N, T, 2, H, W) int64: 1 where a pixel had at least one event of that
    polarity in the frame's time bin, else 0.

    tonic's ``ToFrame(sensor_size, time_window, start_time=0, end_time=T * time_window)`` counts
    the events of each bin (bins ``[k w, (k + 1) w)``, :func:`frame_window_us`); the frames are
    the same stretch of the saccades in every sample. (``ToFrame(n_time_bins=T)`` would instead
    span each sample's own first to last event, with a floored bin length that drops the last
    events.) An empty stream gives zeros (tonic returns a single, transposed frame for it).
    """
    window = frame_window_us(duration_us, timesteps)
    to_frame = tonic_to_frame()(sensor_size=sensor_size, time_window=window, start_time=0, end_time=timesteps * window)
    w, h, polarities = sensor_size
    frames = np.zeros((len(streams), timesteps, polarities, h, w), dtype=np.int64)
    for i, events in enumerate(streams):
        if len(events):
            counts = to_frame(events)
            if counts.shape != frames.shape[1:]:  # a bug here or a change in tonic, not bad input
                raise RuntimeError(f"tonic's ToFrame gave frames of {counts.shape}, expected {frames.shape[1:]}")
            frames[i] = counts > 0
    return frames
