"""Histories of client operations and a checker for them (Jepsen's queue anomalies).

A History is an append-only log of events, one JSON object a line. Every operation
has a unique id and two events: `invoke`, then exactly one of `ok`, `fail` (a
definite failure: the server guarantees it did not execute the request) or
`unknown` (timeout, lost connection, or an error that does not rule out execution).

  produce  invoke: process, topic, partition, payloads [[payload_id, size], ...]
           ok: offset (the acknowledged base offset)   fail/unknown: code, msg
  read     invoke: process, stream, topic, partition, start (offset asked for)
           ok: records [[offset, payload_id or null, digest], ...] in arrival order

check(history, final_read) compares the history with a final full read of every
partition and returns a Result listing each anomaly with concrete examples.
README.md in this folder defines every anomaly.
"""
import hashlib
import json
import threading
import time

# gRPC status codes (grpc.StatusCode values) that guarantee the request was not
# executed: the server rejects the request before anything reaches storage.
# Everything else (UNAVAILABLE, RESOURCE_EXHAUSTED, DEADLINE_EXCEEDED, CANCELLED,
# INTERNAL, DATA_LOSS, UNKNOWN, ...) may come after the batch was written (an fsync
# error, the in-sync set shrinking, a drain, a lost connection): outcome unknown.
INVALID_ARGUMENT, NOT_FOUND, ALREADY_EXISTS, PERMISSION_DENIED = 3, 5, 6, 7
UNIMPLEMENTED, UNAUTHENTICATED = 12, 16
DEFINITE_FAILURES = frozenset({INVALID_ARGUMENT, NOT_FOUND, ALREADY_EXISTS, PERMISSION_DENIED,
                               UNIMPLEMENTED, UNAUTHENTICATED})


def status_number(code):
    """A grpc.StatusCode, an int, or None -> the int code (None stays None)."""
    if code is None or isinstance(code, int):
        return code
    return code.value[0]  # grpc.StatusCode.X.value == (number, "name")


# ---- payloads: every record value names its payload id and is checkable ----

def make_value(pid, size):
    """The record value for payload pid: b"<pid>|" then deterministic filler up to size bytes."""
    head = pid.encode() + b"|"
    seed = hashlib.sha256(pid.encode()).digest()
    need = max(0, size - len(head))
    filler = (seed * (need // len(seed) + 1))[:need]
    return head + filler


def parse_pid(value):
    """The payload id a value claims to carry, or None if it does not look like one."""
    head, sep, _ = bytes(value[:64]).partition(b"|")
    if not sep or not head.startswith(b"p"):
        return None
    try:
        return head.decode("ascii")
    except UnicodeDecodeError:
        return None


def digest(value):
    return hashlib.blake2b(bytes(value), digest_size=8).hexdigest()


# ---- the writer ----

class History:
    """Thread-safe, append-only; keeps events in memory and, with path, in a JSON-lines file."""

    def __init__(self, path=None):
        self.events = []
        self.path = path
        self._file = open(path, "a") if path else None
        self._lock = threading.Lock()
        self._next = 0

    def _emit(self, ev):
        ev["time"] = time.monotonic_ns()
        with self._lock:
            if ev["phase"] == "invoke":
                ev["id"] = self._next
                self._next += 1
            self.events.append(ev)
            if self._file:
                self._file.write(json.dumps(ev, separators=(",", ":")) + "\n")
        return ev.get("id")

    def invoke(self, process, type_, **fields):
        """Starts an operation; returns its id."""
        return self._emit(dict(fields, process=process, type=type_, phase="invoke"))

    def ok(self, op, **fields):
        self._emit(dict(fields, id=op, phase="ok"))

    def fail(self, op, code, msg=""):
        """A definite failure; code must be one of DEFINITE_FAILURES (see error())."""
        self._emit({"id": op, "phase": "fail", "code": status_number(code), "msg": msg})

    def unknown(self, op, code=None, msg=""):
        self._emit({"id": op, "phase": "unknown", "code": status_number(code), "msg": msg})

    def error(self, op, code, msg=""):
        """Ends op with an error: fail if the code guarantees non-execution, else unknown."""
        if status_number(code) in DEFINITE_FAILURES:
            self.fail(op, code, msg)
        else:
            self.unknown(op, code, msg)

    def read(self, process, stream, topic, partition, start, records):
        """One chunk of a read stream: records = [(offset, value bytes), ...] as received."""
        op = self.invoke(process, "read", stream=stream, topic=topic, partition=partition, start=start)
        self.ok(op, records=[[o, parse_pid(v), digest(v)] for o, v in records])
        return op

    def flush(self):
        with self._lock:
            if self._file:
                self._file.flush()

    def close(self):
        with self._lock:
            if self._file:
                self._file.close()
                self._file = None

    @staticmethod
    def load(path):
        h = History()
        with open(path) as f:
            h.events = [json.loads(line) for line in f if line.strip()]
        return h


# ---- the checker ----

ANOMALIES = (
    "lost",              # acknowledged payload missing from the final read
    "duplicated",        # one payload at two or more locations
    "conflicting",       # two different values at one (topic, partition, offset)
    "failed_visible",    # a definitely failed produce whose payload is visible
    "offset_mismatch",   # acknowledged at one location, found at another
    "nonmonotonic",      # a read stream went back or repeated an offset
    "skipped",           # a read stream jumped over offsets (or did not begin where asked)
    "byte_mismatch",     # value bytes differ from what was produced for that payload id
    "unexpected",        # a value no produce ever sent (unparseable or unknown payload id)
    "torn_batch",        # an unknown request's records visible only in part, or not consecutive
    "vanished_read",     # a read during the run saw an offset that the final read lacks
    "malformed",         # history itself broken: an op without exactly one completion
)


class Result:
    def __init__(self):
        self.anomalies = {a: [] for a in ANOMALIES}
        self.counts = {}

    @property
    def ok(self):
        return not any(self.anomalies.values())

    def add(self, kind, example):
        self.anomalies[kind].append(example)

    def format(self, limit=5):
        lines = ["history check: %s" % ("OK" if self.ok else "ANOMALIES FOUND")]
        lines.append("  " + ", ".join("%s=%s" % kv for kv in sorted(self.counts.items())))
        for kind in ANOMALIES:
            ex = self.anomalies[kind]
            if ex:
                lines.append("  %s: %d, e.g." % (kind, len(ex)))
                lines.extend("    %s" % (e,) for e in ex[:limit])
        return "\n".join(lines)

    def __str__(self):
        return self.format()


def _ops(events, res):
    """Pairs invoke events with their completion; returns {id: op dict}."""
    ops = {}
    for ev in events:
        if ev["phase"] == "invoke":
            ops[ev["id"]] = dict(ev, outcome=None)
            continue
        op = ops.get(ev["id"])
        if op is None or op["outcome"] is not None:
            res.add("malformed", "completion %s of op %s without a pending invoke" % (ev["phase"], ev["id"]))
            continue
        op["outcome"] = ev["phase"]
        op.update({k: v for k, v in ev.items() if k not in ("id", "phase", "time")})
        op["end_time"] = ev["time"]
    for op in ops.values():
        if op["outcome"] is None:  # still running when the history ended: not known
            op["outcome"] = "unknown"
        if op["outcome"] == "fail" and op.get("code") not in DEFINITE_FAILURES:
            op["outcome"] = "unknown"  # only the codes that rule out execution are failures
    return ops


def _normalize_final(final_read):
    """{(topic, partition): {offset: value} or [(offset, value), ...]} -> {key: [(offset, value)]}."""
    out = {}
    for key, recs in final_read.items():
        out[tuple(key)] = sorted(recs.items()) if isinstance(recs, dict) else list(recs)
    return out


def check(history, final_read, log_start=0):
    """history: a History, a list of events, or a JSON-lines path. final_read: see
    _normalize_final; every partition the history touched should be present. A
    partition's final read must begin at log_start (0: nothing was deleted)."""
    if isinstance(history, str):
        history = History.load(history)
    events = history.events if isinstance(history, History) else history
    res = Result()
    ops = _ops(events, res)
    final = _normalize_final(final_read)
    produces = [op for op in ops.values() if op["type"] == "produce"]
    reads = sorted((op for op in ops.values() if op["type"] == "read" and op["outcome"] == "ok"),
                   key=lambda op: op["id"])

    sent = {}  # pid -> (op, index in the request, size)
    for op in produces:
        for i, (pid, size) in enumerate(op["payloads"]):
            sent[pid] = (op, i, size)

    # Every observation: (topic, partition, offset, pid, digest, source).
    seen = []
    final_at = {}  # (topic, partition, offset) -> digest
    for key, recs in final.items():
        start = log_start
        prev = None
        for off, value in recs:
            d = digest(value)
            pid = parse_pid(value)
            seen.append((key[0], key[1], off, pid, d, "final"))
            final_at[(key[0], key[1], off)] = d
            expect = start if prev is None else prev + 1
            if off != expect:
                res.add("nonmonotonic" if prev is not None and off <= prev else "skipped",
                        "final read of %s/%s: offset %d where %d was due" % (key[0], key[1], off, expect))
            prev = off
    last = {}  # read stream -> last offset it delivered
    for op in reads:
        key = (op["stream"], op["topic"], op["partition"])
        for off, pid, d in op["records"]:
            seen.append((op["topic"], op["partition"], off, pid, d, "read op %d" % op["id"]))
            expect = last[key] + 1 if key in last else op["start"]
            if off != expect:
                kind = "nonmonotonic" if key in last and off <= last[key] else "skipped"
                res.add(kind, "stream %s of %s/%s (read op %d): offset %d where %d was due"
                        % (op["stream"], op["topic"], op["partition"], op["id"], off, expect))
            last[key] = off if key not in last else max(last[key], off)

    # Values per location and locations per payload.
    at = {}      # (topic, partition, offset) -> {digest: first source}
    where = {}   # pid -> {(topic, partition, offset)}
    expected_digest = {}  # pid -> digest of the value produced
    strangers = set()
    for topic, part, off, pid, d, src in seen:
        loc = (topic, part, off)
        at.setdefault(loc, {}).setdefault(d, src)
        if pid is None or pid not in sent:
            if (loc, d) not in strangers:
                strangers.add((loc, d))
                res.add("unexpected", "%s/%s@%d (%s): value of payload %r that nobody produced"
                        % (topic, part, off, src, pid))
            continue
        where.setdefault(pid, set()).add(loc)
        if pid not in expected_digest:
            expected_digest[pid] = digest(make_value(pid, sent[pid][2]))
        if d != expected_digest[pid]:
            res.add("byte_mismatch", "%s/%s@%d (%s): bytes of %s differ from what was produced"
                    % (topic, part, off, src, pid))
    for loc, values in sorted(at.items()):
        if len(values) > 1:
            res.add("conflicting", "%s/%s@%d holds %d values: %s" % (loc + (len(values), sorted(values.values()))))
    for loc in sorted(at):
        if loc not in final_at and (loc[0], loc[1]) in final:
            res.add("vanished_read", "%s/%s@%d was read (%s) but is not in the final read"
                    % (loc + (next(iter(at[loc].values())),)))
    for pid, locs in sorted(where.items()):
        if len(locs) > 1:
            res.add("duplicated", "%s at %s" % (pid, sorted(locs)))

    # Produce outcomes against what is visible.
    final_where = {}
    for topic, part, off, pid, d, src in seen:
        if src == "final" and pid in sent:
            final_where.setdefault(pid, set()).add((topic, part, off))
    n = {"ok": 0, "fail": 0, "unknown": 0}
    records = {"acked_records": 0, "unknown_records": 0, "unknown_visible": 0, "failed_records": 0}
    for op in produces:
        n[op["outcome"]] += 1
        pids = [p for p, _ in op["payloads"]]
        vis = [sorted(final_where.get(p, ())) for p in pids]
        if op["outcome"] == "ok":
            records["acked_records"] += len(pids)
            for i, pid in enumerate(pids):
                want = (op["topic"], op["partition"], op["offset"] + i)
                if not vis[i]:
                    res.add("lost", "%s acknowledged at %s/%s@%d (op %d) is missing" % ((pid,) + want + (op["id"],)))
                for loc in where.get(pid, ()):
                    if loc != want:
                        res.add("offset_mismatch", "%s acknowledged at %s/%s@%d, found at %s/%s@%d"
                                % ((pid,) + want + loc))
        elif op["outcome"] == "fail":
            records["failed_records"] += len(pids)
            for pid in pids:
                if pid in where:
                    res.add("failed_visible", "%s of op %d (failed: code %s) visible at %s"
                            % (pid, op["id"], op.get("code"), sorted(where[pid])))
        else:
            records["unknown_records"] += len(pids)
            records["unknown_visible"] += sum(1 for v in vis if v)
        present = [v[0] for v in vis if v]
        if op["outcome"] == "unknown" and present and (len(present) != len(pids) or any(
                present[i][:2] != present[0][:2] or present[i][2] != present[0][2] + i for i in range(len(present)))):
            res.add("torn_batch", "op %d (%s, %d records): %d visible, at %s..%s"
                    % (op["id"], op["outcome"], len(pids), len(present), present[0], present[-1]))
    res.counts = dict(produce_ok=n["ok"], produce_fail=n["fail"], produce_unknown=n["unknown"],
                      reads=len(reads), read_records=sum(len(op["records"]) for op in reads),
                      final_records=sum(len(r) for r in final.values()), **records)
    return res
