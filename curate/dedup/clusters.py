"""From per-record keys and signatures to "who duplicates whom".

This is the part of deduplication that sees no files: ``find_duplicates``
takes arrays (exact keys, MinHash signatures, a preference rank) and returns,
for every record, the record it duplicates or -1. ``thresher dedup`` feeds it
from streamed files; ``duplicate_of`` (below) feeds it from a list of strings in memory.

The steps:

1. Exact groups: records with the same exact key form one group; near
   matching runs on one representative per group (its first record), so a
   thousand copies of a boilerplate page cost one signature comparison.
2. Near edges: LSH buckets propose pairs of groups; each pair is kept if its
   similarity (exact Jaccard via ``verify``, else the MinHash estimate)
   reaches the threshold.
3. Reference records (``--against``) are never deduplicated among
   themselves; an input group that equals or near-matches a reference group
   is removed as a duplicate of that reference, directly (no transitivity).
4. Clusters of the remaining input groups are the connected components of
   the near edges (union-find, done by scipy's ``connected_components``);
   in each cluster the record with the best rank survives.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from thresher.curate.dedup import minhash
from thresher.curate.dedup.shingles import Shingler, exact_key
from thresher.curate.errors import ThresherError

#: ``kind`` codes of a verdict.
KEPT, EXACT, NEAR = 0, 1, 2
KIND_NAMES = {EXACT: "exact", NEAR: "near"}

Verifier = Callable[[np.ndarray], np.ndarray]


@dataclass
class Verdict:
    """Per record: the record it duplicates (-1 if kept), how (``KEPT``/``EXACT``/``NEAR``), how similar."""

    survivor: np.ndarray
    kind: np.ndarray
    similarity: np.ndarray
    candidate_pairs: int = 0
    clusters: int = 0


def find_duplicates(
    keys: np.ndarray,
    rank: np.ndarray,
    *,
    sigs: np.ndarray | None = None,
    shingled: np.ndarray | None = None,
    is_ref: np.ndarray | None = None,
    threshold: float = 0.8,
    verify: Verifier | None = None,
) -> Verdict:
    """Decide every record's fate.

    ``keys``: uint64 exact keys. ``rank``: lower survives (ties impossible:
    pass a permutation). ``sigs``: MinHash signatures, or None for exact
    matching only. ``shingled``: False where a record has no shingles (it
    takes part in exact matching only). ``is_ref``: True for ``--against``
    records, which are never removed. ``verify(pairs)``: exact Jaccard of
    record pairs; None uses the MinHash estimate.
    """
    n = len(keys)
    is_ref = np.zeros(n, dtype=bool) if is_ref is None else is_ref
    group, rep = exact_groups(keys)
    has_input = np.bincount(group[~is_ref], minlength=len(rep)) > 0
    edges, edge_sims, n_candidates = _near_edges(rep, has_input, sigs, shingled, threshold, verify)
    verdict = decide(group, rank, is_ref, edges, edge_sims, sigs)
    verdict.candidate_pairs = n_candidates
    return verdict


def exact_groups(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each record's exact group (groups numbered in key order) and each group's first record."""
    _, group = np.unique(keys, return_inverse=True)
    group = group.ravel().astype(np.int64)
    order = np.argsort(group, kind="stable")
    first = np.flatnonzero(np.r_[True, group[order][1:] != group[order][:-1]])[: len(order)]
    return group, order[first]


def decide(
    group: np.ndarray,
    rank: np.ndarray,
    is_ref: np.ndarray,
    edges: np.ndarray,
    edge_sims: np.ndarray,
    sigs: np.ndarray | None,
) -> Verdict:
    """Every record's fate, given its exact group and the near edges between groups (steps 3 and 4).

    ``edges``: int64[m, 2] group pairs ``(a, b)``, ``a < b``, sorted, with
    their similarity. Nothing here looks beyond a connected component of the
    edges, so any set of records made of whole components (with their edges,
    groups renumbered in key order and ranks in the same order) is decided
    alone exactly as it would be with everything: the partitioned dedup
    (``distributed.py``) decides each partition of components with this.
    """
    n = len(group)
    survivor = np.full(n, -1, dtype=np.int64)
    kind = np.zeros(n, dtype=np.int8)
    similarity = np.zeros(n, dtype=np.float64)
    if n == 0:
        return Verdict(survivor, kind, similarity)
    n_groups = int(group.max()) + 1
    has_input = np.bincount(group[~is_ref], minlength=n_groups) > 0
    has_ref = np.bincount(group[is_ref], minlength=n_groups) > 0
    ref_rep = np.full(n_groups, n, dtype=np.int64)
    ref_index = np.flatnonzero(is_ref)
    np.minimum.at(ref_rep, group[ref_index], ref_index)  # the first reference record of each group

    # --against: input groups equal to, or near a reference group, go to that reference.
    against = np.full(n_groups, -1, dtype=np.int64)
    against_sim = np.zeros(n_groups)
    against_kind = np.zeros(n_groups, dtype=np.int8)
    exact_ref = has_input & has_ref
    against[exact_ref] = ref_rep[exact_ref]
    against_sim[exact_ref] = 1.0
    against_kind[exact_ref] = EXACT
    for g_in, g_ref in ((0, 1), (1, 0)):
        hit = has_ref[edges[:, g_ref]] & ~has_ref[edges[:, g_in]]
        # Strongest match last, so it wins the assignment.
        for e in np.flatnonzero(hit)[np.argsort(edge_sims[hit], kind="stable")]:
            target = edges[e, g_in]
            against[target], against_sim[target], against_kind[target] = ref_rep[edges[e, g_ref]], edge_sims[e], NEAR
    contaminated = against >= 0
    members = ~is_ref & contaminated[group]
    survivor[members] = against[group[members]]
    kind[members] = against_kind[group[members]]
    similarity[members] = against_sim[group[members]]

    # Clusters among clean input groups.
    clean = has_input & ~contaminated & ~has_ref
    keep = clean[edges[:, 0]] & clean[edges[:, 1]]
    component = _components(n_groups, edges[keep])
    candidates = np.flatnonzero(~is_ref & clean[group])
    comp = component[group[candidates]]
    by_comp = candidates[np.lexsort((rank[candidates], comp))]
    comp_sorted = component[group[by_comp]]
    starts = np.r_[True, comp_sorted[1:] != comp_sorted[:-1]][: len(by_comp)]  # no candidates: empty
    winner = by_comp[starts][np.cumsum(starts) - 1]
    losers = by_comp != winner
    lost, won = by_comp[losers], winner[losers]
    survivor[lost] = won
    same_group = group[lost] == group[won]
    kind[lost] = np.where(same_group, EXACT, NEAR)
    similarity[lost] = np.where(same_group, 1.0, _pair_similarity(lost, won, group, n_groups, edges, edge_sims, sigs))
    return Verdict(survivor, kind, similarity, 0, int(starts.sum()))


def _near_edges(
    rep: np.ndarray,
    has_input: np.ndarray,
    sigs: np.ndarray | None,
    shingled: np.ndarray | None,
    threshold: float,
    verify: Verifier | None,
) -> tuple[np.ndarray, np.ndarray, int]:
    """Group pairs whose representatives are near duplicates, with their similarity."""
    empty = (np.empty((0, 2), dtype=np.int64), np.empty(0), 0)
    if sigs is None:
        return empty
    groups = np.arange(len(rep))
    if shingled is not None:
        groups = groups[shingled[rep]]
    if len(groups) < 2:
        return empty
    bands, rows = minhash.lsh_params(threshold, sigs.shape[1])
    local = minhash.candidate_pairs(minhash.band_keys(sigs[rep[groups]], bands, rows))
    pairs = groups[local]
    pairs = pairs[has_input[pairs[:, 0]] | has_input[pairs[:, 1]]]  # reference-only pairs do not matter
    records = rep[pairs]
    sims = verify(records) if verify is not None else minhash.estimate(sigs, records)
    close = sims >= threshold
    return pairs[close], sims[close], len(pairs)


def _components(n: int, edges: np.ndarray) -> np.ndarray:
    """Connected component of every node (union-find over ``edges``)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    graph = coo_matrix((np.ones(len(edges), dtype=np.int8), (edges[:, 0], edges[:, 1])), shape=(n, n))
    return connected_components(graph, directed=False)[1]


def _pair_similarity(
    lost: np.ndarray,
    won: np.ndarray,
    group: np.ndarray,
    n_groups: int,
    edges: np.ndarray,
    edge_sims: np.ndarray,
    sigs: np.ndarray | None,
) -> np.ndarray:
    """Similarity of each removed record to its survivor: the measured edge if the
    two were compared directly, else the MinHash estimate (a chain in the cluster)."""
    if sigs is None or not len(lost):
        return np.ones(len(lost))
    out = minhash.estimate(sigs, np.stack([lost, won], axis=1))
    if len(edges):
        codes = edges[:, 0] * n_groups + edges[:, 1]
        order = np.argsort(codes)
        a, b = group[lost], group[won]
        wanted = np.minimum(a, b) * n_groups + np.maximum(a, b)
        at = np.searchsorted(codes[order], wanted).clip(max=len(codes) - 1)
        direct = codes[order][at] == wanted
        out[direct] = edge_sims[order][at[direct]]
    return out


def check_threshold(threshold: float) -> None:
    """A Jaccard threshold must lie in (0, 1]."""
    if not 0.0 < threshold <= 1.0:
        raise ThresherError(f"--threshold must be in (0, 1], got {threshold}")


def duplicate_of(texts: Sequence[str], threshold: float = 0.8, ngram: int | None = None) -> list[int | None]:
    """For each text: None if it is kept, else the index of the earlier kept text it duplicates.

    Exact duplicates (after normalisation) and near duplicates (Jaccard of
    script-aware shingles >= ``threshold``, verified exactly) are both found;
    the first occurrence of each cluster is kept. ``ngram`` sets the shingle
    size for CJK characters and for words alike (default 3 and 5); short texts
    such as questions compare better with a smaller one (2 or 3).
    """
    check_threshold(threshold)
    shingler = Shingler.with_ngram(ngram)
    values, counts = shingler.hashes(texts)
    bounds = np.concatenate([[0], np.cumsum(counts)])
    sets: dict[int, np.ndarray] = {}

    def shingle_set(i: int) -> np.ndarray:
        if i not in sets:
            sets[i] = np.unique(values[bounds[i] : bounds[i + 1]])
        return sets[i]

    def verify(pairs: np.ndarray) -> np.ndarray:
        return np.array([minhash.jaccard(shingle_set(i), shingle_set(j)) for i, j in pairs.tolist()])

    verdict = find_duplicates(
        np.array([exact_key(t) for t in texts], dtype=np.uint64),
        np.arange(len(texts)),
        sigs=minhash.signatures(values, counts),
        shingled=counts > 0,
        threshold=threshold,
        verify=verify,
    )
    return [None if s < 0 else int(s) for s in verdict.survivor]
