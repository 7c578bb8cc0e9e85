"""MinHash signatures and LSH banding, vectorised over whole batches.

The signatures are datasketch's: the same ``affine32`` permutations
(``MinHash(num_perm, seed).permutations``) and the same arithmetic, so a row
of ``signatures(...)`` equals ``MinHash(num_perm, seed, hashfunc=int)`` updated
with the same shingle hashes (the tests check this). What differs is the
loop: datasketch hashes one record at a time, here every shingle of a batch
goes through one numpy expression and ``np.minimum.reduceat`` takes each
record's minimum, which ``benchmarks/bench_dedup.py`` measures as many times faster.

Bands and rows come from datasketch too: ``MinHashLSH(threshold, num_perm,
weights)`` picks ``(b, r)`` minimising the weighted false-positive plus
false-negative probability mass around the threshold. The weights lean on
recall (``LSH_WEIGHTS``): every candidate pair is checked afterwards, so a
false positive costs one comparison while a false negative is a duplicate
never found. At 0.8 and 128 permutations this gives 16 bands x 8 rows: a pair
at Jaccard 0.83 is a candidate 98% of the time (datasketch's even weights,
9 x 13, 57%). Band keys are 64-bit hashes of each
band, grouped with one sort per band instead of a dict of Python lists.
"""

from __future__ import annotations

from functools import cache

import numpy as np

from thresher.curate.dedup.shingles import fmix64

DEFAULT_NUM_PERM = 128
SEED = 1
#: Shingles per chunk of the (shingles x num_perm) matrix: bounds memory to ~4 MiB at 128 permutations.
_CHUNK_SHINGLES = 8192
EMPTY = np.uint32(0xFFFFFFFF)


@cache
def permutations(num_perm: int = DEFAULT_NUM_PERM, seed: int = SEED) -> tuple[np.ndarray, np.ndarray]:
    """datasketch's affine32 permutation parameters ``(a, b)``, each uint32[num_perm]."""
    from datasketch import MinHash

    a, b = MinHash(num_perm=num_perm, seed=seed, scheme="affine32").permutations
    return a.astype(np.uint32), b.astype(np.uint32)


#: (false-positive, false-negative) weights for choosing bands and rows; see the module docstring.
LSH_WEIGHTS = (0.05, 0.95)


@cache
def lsh_params(threshold: float, num_perm: int = DEFAULT_NUM_PERM) -> tuple[int, int]:
    """``(bands, rows)`` datasketch's ``MinHashLSH`` chooses for ``threshold`` with ``LSH_WEIGHTS``."""
    from datasketch import MinHashLSH

    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm, weights=LSH_WEIGHTS)
    return lsh.b, lsh.r


def fmix32(values: np.ndarray) -> np.ndarray:
    """MurmurHash3's 32-bit finalizer, datasketch's pre-mix before the affine permutation."""
    values = values ^ (values >> np.uint32(16))
    values = values * np.uint32(0x85EBCA6B)
    values = values ^ (values >> np.uint32(13))
    values = values * np.uint32(0xC2B2AE35)
    return values ^ (values >> np.uint32(16))


def signatures(hashes: np.ndarray, counts: np.ndarray, num_perm: int = DEFAULT_NUM_PERM) -> np.ndarray:
    """One MinHash signature (uint32[num_perm]) per record.

    ``hashes`` holds every record's shingle hashes back to back and
    ``counts[i]`` how many belong to record i; a record with no shingles gets
    the empty signature (all ``0xFFFFFFFF``, as datasketch). The permuted
    values are laid out (num_perm x shingles) so each record's minimum is a
    contiguous ``reduceat``, and written into one reused buffer: allocating a
    fresh multi-megabyte array per chunk costs more in page faults than the
    arithmetic itself.
    """
    a, b = permutations(num_perm)
    a, b = a[:, None], b[:, None]
    out = np.full((len(counts), num_perm), EMPTY, dtype=np.uint32)
    mixed = fmix32(hashes.astype(np.uint32, copy=False))
    ends = np.cumsum(counts)
    starts = ends - counts
    buffer = np.empty((num_perm, _CHUNK_SHINGLES), dtype=np.uint32)
    record = 0
    while record < len(counts):
        # Take whole records until the chunk holds about _CHUNK_SHINGLES shingles.
        last = max(int(np.searchsorted(ends, starts[record] + _CHUNK_SHINGLES, side="right")), record + 1)
        lo, hi = int(starts[record]), int(ends[last - 1])
        if hi > lo:
            if hi - lo > buffer.shape[1]:  # one record longer than a chunk
                buffer = np.empty((num_perm, hi - lo), dtype=np.uint32)
            permuted = buffer[:, : hi - lo]
            np.multiply(a, mixed[lo:hi], out=permuted)  # uint32 wrap-around is the mod 2^32
            permuted += b
            nonempty = np.flatnonzero(counts[record:last] > 0)
            offsets = (starts[record:last][nonempty] - lo).astype(np.intp)
            out[record + nonempty] = np.minimum.reduceat(permuted, offsets, axis=1).T
        record = last
    return out


def band_keys(sigs: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """uint64[n, bands]: a hash of each band of rows of each signature."""
    rng = np.random.default_rng(0xBA4D)
    mult = rng.integers(0, 2**63, rows, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
    keys = np.empty((len(sigs), bands), dtype=np.uint64)
    for band in range(bands):
        block = sigs[:, band * rows : (band + 1) * rows].astype(np.uint64)
        acc = np.full(len(sigs), band, dtype=np.uint64)
        for k in range(rows):
            acc = acc * mult[k] + block[:, k]
        keys[:, band] = fmix64(acc)
    return keys


def candidate_pairs(keys: np.ndarray) -> np.ndarray:
    """int64[m, 2] pairs ``(i, j)``, ``i < j``, that share a bucket in some band; sorted, unique."""
    found = []
    for band in range(keys.shape[1]):
        order = np.argsort(keys[:, band], kind="stable")
        sorted_keys = keys[order, band]
        found.append(bucket_pairs(np.r_[True, sorted_keys[1:] != sorted_keys[:-1]][: len(order)], order))
    pairs = np.concatenate(found).astype(np.int64) if found else np.empty((0, 2), dtype=np.int64)
    pairs.sort(axis=1)
    return np.unique(pairs, axis=0)


def bucket_pairs(starts: np.ndarray, members: np.ndarray) -> np.ndarray:
    """The pairs of members that share a bucket; ``starts[i]`` is True where a new bucket begins.

    Within a bucket (members in ascending order) every member is paired with
    the bucket's first member (a star) and with its predecessor (a chain):
    linear in the bucket size, yet a member that is a false match of the first
    still links to its real neighbours. ``candidate_pairs`` buckets one band
    at a time; the partitioned dedup buckets (band, key) runs of a shuffled
    partition with the same rule, so both find the same pairs.
    """
    n = len(members)
    same = np.flatnonzero(~starts[1:]) + 1 if n else np.empty(0, dtype=np.int64)
    if not len(same):
        return np.empty((0, 2), dtype=members.dtype)
    first = np.maximum.accumulate(np.where(starts, np.arange(n), 0))
    chain = same[~starts[same - 1]]
    return np.concatenate([np.stack([members[first[same]], members[same]], axis=1),
                           np.stack([members[chain - 1], members[chain]], axis=1)])


def estimate(sigs: np.ndarray, pairs: np.ndarray) -> np.ndarray:
    """MinHash estimate of the Jaccard similarity of each pair (share of equal values)."""
    out = np.empty(len(pairs), dtype=np.float64)
    step = max(1, (1 << 22) // max(1, sigs.shape[1]))
    for lo in range(0, len(pairs), step):
        part = pairs[lo : lo + step]
        out[lo : lo + step] = (sigs[part[:, 0]] == sigs[part[:, 1]]).mean(axis=1)
    return out


def jaccard(first: np.ndarray, second: np.ndarray) -> float:
    """Exact Jaccard similarity of two sorted unique hash arrays."""
    if not len(first) and not len(second):
        return 1.0
    common = len(np.intersect1d(first, second, assume_unique=True))
    return common / (len(first) + len(second) - common)
