"""Curation: a person's corrections to a finished run, kept as an append-only edit log.

    <run>/curation.jsonl     one edit per line: name, merge, split, move, flag, undo, redo
    <run>/.curation.lock     held while an edit is checked and appended

The model's assignments.csv is never rewritten: the curated labelling is the replay of the
log over it. An edit is checked against the state it applies to and appended under the lock
(one write, then fsync), so two writers (two browser tabs, the app and the command line) lose
no edit. Undo and redo are entries too: undo takes back the latest edit still in effect, redo
the latest undone one, and any other edit ends what can be redone. A split stores its parts and
every edit that makes clusters stores their ids (never reused), so replay needs no model, no
randomness and gives the same state on every machine. The first line records the model's
clusters it was made on; a log over other assignments (a retrained run) is refused, not
replayed.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field

import numpy as np

from ..errors import RunError
from .clock import iso
from .files import disk_full, no_space
from .locks import file_lock, is_locked
from .runs import ACTIVE, LOCK_NAME, Run

LOG_NAME = "curation.jsonl"
LOCK = ".curation.lock"
FLAGS = ("outlier", "unsure", "verified")
EDITS = ("name", "merge", "split", "move", "flag")


class CurationError(RunError):
    """An edit that cannot apply (an unknown cluster or image, a bad flag); nothing was written."""


@dataclass
class Curated:
    """The curated state of a run: the model's cluster per image, the curated one, flags, names."""
    raw: np.ndarray                     # int64, the model's cluster of each image
    cluster: np.ndarray                 # int64, the curated cluster of each image
    flag: np.ndarray                    # object, "" or one of FLAGS
    names: dict[int, str]
    known: set[int]                     # cluster ids that exist (the model's K, and those splits made)
    history: list[dict] = field(default_factory=list)   # every entry, each with "in_effect"
    done: list[int] = field(default_factory=list)       # seq of edits in effect, oldest first
    undone: list[int] = field(default_factory=list)     # seq of edits redo would bring back, next last

    @property
    def edited(self) -> np.ndarray:
        """Images whose curated cluster differs from the model's or that carry a flag."""
        return (self.cluster != self.raw) | (self.flag != "")

    def size(self, cluster: int) -> int:
        return int((self.cluster == cluster).sum())

    def name_of(self, cluster: int) -> str:
        return self.names.get(int(cluster), "")

    def clusters(self) -> list[int]:
        """Every known cluster id, ascending (empty ones included)."""
        return sorted(self.known)


@dataclass
class SplitPreview:
    """The parts a split would make: parts[j] the image indices going to into[j] (into[0] is the
    cluster itself)."""
    cluster: int
    parts: list[np.ndarray]
    into: list[int]

    @property
    def sizes(self) -> list[int]:
        return [len(p) for p in self.parts]


class Curation:
    """The edit log of one run: read its state, append edits."""

    def __init__(self, run: Run) -> None:
        self.run = run
        self.path = run.file(LOG_NAME)

    # -- reading --------------------------------------------------------------------------------
    def entries(self) -> list[dict]:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        out = []
        for line in text.splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue    # a line cut short by a crash: never acknowledged, so no edit is lost
        return out

    def state(self, raw: np.ndarray | None = None) -> Curated:
        """The curated state (`raw`: the model's clusters, when the caller has read them already)."""
        raw = self.run.assignments()["cluster"].to_numpy(np.int64) if raw is None else np.asarray(raw, np.int64)
        return replay(self.entries(), raw, self._n_clusters(raw), _fingerprint(raw))

    def unedited(self, raw: np.ndarray) -> Curated:
        """The model's labelling as a state with no edits (where the log cannot be read)."""
        raw = np.asarray(raw, np.int64)
        return replay([], raw, self._n_clusters(raw))

    def _n_clusters(self, raw: np.ndarray) -> int:
        k = (self.run.config.get("train") or {}).get("n_clusters")
        return max(int(k or 0), int(raw.max()) + 1 if len(raw) else 0)

    # -- edits ----------------------------------------------------------------------------------
    def name(self, cluster: int, name: str) -> dict:
        return self._append({"op": "name", "cluster": int(cluster), "name": str(name).strip()})

    def merge(self, clusters: list[int]) -> dict:
        return self._append({"op": "merge", "clusters": [int(c) for c in clusters]})

    def move(self, ids, to: int) -> dict:
        return self._append({"op": "move", "ids": _ids(ids), "to": int(to)})

    def flag(self, ids, flag: str) -> dict:
        return self._append({"op": "flag", "ids": _ids(ids), "flag": "" if flag in ("none", "", None) else flag})

    def undo(self) -> dict:
        return self._append({"op": "undo"})

    def redo(self) -> dict:
        return self._append({"op": "redo"})

    def preview_split(self, cluster: int, k: int, state: Curated | None = None) -> SplitPreview:
        """k-means (seeded) on the latents of the cluster's members: what split() would apply."""
        state = state or self.state()
        cluster, k = int(cluster), int(k)
        _check_cluster(state, cluster)
        members = np.flatnonzero(state.cluster == cluster)
        if not 2 <= k <= len(members):
            raise CurationError(f"cluster {cluster} has {len(members)} images: it can be split into 2 to "
                                f"{len(members)} parts, not {k}")
        from sklearn.cluster import KMeans

        latents = np.asarray(self.run.latents()[members], dtype=np.float64)
        parts = KMeans(n_clusters=k, n_init=4, random_state=0).fit_predict(latents)
        order = sorted(range(k), key=lambda j: -int((parts == j).sum()))   # the biggest part keeps the id
        nxt = _next_id(state)
        return SplitPreview(cluster, [members[parts == j] for j in order], [cluster] + list(range(nxt, nxt + k - 1)))

    def split(self, cluster: int, k: int, preview: SplitPreview | None = None) -> dict:
        """Split a cluster into k parts (the preview's parts when given, as shown to the user)."""
        preview = preview or self.preview_split(cluster, k)
        return self._append({"op": "split", "cluster": int(preview.cluster),
                             "parts": [p.tolist() for p in preview.parts]})

    def _append(self, edit: dict) -> dict:
        """Check `edit` against the latest state and append it, under the lock; returns the entry."""
        with file_lock(self.run.file(LOCK), timeout=30):
            self.check_editable()
            raw = self.run.assignments()["cluster"].to_numpy(np.int64)
            entries = self.entries()
            state = replay(entries, raw, self._n_clusters(raw), _fingerprint(raw))
            lines = []
            if not entries:
                lines.append({"op": "base", "seq": 0, "n_images": len(raw), "clusters": _fingerprint(raw),
                              "n_clusters": self._n_clusters(raw), "time": iso()})
            entry = {**edit, "seq": (entries[-1]["seq"] + 1) if entries else 1, "time": iso()}
            _validate(entry, state)
            lines.append(entry)
            self._write("".join(json.dumps(e) + "\n" for e in lines))
            return entry

    def _write(self, text: str) -> None:
        try:
            with open(self.path, "a+b") as handle:
                handle.seek(0, os.SEEK_END)
                if handle.tell():           # a line left unfinished by a crash stays a line of its own
                    handle.seek(-1, os.SEEK_END)
                    if handle.read(1) != b"\n":
                        text = "\n" + text
                handle.write(text.encode("utf-8"))
                handle.flush()
                os.fsync(handle.fileno())
        except OSError as exc:
            if no_space(exc):
                raise disk_full(self.path) from None
            raise

    def check_editable(self) -> None:
        """Raise RunError unless the run has finished training (and is not being trained again)."""
        state = self.run.state
        if state in ACTIVE or is_locked(self.run.file(LOCK_NAME)):
            raise RunError(f"run {self.run.id} is being trained ({state}); it can be curated when training ends")
        if not self.run.file("assignments.csv").is_file():
            raise RunError(f"run {self.run.id} has no clusters to curate ({state}); it needs to finish training")


# -- replay ---------------------------------------------------------------------------------------

def replay(entries: list[dict], raw: np.ndarray, n_clusters: int, fingerprint: str | None = None) -> Curated:
    """The curated state: the edits in effect (after undo and redo) applied over `raw` in order."""
    base = next((e for e in entries if e.get("op") == "base"), None)
    if base is not None and fingerprint is not None and base.get("clusters") != fingerprint:
        raise RunError("the curation log was made on other clusters than this run's assignments "
                       f"(the run was trained again?); move {LOG_NAME} aside to start curating afresh")
    edits = {e["seq"]: e for e in entries if e.get("op") in EDITS}
    done: list[int] = []
    undone: list[int] = []
    for e in entries:
        op = e.get("op")
        if op in EDITS:
            done.append(e["seq"])
            undone.clear()
        elif op == "undo" and done:
            undone.append(done.pop())
        elif op == "redo" and undone:
            done.append(undone.pop())
    state = Curated(raw=raw, cluster=raw.copy(), flag=np.full(len(raw), "", dtype=object), names={},
                    known=set(range(n_clusters)) | set(np.unique(raw).tolist()), done=done, undone=undone)
    for seq in done:
        _apply(edits[seq], state)
    in_effect = set(done)
    state.history = [{**e, "in_effect": e.get("seq") in in_effect} for e in entries if e.get("op") != "base"]
    return state


def _apply(e: dict, s: Curated) -> None:
    op = e["op"]
    if op == "name":
        if e["name"]:
            s.names[e["cluster"]] = e["name"]
        else:
            s.names.pop(e["cluster"], None)
    elif op == "merge":
        into, *others = e["clusters"]
        s.cluster[np.isin(s.cluster, others)] = into
    elif op == "move":
        s.cluster[np.asarray(e["ids"], dtype=np.int64)] = e["to"]
    elif op == "flag":
        s.flag[np.asarray(e["ids"], dtype=np.int64)] = e["flag"]
    elif op == "split":
        into = e["into"]
        for j, part in enumerate(e["parts"][1:], start=1):
            part = np.asarray(part, dtype=np.int64)
            s.cluster[part[s.cluster[part] == e["cluster"]]] = into[j]
        s.known.update(into)


def _validate(e: dict, s: Curated) -> None:
    """Raise CurationError unless the edit applies to state `s`; completes what replay needs."""
    op, n = e["op"], len(s.raw)
    if op == "name":
        _check_cluster(s, e["cluster"])
    elif op == "merge":
        if len(set(e["clusters"])) < 2:
            raise CurationError("merge needs at least two different clusters")
        for c in e["clusters"]:
            _check_cluster(s, c)
    elif op in ("move", "flag"):
        if not e["ids"]:
            raise CurationError("no images given")
        bad = [i for i in e["ids"] if not 0 <= i < n]
        if bad:
            raise CurationError(f"no image {bad[0]} in this run (its images are 0 to {n - 1})")
        if op == "move":
            _check_cluster(s, e["to"])
        elif e["flag"] not in ("", *FLAGS):
            raise CurationError(f"unknown flag {e['flag']!r}; one of: {', '.join(FLAGS)}, none")
    elif op == "split":
        _check_cluster(s, e["cluster"])
        if len(e["parts"]) < 2:
            raise CurationError("a split needs at least two parts")
        if any(not 0 <= i < n for part in e["parts"] for i in part):
            raise CurationError(f"a split's parts must be images 0 to {n - 1}")
        nxt = _next_id(s)
        e["into"] = [e["cluster"]] + list(range(nxt, nxt + len(e["parts"]) - 1))
    elif op == "undo" and not s.done:
        raise CurationError("nothing to undo")
    elif op == "redo" and not s.undone:
        raise CurationError("nothing to redo")
    if op in ("undo", "redo"):
        e["target"] = (s.done if op == "undo" else s.undone)[-1]


def _check_cluster(s: Curated, cluster: int) -> None:
    if int(cluster) not in s.known:
        raise CurationError(f"no cluster {cluster} in this run (its clusters are {_ranges(s.clusters())})")


def _next_id(s: Curated) -> int:
    """A cluster id never used in this log (ids made by an undone split are not reused either)."""
    made = [c for e in s.history for c in e.get("into", [])]
    return max([*s.known, *made]) + 1


def _ids(ids) -> list[int]:
    try:
        return sorted({int(i) for i in np.asarray(ids).ravel().tolist()})
    except (TypeError, ValueError):
        raise CurationError(f"image ids must be whole numbers, got {ids!r}") from None


def _fingerprint(raw: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(raw, dtype="<i8").tobytes()).hexdigest()[:16]


def _ranges(values: list[int]) -> str:
    if not values:
        return "none"
    out, start, prev = [], values[0], values[0]
    for v in [*values[1:], None]:
        if v is not None and v == prev + 1:
            prev = v
            continue
        out.append(str(start) if start == prev else f"{start}-{prev}")
        if v is not None:
            start = prev = v
    return ", ".join(out)


def describe(e: dict) -> str:
    """One line for an entry of the history."""
    op = e.get("op")
    if op == "name":
        if not e["name"]:
            return f"cleared the name of cluster {e['cluster']}"
        return f"named cluster {e['cluster']} {e['name']!r}"
    if op == "merge":
        return f"merged clusters {', '.join(map(str, e['clusters'][1:]))} into {e['clusters'][0]}"
    if op == "split":
        return f"split cluster {e['cluster']} into {', '.join(map(str, e.get('into', [])))} " \
               f"({' + '.join(str(len(p)) for p in e['parts'])} images)"
    if op == "move":
        return f"moved {_count(e['ids'])} to cluster {e['to']}"
    if op == "flag":
        return f"flagged {_count(e['ids'])} {e['flag']}" if e["flag"] else f"cleared the flag of {_count(e['ids'])}"
    if op in ("undo", "redo"):
        return f"{op} of edit {e.get('target')}"
    return str(op)


def _count(ids: list[int]) -> str:
    if len(ids) == 1:
        return f"image {ids[0]}"
    return f"{len(ids)} images ({_ranges(ids[:200])}{', ...' if len(ids) > 200 else ''})"


def parse_ids(text: str) -> list[int]:
    """Image ids as a person writes them: "3, 17 40-45" (commas or spaces, ranges inclusive)."""
    out: list[int] = []
    for token in text.replace(",", " ").split():
        low, sep, high = token.partition("-")
        try:
            out += list(range(int(low), int(high) + 1)) if sep and low else [int(token)]
        except ValueError:
            raise CurationError(f"{token!r} is not an image id (ids are whole numbers, ranges like 40-45)") from None
    return sorted(set(out))


def read_ids(path) -> list[int]:
    """Image ids from a file: ids as parse_ids reads them, or a CSV with an `index` column (an export)."""
    import csv
    from pathlib import Path

    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise CurationError(f"cannot read the ids file {path}: {exc.strerror or exc}") from None
    first = text.split("\n", 1)[0]
    if "index" in first.split(","):
        return sorted({int(row["index"]) for row in csv.DictReader(text.splitlines())})
    return parse_ids("\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#")))
