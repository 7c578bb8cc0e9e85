"""The tasks of the partitioned dedup: pure functions over numpy tables, one piece or partition each.

``distributed.py`` wires them into a graph of Ray tasks; each task sees one
piece of the input or one partition of a shuffle, never the corpus, so a
worker's memory is bounded by its share. A table is a dict of equal-length
numpy arrays; a record's ``uid`` is its piece number (high 32 bits) and its
row in the piece, so uid order is input order.

The steps, each keyed so that whatever must meet lands in one partition:

1. ``piece_features``: per piece, ``passes.features`` (exact key, length,
   score, MinHash signature, content id) of every valid row, shuffled by
   exact key.
2. ``group_partition``: exact groups (``clusters.exact_groups``: groups in key
   order, the first record of each its representative); the band keys of
   each representative, shuffled by band key.
3. ``bucket_partition``: records sharing a (band, key) bucket, sorted by exact
   key, paired by ``minhash.bucket_pairs`` (star and chain), as the one-machine
   dedup pairs them; pairs shuffled by their first group.
4. ``pair_partition`` and ``estimate_partition`` / ``verify_partition``: unique
   pairs, measured by the MinHash estimate or by exact Jaccard of shingle sets
   recomputed from the pieces (``piece_sets``); the edges at or above the
   threshold.
5. ``cc_init`` / ``cc_step``: connected components of the edge graph by
   min-label propagation, each node owned by one partition.
6. ``assign_partition`` and ``component_partition``: records and edges
   shuffled by component; each partition of whole components is decided by
   ``clusters.decide``, the one-machine decision, so the kept set is the same.
7. ``write_piece``: per piece, every row to the output or the removed file.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from thresher.curate.dedup import clusters, minhash
from thresher.curate.dedup.passes import Settings, features, init_worker, route, shingle_sets
from thresher.curate.errors import ThresherError
from thresher.curate.io.shards import Piece, read_piece
from thresher.curate.stage import PieceResult, PieceStage, peak_memory_mb

if TYPE_CHECKING:
    from thresher.curate.io.parts import Parts

Table = dict[str, np.ndarray]
_LOW = np.int64(0xFFFFFFFF)


@dataclass(frozen=True)
class Context:
    """What every task needs to know about the run."""

    settings: Settings
    threshold: float
    partitions: int
    verify: bool
    input_pieces: int  # pieces numbered from here on are --against references
    paths: tuple[str, ...]  # each piece's file, for the survivor's "file:line"

    @property
    def near(self) -> bool:
        return not self.settings.exact_only

    def bands(self) -> tuple[int, int]:
        return minhash.lsh_params(self.threshold, self.settings.num_perm)


# ---------------------------------------------------------------- tables


def owner(keys: np.ndarray, n: int) -> np.ndarray:
    """The partition that owns each key (keys are 64-bit hashes: their remainder spreads evenly)."""
    return (keys.astype(np.uint64) % np.uint64(n)).astype(np.int64)


def take(table: Table, index: np.ndarray) -> Table:
    return {name: column[index] for name, column in table.items()}


def split(table: Table, dest: np.ndarray, n: int) -> list[Table]:
    """``table``'s rows grouped by ``dest`` into ``n`` tables (every one with every column)."""
    order = np.argsort(dest, kind="stable")
    bounds = np.searchsorted(dest[order], np.arange(n + 1))
    return [take(table, order[bounds[i] : bounds[i + 1]]) for i in range(n)]


def concat(tables: Sequence[Table]) -> Table:
    return {name: np.concatenate([t[name] for t in tables]) for name in tables[0]}


def _piece_of(uid: np.ndarray) -> np.ndarray:
    return uid >> 32


# ---------------------------------------------------------------- 1-2: features and exact groups


def piece_features(ctx: Context, piece: Piece) -> list[Any]:
    """Features of every valid row of one piece, split by exact key; last, the piece's rows and errors."""
    init_worker(ctx.settings)
    rows = list(read_piece(piece))
    feats = features([row.data for row in rows])
    local = np.flatnonzero(feats.valid)
    table: Table = {
        "uid": (np.int64(piece.index) << 32) + local,
        "key": feats.key[local],
        "ref": np.full(len(local), piece.index >= ctx.input_pieces),
        "shingled": feats.shingled[local],
        "length": feats.length[local],
        "score": feats.score[local],
        "line": np.array([rows[i].line for i in local], dtype=np.int64),
        "rid": feats.ids[local],
    }
    if ctx.near:
        table["sig"] = feats.sigs[local]  # type: ignore[index]
    info = {"rows": len(rows), "errors": feats.errors, "peak": peak_memory_mb()}
    return [*split(table, owner(table["key"], ctx.partitions), ctx.partitions), info]


def group_partition(ctx: Context, *parts: Table) -> list[Any]:
    """One key partition: its records (by uid) and exact groups; the representatives' band keys split by band key."""
    records = concat(parts)
    records = take(records, np.argsort(records["uid"]))
    group, rep = clusters.exact_groups(records["key"])
    state = {"records": records, "group": group, "rep": rep, "gkeys": records["key"][rep]}
    empty: Table = {"band": np.empty(0, np.int64), "bk": np.empty(0, np.uint64), "gkey": np.empty(0, np.uint64),
                    "input": np.empty(0, bool)}
    if not ctx.near or not len(rep):
        return [*[empty] * ctx.partitions, state]
    bands, rows = ctx.bands()
    has_input = np.bincount(group[~records["ref"]], minlength=len(rep)) > 0
    lsh = np.flatnonzero(records["shingled"][rep])  # groups whose representative has shingles
    keys = minhash.band_keys(records["sig"][rep[lsh]], bands, rows)
    table = {"band": np.tile(np.arange(bands), len(lsh)), "bk": keys.ravel(),
             "gkey": np.repeat(state["gkeys"][lsh], bands), "input": np.repeat(has_input[lsh], bands)}
    return [*split(table, owner(table["bk"], ctx.partitions), ctx.partitions), state]


# ---------------------------------------------------------------- 3-4: buckets, pairs, edges


def bucket_partition(ctx: Context, *parts: Table) -> list[Table]:
    """Candidate pairs (a, b), a < b by exact key, of the buckets in this partition, split by ``a``."""
    table = concat(parts)
    table = take(table, np.lexsort((table["gkey"], table["bk"], table["band"])))
    band, bk = table["band"], table["bk"]
    starts = np.r_[True, (band[1:] != band[:-1]) | (bk[1:] != bk[:-1])][: len(band)]
    at = minhash.bucket_pairs(starts, np.arange(len(band)))
    at = at[table["input"][at[:, 0]] | table["input"][at[:, 1]]]  # reference-only pairs do not matter
    pairs = {"a": table["gkey"][at[:, 0]], "b": table["gkey"][at[:, 1]]}
    return split(pairs, owner(pairs["a"], ctx.partitions), ctx.partitions)


def _rep(state: dict[str, Any], gkeys: np.ndarray) -> np.ndarray:
    """Row (in ``state["records"]``) of the representative of each group key owned by this partition."""
    return state["rep"][np.searchsorted(state["gkeys"], gkeys)]


def pair_partition(ctx: Context, state: dict[str, Any], *parts: Table) -> list[Any]:
    """Unique pairs whose ``a`` this partition owns, with a's representative, split by ``b``; last, how many."""
    pairs = concat(parts)
    codes = np.unique(np.stack([pairs["a"], pairs["b"]], axis=1), axis=0)
    rows = _rep(state, codes[:, 0])
    out = {"a": codes[:, 0], "b": codes[:, 1], "ua": state["records"]["uid"][rows]}
    if not ctx.verify:
        out["sa"] = state["records"]["sig"][rows]
    return [*split(out, owner(out["b"], ctx.partitions), ctx.partitions), len(codes)]


def _edges(pairs: Table, sims: np.ndarray, threshold: float) -> Table:
    close = sims >= threshold
    return {"a": pairs["a"][close], "b": pairs["b"][close], "sim": sims[close]}


def estimate_partition(ctx: Context, state: dict[str, Any], *parts: Table) -> Table:
    """Edges among the pairs whose ``b`` this partition owns, by the MinHash estimate (``--no-verify``)."""
    pairs = concat(parts)
    sb = state["records"]["sig"][_rep(state, pairs["b"])]
    return _edges(pairs, (pairs["sa"] == sb).mean(axis=1) if len(sb) else np.empty(0), ctx.threshold)


def pending_partition(ctx: Context, state: dict[str, Any], *parts: Table) -> list[Any]:
    """Pairs to verify (first), and the shingle sets they need, requested from each piece."""
    pairs = concat(parts)
    pairs["ub"] = state["records"]["uid"][_rep(state, pairs["b"])]
    wanted = np.unique(np.concatenate([pairs["ua"], pairs["ub"]]))
    return [pairs, *split({"uid": wanted}, _piece_of(wanted), len(ctx.paths))]


def piece_sets(ctx: Context, piece: Piece, *requests: Table) -> list[Any]:
    """Shingle sets of the rows of one piece that partitions asked for: one (uids, sets) per partition."""
    asked = [table["uid"] for table in requests]
    out: list[Any] = [([], []) for _ in range(ctx.partitions)]
    if not any(len(uids) for uids in asked):
        return out
    init_worker(ctx.settings)
    wanted = np.unique(np.concatenate(asked) & _LOW).tolist()
    needed = set(wanted)
    rows = [row.data for number, row in enumerate(read_piece(piece)) if number in needed]
    sets = dict(zip(wanted, shingle_sets(rows)))
    for partition, uids in enumerate(asked):
        out[partition] = (uids, [sets[int(uid & _LOW)] for uid in uids])
    return out


def verify_partition(ctx: Context, pending: Table, *found: tuple[np.ndarray, list[np.ndarray]]) -> Table:
    """Edges among this partition's pairs, by exact Jaccard of the recomputed shingle sets."""
    sets = {int(uid): values for uids, arrays in found for uid, values in zip(uids, arrays)}
    sims = np.array([minhash.jaccard(sets[int(i)], sets[int(j)]) for i, j in zip(pending["ua"], pending["ub"])])
    return _edges(pending, sims, ctx.threshold)


# ---------------------------------------------------------------- 5: connected components


def spread_edges(ctx: Context, edges: Table) -> list[Table]:
    """Both directions of every edge, each to the partition that owns its source node."""
    src = np.concatenate([edges["a"], edges["b"]])
    dst = np.concatenate([edges["b"], edges["a"]])
    return split({"src": src, "dst": dst}, owner(src, ctx.partitions), ctx.partitions)


def cc_init(ctx: Context, *parts: Table) -> dict[str, np.ndarray]:
    """This partition's nodes, each labelled with itself, and their edges; every node is to be announced."""
    adjacency = concat(parts)
    nodes = np.unique(adjacency["src"])
    return {"nodes": nodes, "label": nodes.copy(), "dirty": np.ones(len(nodes), bool),
            "src": np.searchsorted(nodes, adjacency["src"]), "dst": adjacency["dst"]}


def cc_step(ctx: Context, state: dict[str, np.ndarray], *messages: Table) -> list[Any]:
    """One round of min-label propagation: take the smallest label offered to each node; nodes whose
    label fell (or, first, every node) offer theirs to their neighbours. Last: how many offers were made."""
    state = {name: column.copy() for name, column in state.items()}
    offers = concat(messages) if messages else {"node": np.empty(0, np.uint64), "label": np.empty(0, np.uint64)}
    if len(offers["node"]):
        at = np.searchsorted(state["nodes"], offers["node"])
        best = state["label"].copy()
        np.minimum.at(best, at, offers["label"])
        state["dirty"] |= best < state["label"]
        state["label"] = best
    send = state["dirty"][state["src"]]
    out = {"node": state["dst"][send], "label": state["label"][state["src"][send]]}
    state["dirty"][:] = False
    return [*split(out, owner(out["node"], ctx.partitions), ctx.partitions), state, int(send.sum())]


# ---------------------------------------------------------------- 6-7: decide and write


def assign_partition(ctx: Context, state: dict[str, Any], components: dict[str, Any] | None,
                     edges: Table | None) -> list[Any]:
    """Records of groups with near edges and those edges, split by component; the other groups are whole
    components on their own and are decided here. Returns P record parts, P edge parts, the fates of the
    decided records split by piece, and the number of clusters they form."""
    records, gkeys = state["records"], state["records"]["key"]
    linked = np.zeros(len(gkeys), bool)
    comp = np.zeros(len(gkeys), np.uint64)
    edge_parts: list[Table] = [{"a": np.empty(0, np.uint64), "b": np.empty(0, np.uint64), "sim": np.empty(0),
                                "comp": np.empty(0, np.uint64)}] * ctx.partitions
    if components is not None and len(components["nodes"]):
        at = np.searchsorted(components["nodes"], gkeys).clip(max=len(components["nodes"]) - 1)
        linked = components["nodes"][at] == gkeys
        comp = components["label"][at]
        assert edges is not None
        edges = {**edges, "comp": components["label"][np.searchsorted(components["nodes"], edges["b"])]}
        edge_parts = split(edges, owner(edges["comp"], ctx.partitions), ctx.partitions)
    near = take(records, np.flatnonzero(linked))
    near["comp"] = comp[linked]
    fates, clustered = decide_records(ctx, take(records, np.flatnonzero(~linked)), None)
    return [*split(near, owner(near["comp"], ctx.partitions), ctx.partitions), *edge_parts,
            *split(fates, _piece_of(fates["uid"]), len(ctx.paths)), clustered]


def component_partition(ctx: Context, *parts: Table) -> list[Any]:
    """Decide this partition's whole components; fates split by piece, then the number of clusters."""
    half = len(parts) // 2
    records = concat(parts[:half])
    records.pop("comp")
    edges = concat(parts[half:])
    fates, clustered = decide_records(ctx, take(records, np.argsort(records["uid"])), edges)
    return [*split(fates, _piece_of(fates["uid"]), len(ctx.paths)), clustered]


def decide_records(ctx: Context, records: Table, edges: Table | None) -> tuple[Table, int]:
    """``clusters.decide`` on records (sorted by uid) that make whole components: the removed ones'
    survivor, kind and similarity, with the survivor's content id and line."""
    group, rep = clusters.exact_groups(records["key"])
    gkeys = records["key"][rep]
    if edges is not None and len(edges["a"]):
        pairs = np.stack([np.searchsorted(gkeys, edges["a"]), np.searchsorted(gkeys, edges["b"])], axis=1)
        order = np.lexsort((pairs[:, 1], pairs[:, 0]))
        pairs, sims = pairs[order], edges["sim"][order]
    else:
        pairs, sims = np.empty((0, 2), np.int64), np.empty(0)
    verdict = clusters.decide(group, ctx.settings.keep.rank(records["length"], records["score"]), records["ref"],
                              pairs, sims, records.get("sig"))
    lost = np.flatnonzero(verdict.survivor >= 0)
    won = verdict.survivor[lost]
    return {"uid": records["uid"][lost], "survivor": records["uid"][won], "kind": verdict.kind[lost],
            "sim": verdict.similarity[lost], "rid": records["rid"][won], "line": records["line"][won]}, verdict.clusters


def write_piece(ctx: Context, piece: Piece, parts: Parts | None, info: dict[str, Any], *fates: Table) -> PieceResult:
    """Every row of one input piece to the output or to the removed file."""
    found = concat(fates)
    by_row = {int(uid & _LOW): i for i, uid in enumerate(found["uid"])}
    duplicates: Counter[str] = Counter()
    with PieceStage("dedup", piece, parts) as out:
        for number, row in enumerate(read_piece(piece)):
            out.seen()
            duplicate = None
            if number in by_row:
                i = by_row[number]
                survivor = int(found["survivor"][i])
                kind = clusters.KIND_NAMES[int(found["kind"][i])]
                duplicate = (f"{int(found['rid'][i]):016x}", f"{ctx.paths[survivor >> 32]}:{int(found['line'][i])}",
                             kind, float(found["sim"][i]))
                duplicates[kind] += 1
                duplicates["against"] += survivor >> 32 >= ctx.input_pieces
            route(out, row, info["errors"].get(number), duplicate)
    if out.result.records_in != info["rows"]:
        raise ThresherError(f"{piece.path} changed while dedup was reading it; run it again")
    out.result.extra["duplicates"] = duplicates
    return out.result
