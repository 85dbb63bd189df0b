"""Causes of disagreements (by evidence and message patterns) and the published table.

``cause_of(row)`` names the mechanism behind one disagreement, from the oracle's evidence first
(step at which a parameter first moved, non-persistent buffers, non-tensor leaves) and the
library's message second, so the before/after counts per cause can be compared across engine
versions. ``write_report`` renders ``COMPATIBILITY.md`` and ``results.json`` from the records.
"""

import json
import platform
import re
import subprocess
import time
from collections import Counter
from typing import Any, Dict, List

# (cause, check prefix or None, message regex), for what the evidence alone does not name.
MESSAGE_PATTERNS = [
    ("reentrant checkpointing (incompatible with .grad())", None, r"incompatible with \.grad\(\)|checkpoint"),
    ("cache object in output", "dtype", r"Cache|cache"),
    ("non-tensor leaf in output", "dtype", r"not a tensor|NoneType|int|str|float"),
    ("empty tensor", None, r"zero-size|numel\(\) == 0|empty"),
    ("output shape depends on the batch", "batch_independent", r"shape"),
]


def cause_of(row: Dict[str, Any]) -> str:
    check, verdict, message = row["check"], row["verdict"], row.get("message", "")
    oracle = row.get("oracle", {})
    if verdict == "crash":
        head = message.split(":")[0].strip() or "exception"
        if head == "timeout":
            return "crash: timeout"
        detail = re.sub(r"[0-9]+", "N", message.split("\n")[0][len(head) + 1:].strip())[:70]
        if check == "state_dict" and oracle.get("non_persistent_buffers"):
            detail += " (non-persistent buffer scrambled)"
        elif "nondeterministic" in oracle.get("na", ""):
            detail += " (random forward: output shapes vary)"
        return f"crash: {head}: {detail}"
    if check.startswith("update"):
        if verdict == "missed":
            return "update: missed (oracle: never moved in real steps)"
        info = row.get("false_params", {})
        steps = info.get("first_move_step", {})
        statuses = info.get("library_status", {})
        main = max(statuses, key=statuses.get) if statuses else ""
        if main == "frozen":
            return "update: requires_grad=False parameter not declared in expect_frozen (library policy)"
        if steps and all(s != "1" for s in steps):
            return "update: zero at step 1 / zero-initialised partner (moves at step 2+)"
        if main == "not_applied":
            return "update: snapshot step too small to change the value (oracle's AdamW moves it)"
        if main == "no_grad":
            return "update: grad is None yet trained by backward() (reentrant checkpointing?)"
        if info.get("float64_zero"):
            return "update: float32 rounding-noise gradient (zero in float64; oracle's AdamW moves it)"
        if main == "zero_grad":
            return "update: library sees a zero gradient, the model's own loss moves it at step 1 (different loss?)"
        return "update: other (" + ",".join(sorted(statuses)) + ")"
    if check == "state_dict":
        if verdict == "false alarm" and oracle.get("non_persistent_buffers"):
            return "state_dict: non-persistent buffer scrambled"
        if verdict == "false alarm":
            return "state_dict: other false alarm"
        return "state_dict: missed (" + oracle.get("reason", "fresh model differs") + ")"
    if check == "dtype" and verdict == "false alarm":
        leaves = oracle.get("non_tensor_leaves") or []
        if any("Cache" in n for n in leaves):
            return "dtype: cache object in output"
        if leaves:
            return "dtype: non-tensor leaf in output (" + ",".join(leaves[:3]) + ")"
    for cause, prefix, pattern in MESSAGE_PATTERNS:
        if (prefix is None or check.startswith(prefix)) and re.search(pattern, message):
            return f"{check}: {cause}"
    return f"{check}: {verdict}"


# ------------------------------------------------------------------------------ report


def versions() -> Dict[str, str]:
    out = {"python": platform.python_version()}
    for name in ("torch", "transformers", "timm", "torchvision", "numpy"):
        try:
            out[name] = __import__(name).__version__
        except Exception as e:  # noqa: BLE001
            out[name] = f"not importable ({type(e).__name__})"
    try:
        out["torchcheck_mixin"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                                                 text=True, check=False).stdout.strip()
    except Exception:  # noqa: BLE001
        pass
    return out


def summarise(records: List[Dict[str, Any]]) -> Dict[str, Any]:
    for r in records:  # causes recomputed, so a better classifier applies to stored rows too
        for c in r.get("checks", []):
            if c.get("verdict") in ("crash", "false alarm", "missed"):
                c["cause"] = cause_of(c)
    built = [r for r in records if r.get("built") and not r.get("harness_error")]
    rows = [dict(c, id=r["id"]) for r in built for c in r.get("checks", [])]
    verdicts = Counter(r["verdict"] for r in rows)
    causes = Counter(r["cause"] for r in rows if r["cause"])
    invariants = Counter(r["invariant_cause"] for r in rows if r.get("invariant_cause"))
    per_check: Dict[str, Counter] = {}
    for r in rows:
        per_check.setdefault(r["check"], Counter())[r["verdict"]] += 1
        if r.get("invariant_cause"):
            per_check[r["check"]]["invariant broken"] += 1
    return {
        "models": len(records),
        "built": len(built),
        "not_built": len([r for r in records if not r.get("built")]),
        "harness_errors": len([r for r in records if r.get("harness_error")]),
        "checks": len(rows),
        "verdicts": dict(verdicts),
        "invariant_broken": sum(invariants.values()),
        "causes": dict(causes.most_common()),
        "invariant_causes": dict(invariants.most_common()),
        "per_check": {k: dict(v) for k, v in per_check.items()},
        "per_family": {f: len([r for r in built if r["family"] == f]) for f in sorted({r["family"] for r in records})},
    }


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " / ")[:220]


def write_report(records: List[Dict[str, Any]], out_dir: str, *, enumerated: int, command: str,
                 started: float, complete: bool, keep_meta: bool = False) -> None:
    """``keep_meta``: keep the run's versions, command and times from an existing results.json
    (``--report-only`` re-renders a run, it is not a new one)."""
    summary = summarise(records)
    meta = {"versions": versions(), "command": command, "enumerated": enumerated, "complete": complete,
            "started_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime(started)),
            "elapsed_s": round(time.time() - started)}
    if keep_meta:
        try:
            with open(f"{out_dir}/results.json") as f:
                meta.update({k: v for k, v in json.load(f)["meta"].items() if k != "complete"})
        except (OSError, ValueError, KeyError):
            pass
    with open(f"{out_dir}/results.json", "w") as f:
        json.dump({"meta": meta, "summary": summary, "records": records}, f, indent=1, default=str)
    v = summary["verdicts"]
    lines = [
        "# Compatibility sweep", "",
        "Generated by `benchmarks/sweep` (see benchmarks/README.md): every architecture it builds offline from a "
        "shrunk config, the standard checks with no allowances, each verdict compared with a plain-PyTorch "
        "oracle computed on a copy.", "",
    ]
    if not complete:
        lines += [f"**Partial run**: {len(records)} of {enumerated} enumerated architectures finished "
                  f"when this table was written.", ""]
    lines += ["Versions: " + ", ".join(f"{k} {val}" for k, val in meta["versions"].items()) + ".",
              f"Command: `{meta['command']}`; started {meta['started_utc']} UTC, {meta['elapsed_s']} s.", "",
              "## Summary", "",
              "| | count |", "|---|---|",
              f"| architectures tried | {summary['models']} (of {enumerated} enumerated) |",
              f"| built and checked | {summary['built']} ({', '.join(f'{k} {n}' for k, n in summary['per_family'].items())}) |",
              f"| not built (reason listed below) | {summary['not_built']} |",
              f"| harness errors (worker died / model timeout) | {summary['harness_errors']} |",
              f"| checks | {summary['checks']} |",
              f"| agreements | {v.get('agree', 0)} |",
              f"| false alarms | {v.get('false alarm', 0)} |",
              f"| missed | {v.get('missed', 0)} |",
              f"| crashes | {v.get('crash', 0)} |",
              f"| invariant broken (on any verdict) | {summary['invariant_broken']} |",
              f"| oracle cannot judge | {v.get('oracle n/a', 0)} |", "",
              "## Per check", "",
              "| check | agree | false alarm | missed | crash | invariant broken | oracle n/a |",
              "|---|---|---|---|---|---|---|"]
    for check, c in summary["per_check"].items():
        lines.append(f"| {check} | {c.get('agree', 0)} | {c.get('false alarm', 0)} | {c.get('missed', 0)} | "
                     f"{c.get('crash', 0)} | {c.get('invariant broken', 0)} | {c.get('oracle n/a', 0)} |")
    lines += ["", "## Disagreements by cause", "", "| cause | checks |", "|---|---|"]
    for cause, n in list(summary["causes"].items()) + list(summary["invariant_causes"].items()):
        lines.append(f"| {_cell(cause)} | {n} |")
    lines += ["", "## Every disagreement", "",
              "| model | check | verdict | cause | library message (first lines) | oracle evidence |",
              "|---|---|---|---|---|---|"]
    for r in records:
        for c in r.get("checks", []):
            if c["verdict"] in ("agree", "oracle n/a") and not c.get("invisibility"):
                continue
            evidence = {k: val for k, val in c["oracle"].items() if k not in ("passed",) and val}
            if c.get("false_params"):
                evidence["false_params"] = c["false_params"]
            if c.get("missed_params"):
                evidence["missed_params"] = c["missed_params"]
            if c.get("invisibility"):
                evidence["changed"] = c["invisibility"]
            verdict = c["verdict"] + (" + invariant broken" if c.get("invisibility") else "")
            lines.append(f"| {r['id']} | {c['check']} | {verdict} | {_cell(c['cause'] or c.get('invariant_cause', ''))} "
                         f"| {_cell(c.get('message', ''))} | {_cell(json.dumps(evidence, default=str))} |")
    lines += ["", "## Oracle cannot judge", "", "| model | check | why |", "|---|---|---|"]
    for r in records:
        for c in r.get("checks", []):
            if c["verdict"] == "oracle n/a":
                lines.append(f"| {r['id']} | {c['check']} | {_cell(c['oracle'].get('na', ''))} |")
    lines += ["", "## Not built", "", "| model | reason |", "|---|---|"]
    for r in records:
        if not r.get("built"):
            lines.append(f"| {r['id']} | {_cell(r.get('reason', ''))} |")
        elif r.get("harness_error"):
            lines.append(f"| {r['id']} | harness: {_cell(r['harness_error'])} |")
    lines += ["", "## Built", "", "| model | class / module | parameters | seconds |", "|---|---|---|---|"]
    for r in records:
        if r.get("built") and not r.get("harness_error"):
            info = r.get("info", {})
            lines.append(f"| {r['id']} | {info.get('class', info.get('module', ''))} | {info.get('parameters', '')} "
                         f"| {r.get('seconds', '')} |")
    with open(f"{out_dir}/COMPATIBILITY.md", "w") as f:
        f.write("\n".join(lines) + "\n")


def compare(before_path: str, after_path: str) -> str:
    """A Markdown table of the counts per cause and per verdict in two ``results.json`` files
    (causes recomputed with this classifier), for before/after notes."""
    def counts(path):
        with open(path) as f:
            s = summarise(json.load(f)["records"])
        return dict(s["verdicts"], **s["causes"], **s["invariant_causes"], built=s["built"], checks=s["checks"])

    a, b = counts(before_path), counts(after_path)
    keys = ["built", "checks", "agree", "false alarm", "missed", "crash", "oracle n/a"]
    keys += sorted(k for k in set(a) | set(b) if k not in keys)
    lines = ["| | before | after |", "|---|---|---|"] + [f"| {_cell(k)} | {a.get(k, 0)} | {b.get(k, 0)} |" for k in keys]
    return "\n".join(lines)
