"""The linear probe of a training split, fitted once: training's probe expert (jobs/probe_expert_fit.py) and the
evaluation's probe baselines (eval/probe.py) fit the same probe on the same pooled trunk features of the same training
images, and an ablation evaluates several models against one catalog. So ``split_probe`` keeps each fit in the trunk
cache entry its features come from (``probes/<key>.npz``), under a key made of everything the fit depends on (the
features and labels, the attributes, the strengths, the fitting code's settings and scikit-learn's version), and a
later fit of the same key reads it back: the same probe, not refitted. Anything different (another split, seed,
catalog or strength) is another key, fitted anew; an entry that cannot be read is fitted anew and written again.

The fit images and the validation images are put in id order first, so that the rows a fit sees do not depend on the
order its caller listed them in."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile

import numpy as np

from eval import linear_probe
from eval.linear_probe import LinearProbe, fit_linear_probe
from fsnet.storage import join
from fsnet.trunk_features import TrunkCache

FOLDER = "probes"  # inside the trunk cache entry


def split_probe(
    cache: TrunkCache,
    fit_ids: np.ndarray,
    fit_labels: np.ndarray,
    validation_ids: np.ndarray,
    validation_labels: np.ndarray,
    names: list[str],
    num_values: list[int],
    strengths: list[float],
) -> tuple[LinearProbe, bool]:
    """(the probe fitted on the cached pooled features of ``fit_ids`` (labels (n, A) in the model's codes), its
    strength chosen on ``validation_ids``, and whether it was read back rather than fitted now). ProbeUnavailable as
    fit_linear_probe."""
    (fit_found, fit), y = _read(cache, fit_ids, fit_labels)
    (val_found, val), yv = _read(cache, validation_ids, validation_labels)
    x, xv, y, yv = fit["pooled"], val["pooled"], y[fit_found], yv[val_found]
    key = probe_key(x, y, xv, yv, names, num_values, strengths)
    url = join(cache.url, FOLDER, f"{key}.npz")
    if cache.storage.exists(url):
        try:
            return probe_from_bytes(cache.storage.read_bytes(url)), True
        except (OSError, ValueError, KeyError, zipfile.BadZipFile):  # cut short, or not ours: fitted anew, replaced
            pass
    probe = fit_linear_probe(x, y, xv, yv, names, num_values, strengths)
    cache.storage.write_bytes(url, probe_bytes(probe))
    return probe, False


def _read(cache: TrunkCache, ids: np.ndarray, labels: np.ndarray) -> tuple[tuple[np.ndarray, dict], np.ndarray]:
    """The cache's (found, arrays) of ``ids`` in id order, and their labels (n, A) int64 in that order."""
    order = np.argsort(np.asarray(ids).astype(str), kind="stable")
    return cache.read(np.asarray(ids).astype(str)[order].tolist()), np.asarray(labels, np.int64)[order]


def probe_key(
    x: np.ndarray,
    y: np.ndarray,
    xv: np.ndarray,
    yv: np.ndarray,
    names: list[str],
    num_values: list[int],
    strengths: list[float],
) -> str:
    """24 hex digits of everything a fit depends on: the same key, the same probe."""
    import sklearn

    digest = hashlib.sha256()
    settings = {
        "names": list(names),
        "num_values": [int(v) for v in num_values],
        "strengths": [float(s) for s in strengths],
        "max_iter": linear_probe.MAX_ITER,
        "tol": linear_probe.TOL,
        "scale_floor": linear_probe.SCALE_FLOOR,
        "sklearn": sklearn.__version__,
    }
    digest.update(json.dumps(settings, sort_keys=True).encode())
    for array, dtype in ((x, np.float32), (y, np.int64), (xv, np.float32), (yv, np.int64)):
        array = np.ascontiguousarray(array, dtype=dtype)
        digest.update(str(array.shape).encode())
        digest.update(array.tobytes())
    return digest.hexdigest()[:24]


def probe_bytes(probe: LinearProbe) -> bytes:
    """A LinearProbe as one .npz (no pickles): its arrays, and its other fields as JSON."""
    facts = {
        "names": probe.names,
        "strengths": probe.strengths,
        "validation_accuracy": probe.validation_accuracy,
        "fit_images": probe.fit_images,
        "validation_images": probe.validation_images,
        "seconds": probe.seconds,
    }
    arrays = {"mean": probe.mean, "scale": probe.scale, "facts": np.array(json.dumps(facts))}
    for a, (weight, bias) in enumerate(zip(probe.weights, probe.biases)):
        arrays[f"weight_{a}"], arrays[f"bias_{a}"] = weight, bias
    out = io.BytesIO()
    np.savez(out, **arrays)
    return out.getvalue()


def probe_from_bytes(data: bytes) -> LinearProbe:
    """probe_bytes' inverse; ValueError or KeyError when ``data`` is not such a file."""
    with np.load(io.BytesIO(data), allow_pickle=False) as arrays:
        facts = json.loads(str(arrays["facts"]))
        count = len(facts["names"])
        return LinearProbe(
            names=facts["names"],
            mean=arrays["mean"],
            scale=arrays["scale"],
            weights=[arrays[f"weight_{a}"] for a in range(count)],
            biases=[arrays[f"bias_{a}"] for a in range(count)],
            strengths=facts["strengths"],
            validation_accuracy=facts["validation_accuracy"],
            fit_images=facts["fit_images"],
            validation_images=facts["validation_images"],
            seconds=facts["seconds"],
        )
