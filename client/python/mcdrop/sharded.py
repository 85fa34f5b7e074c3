"""One request's Monte-Carlo passes spread over several mcdrop servers.

The masks of pass t of row b depend on (seed, b, t, layer, unit) alone, so the
passes [0, T) of a request can be cut into ranges computed anywhere. Each
server runs one range (PredictRequest.sample_range) and returns its
statistics (PredictResponse.pass_statistics); this module merges them, in
the order core/pass_stats.h fixes, into the answer one server running all T
passes gives: the same bits, for the same seed (plain IEEE double arithmetic,
as the C++ code is compiled without fused multiply-adds).

    from mcdrop.sharded import ShardedClient
    fleet = ShardedClient(["10.0.0.1:50051", "10.0.0.2:50051"])
    p = fleet.predict(x, model="concrete", samples=1_000_000, seed=7)
    p.mean, p.std, fleet.report   # a Prediction, and what each range did
"""
import math
import random
import time
from concurrent.futures import ThreadPoolExecutor

import grpc
import numpy as np

from mcdrop.client import Client, Prediction
from mcdrop.v1 import inference_pb2

LEAF = 256  # passes per leaf: ranges split at multiples of it

RETRYABLE = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED,
             grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.ABORTED,
             grpc.StatusCode.CANCELLED, grpc.StatusCode.UNKNOWN,
             grpc.StatusCode.INTERNAL}


def split_passes(samples, ranges):
    """The ends of `ranges` ranges of `samples` passes, as equal as multiples
    of LEAF allow (fewer when there are fewer leaves); the last is samples."""
    leaves = (samples + LEAF - 1) // LEAF
    n = max(1, min(ranges, leaves))
    return [min(samples, leaves * i // n * LEAF) for i in range(1, n + 1)]


class _Block:
    __slots__ = ("level", "index", "passes", "mean", "m2", "sum_p", "sum_p2", "sum_entropy")

    def __init__(self, level, index, passes, mean=(), m2=(), sum_p=(), sum_p2=(), sum_entropy=()):
        self.level, self.index, self.passes = level, index, passes
        self.mean, self.m2 = list(mean), list(m2)
        self.sum_p, self.sum_p2, self.sum_entropy = list(sum_p), list(sum_p2), list(sum_entropy)


def _combine(a, b):
    """The statistics of a's passes followed by b's (core/pass_stats.cc,
    Combine: the same operations in the same order)."""
    c = _Block(a.level, a.index, a.passes + b.passes)
    if a.mean:
        na, nb = float(a.passes), float(b.passes)
        n = na + nb
        wb = nb / n
        wab = na * nb / n
        for ma, mb, m2a, m2b in zip(a.mean, b.mean, a.m2, b.m2):
            delta = mb - ma
            c.mean.append(ma + delta * wb)
            c.m2.append(m2a + m2b + delta * delta * wab)
    c.sum_p = [x + y for x, y in zip(a.sum_p, b.sum_p)]
    c.sum_p2 = [x + y for x, y in zip(a.sum_p2, b.sum_p2)]
    c.sum_entropy = [x + y for x, y in zip(a.sum_entropy, b.sum_entropy)]
    return c


def _push(blocks, block):
    blocks.append(block)
    while len(blocks) >= 2:
        left, right = blocks[-2], blocks[-1]
        if not (left.level == right.level and left.index % 2 == 0 and right.index == left.index + 1):
            break
        parent = _combine(left, right)
        parent.level, parent.index = left.level + 1, left.index // 2
        blocks[-2:] = [parent]


def _canonical(first, passes):
    """(level, index, passes) of the maximal blocks of [first, first + passes)
    (core/pass_stats.cc, CanonicalBlocks)."""
    out, end = [], first + passes
    closed_end = end if end % LEAF == 0 else end // LEAF * LEAF
    leaf = first // LEAF
    while leaf < closed_end // LEAF:
        level = 0
        while leaf % (2 << level) == 0 and leaf + (2 << level) <= closed_end // LEAF:
            level += 1
        out.append((level, leaf >> level,
                    min((leaf + (1 << level)) * LEAF, closed_end) - max(leaf * LEAF, first)))
        leaf += 1 << level
    if end % LEAF:
        out.append((0, end // LEAF, end - max(end // LEAF * LEAF, first)))
    return out


def _check_range(i, stats, begin, end, task, rows, outputs, last):
    """Raises ValueError unless `stats` is the well-formed range [begin, end)."""
    def bad(why):
        raise ValueError(f"range {i} [{begin}, {end}): {why}")
    if stats.leaf_passes != LEAF:
        bad(f"leaves of {stats.leaf_passes} passes; this client merges leaves of {LEAF}")
    if (stats.begin, stats.end) != (begin, end):
        bad(f"it holds passes [{stats.begin}, {stats.end})")
    if (stats.rows, stats.outputs) != (rows, outputs):
        bad(f"{stats.rows} rows x {stats.outputs} outputs, not {rows} x {outputs}")
    if not last and end % LEAF:
        bad(f"it ends inside a leaf of {LEAF} passes")
    shape = [(b.level, b.index, b.passes) for b in stats.blocks]
    if shape != _canonical(begin, end - begin):
        bad("its blocks are not its range's")
    cells = rows * outputs
    for b in stats.blocks:
        sizes = ((len(b.mean), len(b.m2), len(b.sum_p), len(b.sum_p2), len(b.sum_entropy)))
        want = (cells, cells, 0, 0, 0) if task == "regression" else (0, 0, cells, cells, rows)
        if sizes != want:
            bad(f"block (level {b.level}, index {b.index}) holds values of sizes {sizes}, not {want}")
    if task == "classification":
        votes = list(stats.votes)
        rows_votes = [votes[r * outputs:(r + 1) * outputs] for r in range(rows)]
        if len(votes) != cells or any(min(v) < 0 or sum(v) != end - begin for v in rows_votes):
            bad("its votes do not add up to its passes row by row")
    elif stats.votes:
        bad("votes belong to classification")


def merge_ranges(request, responses):
    """The PredictResponse one server gives to `request` (a PredictRequest
    with samples and seed), from its ranges' answers in range order. Raises
    ValueError if they do not fit together."""
    first = responses[0]
    if not first.HasField("pass_statistics"):
        raise ValueError("range 0: the answer carries no pass statistics")
    task = inference_pb2.Task.Name(first.task).lower()
    st0 = first.pass_statistics
    rows, outputs, T = st0.rows, st0.outputs, request.samples
    shape = list(request.shape)
    want_rows = 1 if len(shape) in (1, 3) else (shape[0] if shape else 0)
    if rows != want_rows or outputs < 1:
        raise ValueError(f"range 0: {rows} rows x {outputs} outputs; the request has {want_rows} rows")
    blocks, votes, begin = [], [0] * (rows * outputs), 0
    out = inference_pb2.PredictResponse()
    for i, r in enumerate(responses):
        if not r.HasField("pass_statistics"):
            raise ValueError(f"range {i}: the answer carries no pass statistics")
        s = r.pass_statistics
        if (r.model, r.version, r.task, r.seed, s.noise_variance) != (
                first.model, first.version, first.task, first.seed, st0.noise_variance):
            raise ValueError(f"range {i}: answered by {r.model} version {r.version} (seed {r.seed}); "
                             f"range 0 by {first.model} version {first.version} (seed {first.seed})")
        if not begin < s.end <= T:
            raise ValueError(f"range {i}: it holds passes [{s.begin}, {s.end}), "
                             f"not a range from {begin} within T = {T}")
        _check_range(i, s, begin, s.end, task, rows, outputs, i + 1 == len(responses))
        for b in s.blocks:
            _push(blocks, _Block(b.level, b.index, b.passes, b.mean, b.m2, b.sum_p, b.sum_p2,
                                 b.sum_entropy))
        votes = [v + w for v, w in zip(votes, s.votes)] if task == "classification" else votes
        begin = s.end
        out.sample_values.extend(r.sample_values)
    if begin != T:
        raise ValueError(f"the ranges end at pass {begin}, not at T = {T}")
    total = blocks[-1]
    for b in reversed(blocks[:-1]):
        total = _combine(b, total)
    _fill_rows(out, total, votes, task, rows, outputs, st0.noise_variance)
    out.model, out.version, out.task, out.seed = first.model, first.version, first.task, first.seed
    out.samples, out.final, out.row_passes = T, True, rows * T
    out.queue_seconds = max(r.queue_seconds for r in responses)
    out.compute_seconds = sum(r.compute_seconds for r in responses)
    if request.return_samples:
        out.sample_shape.extend([T, rows, outputs])
    else:
        del out.sample_values[:]
    return out


def _fill_rows(out, total, votes, task, rows, outputs, noise):
    """The rows' figures (core/pass_stats.cc, Figures; server/request.cc)."""
    T = float(total.passes)
    for r in range(rows):
        row = out.rows.add(samples=total.passes)
        at = r * outputs
        if task == "regression":
            for d in range(outputs):
                mv = total.m2[at + d] / T
                var = mv + noise
                row.outputs.add(mean=total.mean[at + d], variance=var, std=math.sqrt(var),
                                model_variance=mv,
                                standard_error=math.sqrt(mv / (T - 1.0)) if total.passes >= 2 else 0.0)
            continue
        se = []
        c = row.classification
        h, best, modal, probs = 0.0, 0, 0, []
        for d in range(outputs):
            p = total.sum_p[at + d] / T
            probs.append(p)
            mv = max(0.0, total.sum_p2[at + d] / T - p * p)
            se.append(math.sqrt(mv / (T - 1.0)) if total.passes >= 2 else 0.0)
            if p > 0.0:
                h -= p * math.log(p)
            if p > probs[best]:
                best = d
            modal = max(modal, votes[at + d])
        ee = total.sum_entropy[r] / T
        c.probabilities.extend(probs)
        c.predicted_class, c.entropy = best, h
        c.mutual_information = max(0.0, h - ee)
        c.variation_ratio = 1.0 - modal / T
        c.standard_errors.extend(se)


class ShardedClient:
    """Spreads a request's passes over `targets` (one server address each).
    A range whose call fails for a reason another replica may not have goes
    to the next replica, up to max_attempts calls; `report` then lists, per
    range, {begin, end, replica, attempts, seconds, errors}, and `response`
    is the last merged PredictResponse (so one ShardedClient serves one
    thread at a time). By default T is cut into one range per replica, or
    more when a range would exceed max_range_passes (the servers'
    --max_samples, 100,000 unless set)."""

    def __init__(self, targets, max_attempts=3, max_range_passes=100000, **client_options):
        if not targets:
            raise ValueError("give at least one replica")
        self.replicas = [Client(t, **client_options) for t in targets]
        self.max_attempts = max_attempts
        self.max_range_passes = max_range_passes  # the servers' --max_samples
        self.report = []

    def close(self):
        for c in self.replicas:
            c.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def predict(self, x, model="", version=0, samples=1000, seed=0, include_noise=True,
                return_samples=False, ranges=0, ends=None):
        """As Client.predict with a fixed T (samples) and no intervals or sets:
        the answer one server gives for the seed (0: one drawn here, the same
        for every range). ranges: how many (0: see the class); ends: the
        ranges' ends instead (multiples of 256 ascending, the last T)."""
        x = np.asarray(x, dtype=np.float32)
        if x.ndim in (1, 3):
            x = x[None]
        if samples < 1:
            raise ValueError("a request spread over servers states T (samples >= 1)")
        if not ranges:
            ranges = max(len(self.replicas), -(-samples // self.max_range_passes))
        ends = list(ends) if ends else split_passes(samples, ranges)
        for i, e in enumerate(ends):
            last = i + 1 == len(ends)
            if e <= (ends[i - 1] if i else 0) or (e != samples if last else e % LEAF):
                raise ValueError(f"range ends {ends}: ascending multiples of {LEAF}, the last T = {samples}")
        req = inference_pb2.PredictRequest(
            model=model, version=version, shape=list(x.shape), inputs=x.ravel().tolist(),
            samples=samples, seed=seed or random.getrandbits(63) + 1,
            return_samples=return_samples, exclude_noise=not include_noise)
        starts = [0] + ends[:-1]
        answers = [None] * len(ends)
        self.report = [None] * len(ends)

        def run(i, first):
            answers[i] = self._range(req, starts[i], ends[i], first, i)

        self._all(run, range(len(ends)), lambda i: i % len(self.replicas))
        mismatched = [i for i, a in enumerate(answers)
                      if (a.model, a.version) != (answers[0].model, answers[0].version)]
        if mismatched:  # a rolling update: pin range 0's version
            req.model, req.version = answers[0].model, answers[0].version
            holder = self.report[0]["replica"]
            self._all(run, mismatched, lambda i: holder)
        self.response = merge_ranges(req, answers)  # the PredictResponse
        return Prediction(self.response)

    def _all(self, run, which, first):
        which = list(which)
        with ThreadPoolExecutor(max_workers=max(1, min(64, len(which)))) as pool:
            list(pool.map(lambda i: run(i, first(i)), which))
        failed = [r for r in (self.report[i] for i in which) if r["replica"] < 0]
        if failed:
            raise RuntimeError(f"passes [{failed[0]['begin']}, {failed[0]['end']}): "
                               f"{failed[0]['attempts']} call(s) failed: {failed[0]['errors']}")

    def _range(self, req, begin, end, first, i):
        r = inference_pb2.PredictRequest()
        r.CopyFrom(req)
        r.sample_range.begin, r.sample_range.end = begin, end
        rep = self.report[i] or {"begin": begin, "end": end, "replica": -1, "attempts": 0,
                                 "seconds": 0.0, "errors": []}
        self.report[i] = rep
        start = time.monotonic()
        for a in range(max(1, self.max_attempts)):
            k = (first + a) % len(self.replicas)
            c = self.replicas[k]
            rep["attempts"] += 1
            try:
                answer = c._stub.Predict(r, timeout=c._timeout, metadata=c._metadata)
            except grpc.RpcError as e:
                rep["errors"].append(f"replica {k}: {e.code().name}: {e.details()}")
                if e.code() not in RETRYABLE:
                    break
                continue
            rep["replica"], rep["seconds"] = k, time.monotonic() - start
            return answer
        rep["replica"] = -1
        return None
