"""Face verification sets: pairs in the LFW protocol shape, ``.bin`` files built from pairs, LFW
pairs.txt.

LFW protocol shape: the pairs are split into ``num_folds`` folds (LFW: 10), every fold holds as
many same-identity pairs as different-identity pairs (LFW: 300 + 300), listed positives first.

Reading and writing insightface ``.bin`` files (the restricted unpickler) lives in
zoo.data.insightface_bin (``read_bin``, ``read_bin_raw``, ``write_bin``, ``decode_image_bytes``,
``UnsafePickleError``); this module writes them with ``write_bin``.
"""
import itertools
from pathlib import Path

import numpy as np
import torch

from .images import ImageDecodeError, load_rgb
from .insightface_bin import write_bin

# ---------------------------------------------------------------------------------------------
# Pairs in the LFW protocol shape
# ---------------------------------------------------------------------------------------------


def _all_pairs_of(idx):
    return [(int(a), int(b)) for a, b in itertools.combinations(idx, 2)]


def verification_pairs(labels, num_folds=10, pairs_per_fold=None, seed=0):
    """Balanced verification pairs over a labelled set: int64 array (N, 4) of (i, j, is_same, fold).

    ``i < j`` index into ``labels``. Every fold holds ``pairs_per_fold // 2`` same-identity pairs
    followed by as many different-identity pairs (LFW: pairs_per_fold=600). With
    ``pairs_per_fold=None`` every same-identity pair is used (rounded down to a multiple of
    ``num_folds``) with an equal number of different pairs drawn without replacement. The draw
    is deterministic in ``seed``. Rows iterate as (i, j, is_same, fold).
    """
    labels = np.asarray(labels).reshape(-1)
    num_folds = int(num_folds)
    if num_folds < 1:
        raise ValueError(f"num_folds must be >= 1, got {num_folds}")
    rng = np.random.default_rng(seed)
    by_class = {}
    for i, y in enumerate(labels.tolist()):
        by_class.setdefault(y, []).append(i)
    positives = [p for idx in by_class.values() for p in _all_pairs_of(idx)]
    n = len(labels)
    num_neg_total = n * (n - 1) // 2 - len(positives)
    if pairs_per_fold is None:
        per_fold = min(len(positives), num_neg_total) // num_folds
    else:
        if int(pairs_per_fold) < 2 or int(pairs_per_fold) % 2:
            raise ValueError(f"pairs_per_fold must be even and >= 2, got {pairs_per_fold}")
        per_fold = int(pairs_per_fold) // 2
    need = per_fold * num_folds
    if per_fold == 0:
        raise ValueError(f"cannot build balanced pairs: {len(positives)} same-identity and "
                         f"{num_neg_total} different-identity pairs for {num_folds} folds")
    if need > len(positives):
        raise ValueError(f"{need} same-identity pairs requested but the labels allow only "
                         f"{len(positives)}")
    if need > num_neg_total:
        raise ValueError(f"{need} different-identity pairs requested but the labels allow only "
                         f"{num_neg_total}")
    pos = np.asarray(positives, dtype=np.int64)[rng.permutation(len(positives))[:need]]
    neg = _draw_negatives(labels, need, num_neg_total, rng)
    rows = []
    for f in range(num_folds):
        for a, b in pos[f * per_fold:(f + 1) * per_fold]:
            rows.append((a, b, 1, f))
        for a, b in neg[f * per_fold:(f + 1) * per_fold]:
            rows.append((a, b, 0, f))
    return np.asarray(rows, dtype=np.int64).reshape(-1, 4)


def _draw_negatives(labels, need, num_neg_total, rng):
    n = len(labels)
    if n <= 2000:  # enumerate (<= 2M pairs) so a small set is drawn exactly without replacement
        i, j = np.triu_indices(n, k=1)
        keep = labels[i] != labels[j]
        i, j = i[keep], j[keep]
        pick = rng.permutation(len(i))[:need]
        return np.stack([i[pick], j[pick]], 1)
    # Large sets: rejection sampling; negatives are the vast majority of all pairs.
    seen, out = set(), []
    while len(out) < need:
        a, b = rng.integers(0, n, size=2)
        a, b = (int(a), int(b)) if a < b else (int(b), int(a))
        if a != b and labels[a] != labels[b] and (a, b) not in seen:
            seen.add((a, b))
            out.append((a, b))
    return np.asarray(out, dtype=np.int64)


class PairDataset(torch.utils.data.Dataset):
    """Pairs over a labelled image dataset: items are (image_i, image_j, is_same, fold)."""

    def __init__(self, dataset, pairs):
        self.dataset = dataset
        self.pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 4)
        if len(self.pairs) and (self.pairs[:, :2].max() >= len(dataset) or self.pairs.min() < 0):
            raise IndexError(f"pair indices out of range for a dataset of {len(dataset)} items")

    @property
    def issame(self) -> np.ndarray:
        return self.pairs[:, 2].astype(bool)

    @property
    def folds(self) -> np.ndarray:
        return self.pairs[:, 3].copy()

    def __len__(self):
        return len(self.pairs)

    def __getitem__(self, k):
        i, j, same, fold = (int(v) for v in self.pairs[k])
        return self.dataset[i][0], self.dataset[j][0], bool(same), fold


class ORLPairs(PairDataset):
    """Verification pairs on the held-out ORL identities (LFW protocol shape, 10 folds).

    With the defaults (10 held-out identities x 10 images): all 450 same-identity pairs and 450
    drawn different-identity pairs, 45 + 45 per fold. ``dataset`` is the ORLFaces("heldout"),
    or ORLFaces("val") with split="val" (validation identities, for choosing settings).
    """

    def __init__(self, transform=None, num_train=30, seed=0, num_folds=10, pairs_per_fold=None,
                 pair_seed=0, split="heldout", num_val=0, fold=0):
        from .orl import ORLFaces
        ds = ORLFaces(split, transform=transform, num_train=num_train, seed=seed, num_val=num_val,
                      fold=fold)
        super().__init__(ds, verification_pairs(ds.labels, num_folds, pairs_per_fold, pair_seed))


# ---------------------------------------------------------------------------------------------
# .bin files from pairs (the format: zoo.data.insightface_bin)
# ---------------------------------------------------------------------------------------------

def _check_decodes(path, where=None) -> None:
    """ImageDecodeError (naming ``path``, and ``where`` it was listed) unless it decodes."""
    try:
        load_rgb(path)
    except ImageDecodeError as e:
        raise ImageDecodeError(f"{e}" + (f" (listed in {where})" if where else "")) from None


def make_bin_from_pairs(dataset_paths, pairs, out_path, verify=True):
    """Write a .bin of ``pairs`` (rows i, j, is_same, ...) over a list of image file paths.

    The files' bytes are stored verbatim (no re-encoding) so they read back byte for byte. With
    ``verify`` every image is decoded first and an undecodable one raises ImageDecodeError naming
    it, before anything is written (read_bin would otherwise fail on the whole set).
    """
    pairs = np.asarray(pairs).reshape(len(pairs), -1)
    if verify:
        for idx in sorted({int(i) for row in pairs for i in row[:2]}):
            _check_decodes(dataset_paths[idx])
    images = []
    for row in pairs:
        for idx in (int(row[0]), int(row[1])):
            images.append(Path(dataset_paths[idx]).read_bytes())
    return write_bin(out_path, images, pairs[:, 2].astype(bool))


def make_bin_from_dataset(dataset, out_path, num_folds=10, pairs_per_fold=None, seed=0,
                          verify=True, skipped=None):
    """Write a .bin of balanced pairs (:func:`verification_pairs`) over a file-backed labelled
    dataset (``.paths`` and ``.labels``: ORLFaces, IdentityFolder); returns the number of pairs.

    With ``verify`` every image is decoded first; undecodable ones are left out before the pairs
    are drawn and appended to ``skipped`` (a list, when given) as (path, reason)."""
    paths, labels = list(dataset.paths), list(dataset.labels)
    if verify:
        keep = []
        for k, p in enumerate(paths):
            try:
                _check_decodes(p)
                keep.append(k)
            except (ImageDecodeError, OSError) as e:
                if skipped is not None:
                    skipped.append((str(p), str(e)))
        paths, labels = [paths[k] for k in keep], [labels[k] for k in keep]
    pairs = verification_pairs(labels, num_folds, pairs_per_fold, seed)
    make_bin_from_pairs(paths, pairs, out_path, verify=False)
    return len(pairs)


# ---------------------------------------------------------------------------------------------
# LFW pairs.txt
# ---------------------------------------------------------------------------------------------

def read_lfw_pairs(path):
    """Parse LFW's pairs.txt / pairsDevTest.txt: list of (name1, n1, name2, n2, is_same, fold).

    Header "F P" (folds, same pairs per fold; each fold holds P same then P different lines)
    or "P" (one fold). Lines "name n1 n2" are same-identity pairs, "name1 n1 name2 n2" different.
    """
    path = Path(path)
    lines = [ln.split() for ln in path.read_text().splitlines()]
    lines = [(k + 1, t) for k, t in enumerate(lines) if t]
    if not lines:
        raise ValueError(f"{path}: empty pairs file")
    lineno, head = lines[0]
    try:
        nums = [int(v) for v in head]
    except ValueError:
        raise ValueError(f"{path}:{lineno}: header must be 'folds pairs' or 'pairs', got {head}")
    folds, per = (1, nums[0]) if len(nums) == 1 else (nums[0], nums[1])
    body = lines[1:]
    if len(body) != 2 * folds * per:
        raise ValueError(f"{path}: header promises {folds} folds x {per} same + {per} different "
                         f"pairs = {2 * folds * per} lines, found {len(body)}")
    out = []
    for k, (lineno, t) in enumerate(body):
        fold, within = divmod(k, 2 * per)
        want_same = within < per
        try:
            if len(t) == 3:
                rec = (t[0], int(t[1]), t[0], int(t[2]), True, fold)
            elif len(t) == 4:
                rec = (t[0], int(t[1]), t[2], int(t[3]), False, fold)
            else:
                raise ValueError
        except ValueError:
            raise ValueError(f"{path}:{lineno}: expected 'name n1 n2' or 'name1 n1 name2 n2', "
                             f"got {' '.join(t)!r}") from None
        if rec[4] != want_same:
            raise ValueError(f"{path}:{lineno}: a {'same' if want_same else 'different'} pair "
                             f"was expected at this position of fold {fold}")
        out.append(rec)
    return out


def lfw_pair_paths(pairs, root, ext="jpg"):
    """Image paths of LFW pairs: ``root/name/name_%04d.<ext>`` (the LFW file naming)."""
    root = Path(root)
    return [(root / a / f"{a}_{i:04d}.{ext}", root / b / f"{b}_{j:04d}.{ext}", same, fold)
            for a, i, b, j, same, fold in pairs]


def make_bin_from_lfw_pairs(pairs_path, root, out_path, ext="jpg"):
    """Write a .bin of the pairs of an LFW pairs.txt over the images under ``root``
    (``root/name/name_%04d.<ext>``), stored verbatim; returns the number of pairs. A missing or
    undecodable image raises FileNotFoundError / ImageDecodeError naming it and the pairs file,
    before anything is written (the pairs are the protocol: none is dropped)."""
    rows = lfw_pair_paths(read_lfw_pairs(pairs_path), root, ext)
    images, checked = [], set()
    for a, b, _, _ in rows:
        for path in (a, b):
            if not path.is_file():
                raise FileNotFoundError(f"{path}: image named in {pairs_path} not found")
            if path not in checked:  # refused on write, not when the .bin is read
                _check_decodes(path, pairs_path)
                checked.add(path)
            images.append(path.read_bytes())
    write_bin(out_path, images, [r[2] for r in rows])
    return len(rows)
