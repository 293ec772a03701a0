"""How often the keep policy keeps the original: the accuracy set and the demo sample.

1. The accuracy benchmark set (``benchmarks/accuracy/dataset.py``, full: 80 photos and their
   22 transformed copies each, among textures, icons and emoji) is scanned once with the
   default settings. Over the groups that contain an original photo, the keeper should be an
   original. Every policy is decided on the same scan (deciding is pure).
   Then pairs: each original photo with each one of its copies, a group of two, names
   hidden and one mtime (a user with a photo and one copy of it).
2. The demo sample (``scripts/make_sample.py``: 12 photos under ``originals/`` and 5 copies
   each under ``copies/``), scanned with the default settings: the keeper should be under
   ``originals/``.

Policies: ``before`` is the old default (largest-resolution, largest-file, oldest,
shortest-path), ``original`` the new one; two more rows show ``original`` without the
signals a test set can fake: ``names hidden`` (every file renamed to a digest of its path,
so no name marks a copy or extends another) and ``names hidden, same mtime`` (file age
gives nothing away either). Also timed: reading the file headers the ``original`` rule needs.

    python benchmarks/bench_keep.py
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import hashlib
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import CACHE, REPO, print_table, write_json

sys.path.insert(0, str(REPO / "benchmarks" / "accuracy"))
sys.path.insert(0, str(REPO / "scripts"))

import dataset
import make_sample

import lookalike
from lookalike.grouping.keep import KeepFacts, KeepPolicy
from lookalike.model import Group, Member
from lookalike.store.cache import HashCache

BEFORE = ("largest-resolution", "largest-file", "oldest", "shortest-path")


def _local(path: str) -> str:
    """A manifest path on this machine (the set may have been built under another root)."""
    if os.path.exists(path) or "/.cache/" not in path:
        return path
    return str(REPO / ".cache" / path.split("/.cache/", 1)[1])


def _scan(paths: list[str], tag: str) -> lookalike.ScanResult:
    listing = CACHE / f"keep-{tag}.txt"
    listing.write_text("".join(p + "\n" for p in paths))
    return lookalike.scan(files_from=str(listing), cache=HashCache(CACHE / "keep-hashes.sqlite"))


def _neutral(groups: list[Group], facts: KeepFacts, same_mtime: bool
             ) -> tuple[list[Group], KeepFacts, dict[str, str]]:
    """The groups with every file renamed to a digest of its path (and, with ``same_mtime``,
    one modification time for all); facts keyed by the new names; new name -> old name."""
    back: dict[str, str] = {}

    def rename(m: Member) -> Member:
        r = m.record
        new = os.path.join(os.path.dirname(r.path),
                           hashlib.sha1(r.path.encode()).hexdigest()[:12]
                           + os.path.splitext(r.path)[1])
        back[new] = r.path
        return Member(dataclasses.replace(r, path=new, mtime_ns=0 if same_mtime else r.mtime_ns),
                      m.distance)

    out = [dataclasses.replace(g, members=tuple(rename(m) for m in g.members)) for g in groups]
    fwd = {v: k for k, v in back.items()}
    return out, dataclasses.replace(facts, headers={fwd[p]: f for p, f in facts.headers.items()
                                                    if p in fwd}), back


def _hidden(groups: list[Group], facts: KeepFacts, same_mtime: bool) -> dict[int, str]:
    """The default policy's keeper per group once names (and mtimes) say nothing."""
    renamed, rfacts, back = _neutral(groups, facts, same_mtime)
    return {g.id: back[KeepPolicy().decide(g, rfacts).keep[0]] for g in renamed}


def _policies(groups: list[Group]) -> tuple[dict[str, dict[int, str]], KeepFacts, float]:
    """Each policy's keeper per group id (paths as on disk), the facts read, and the CPU
    milliseconds reading them took per file."""
    new = KeepPolicy()
    t0 = time.process_time()
    facts = new.read_facts(m.record for g in groups for m in g.members)
    read_ms = 1e3 * (time.process_time() - t0) / max(1, sum(len(g) for g in groups))
    out = {
        "before": {g.id: KeepPolicy(rules=BEFORE).decide(g, facts).keep[0] for g in groups},
        "original": {g.id: new.decide(g, facts).keep[0] for g in groups},
        "original, names hidden": _hidden(groups, facts, False),
        "original, names hidden, same mtime": _hidden(groups, facts, True),
    }
    return out, facts, read_ms


def accuracy_set() -> dict[str, object]:
    items = dataset.build(dataset.FULL, log=lambda *_: None)
    by_path = {_local(i.path): i for i in items}
    result = _scan(sorted(by_path), "accuracy")
    groups = [g for g in result.groups
              if any(by_path[p].original and by_path[p].source == "photo" for p in g.paths)]
    keepers, facts, read_ms = _policies(groups)
    # What every other signal does once the one copy no header can expose is gone.
    no_up = [dataclasses.replace(g, members=tuple(
        m for m in g.members if by_path[m.record.path].variant != "resize_up_150"))
        for g in groups]
    keepers["original, names hidden, same mtime, no upscale"] = _hidden(no_up, facts, True)
    rows, table, lost = [], {}, {}
    for name, chosen in keepers.items():
        hits = sum(by_path[chosen[g.id]].original for g in groups)
        won = collections.Counter(by_path[chosen[g.id]].variant for g in groups
                                  if not by_path[chosen[g.id]].original)
        table[name] = {"groups": len(groups), "original_kept": hits,
                       "share": round(hits / len(groups), 3)}
        lost[name] = dict(won.most_common())
        rows.append([name, len(groups), hits, f"{hits / len(groups):.1%}",
                     ", ".join(f"{v} {n}" for v, n in won.most_common(4))])
    print(f"\naccuracy set: {len(result.records)} images, {len(result.groups)} groups, "
          f"{len(groups)} with an original photo; file headers read in {read_ms:.3f} CPU ms "
          "per member")
    print_table(["policy", "groups", "original kept", "share", "kept instead (top 4)"], rows)
    return {"images": len(result.records), "groups_with_original": len(groups),
            "policies": table, "kept_instead": lost,
            "header_read_ms_per_file": round(read_ms, 3), "pairs": _pairs(groups, by_path)}


def _pairs(groups: list[Group], by_path: dict[str, Any]) -> dict[str, object]:
    """A user with a photo and one copy of it: each original photo with each of its copies
    as a group of two, names hidden and one mtime (only what the files hold can tell).
    Harder than whole groups: no group majority tells the aspect ratio, no centre."""
    pairs: list[Group] = []
    for g in groups:
        first = next(m for m in g.members if by_path[m.record.path].original)
        for m in g.members:
            if not by_path[m.record.path].original:
                pairs.append(Group(id=len(pairs) + 1, members=(Member(first.record, 0), m),
                                   representative=first.record.path, kind=g.kind))
    facts = KeepPolicy().read_facts(m.record for g in pairs for m in g.members)
    chosen = _hidden(pairs, facts, True)
    variant = {g.id: by_path[g.members[1].record.path].variant for g in pairs}
    total = collections.Counter(variant.values())
    lost = collections.Counter(variant[g.id] for g in pairs
                               if not by_path[chosen[g.id]].original)
    hits = len(pairs) - sum(lost.values())
    print(f"\npairs (an original photo and one copy; names hidden, one mtime): original kept "
          f"in {hits} of {len(pairs)} ({hits / len(pairs):.1%})")
    print_table(["copy", "pairs", "original kept"],
                [(v, total[v], total[v] - lost[v]) for v in sorted(total, key=lambda v: lost[v])])
    return {"pairs": len(pairs), "original_kept": hits,
            "by_copy": {v: {"pairs": total[v], "original_kept": total[v] - lost[v]}
                        for v in total}}


def demo_sample() -> dict[str, object]:
    with tempfile.TemporaryDirectory(dir=CACHE) as tmp:
        root = Path(tmp) / "sample"
        make_sample.main(str(root))
        result = lookalike.scan(str(root))
        keepers = _policies(list(result.groups))[0]
        rows, table = [], {}
        for name, chosen in keepers.items():
            hits = sum("/originals/" in p for p in chosen.values())
            wrong = collections.Counter(Path(p).stem.split("__")[-1] for p in chosen.values()
                                        if "/originals/" not in p)
            table[name] = {"groups": len(chosen), "original_kept": hits,
                           "kept_instead": dict(wrong)}
            rows.append([name, len(chosen), hits, ", ".join(f"{v} {n}" for v, n in
                                                          wrong.most_common())])
    print("\ndemo sample:")
    print_table(["policy", "groups", "originals/* kept", "kept instead"], rows)
    return {"groups": len(result.groups), "policies": table}


def main() -> None:
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args()
    CACHE.mkdir(parents=True, exist_ok=True)
    write_json("keep", {"accuracy_set": accuracy_set(), "demo": demo_sample()})


if __name__ == "__main__":
    main()
