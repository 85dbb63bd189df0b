"""Pasteable ``allow_not_updated=[...]`` / ``expect_frozen=[...]`` suggestions.

A suggestion must pass when pasted and must not be over-broad, so every candidate entry is
tested with the same matcher the selection uses (``parameters.entry_matches``):

* each listed parameter collapses to the HIGHEST module whose parameters all share its status
  (CLIP's image tower trained alone -> ``['text_model', 'text_projection', 'logit_scale']``);
* entries that differ only in numeric components (layers, experts) merge into a glob
  (``'layers.*.mlp'``) when the glob selects nothing of the other status;
* entries that end in the same components merge into ``'*.<components>'`` (PEFT's
  ``'*.base_layer'``) under the same condition.

    >>> suggest(["a.fc.weight", "a.fc.bias"], {"a.fc.weight", "a.fc.bias"}, [("a.fc.weight",), ("a.fc.bias",), ("b.weight",)])
    ['a']
"""

from typing import Dict, List, Sequence, Set, Tuple

from .parameters import entry_matches

__unittest = True


def _selects(entry: str, names: Sequence[Tuple[str, ...]]) -> Set[int]:
    return {i for i, all_names in enumerate(names) if any(entry_matches(entry, n) for n in all_names)}


def suggest(targets: Sequence[str], eligible: Set[str], names: Sequence[Tuple[str, ...]]) -> List[str]:
    """Entries covering every name in ``targets`` and nothing outside ``eligible``.

    ``names``: every parameter of the model, each as its tuple of names (primary name first);
    ``eligible``: primary names that may be covered (the targets and others of the same status).
    """
    ok = {i for i, n in enumerate(names) if n[0] in eligible}
    covered: Set[int] = set()
    entries: List[Tuple[str, Set[int]]] = []
    for target in targets:
        if any(i in covered for i, n in enumerate(names) if n[0] == target):
            continue
        parts = target.split(".")
        for k in range(1, len(parts) + 1):
            candidate = ".".join(parts[:k])
            sel = _selects(candidate, names)
            if sel and sel <= ok:
                entries.append((candidate, sel))
                covered |= sel
                break
        else:  # no entry is pure (cannot happen for a target in eligible): list it as is
            entries.append((target, set()))
    entries = _merge(entries, names, ok, _numeric_globs)
    entries = _merge(entries, names, ok, _suffix_globs)
    return [e for e, _ in entries]


def _numeric_globs(entry: str) -> List[str]:
    parts = entry.split(".")
    digits = [i for i, p in enumerate(parts) if p.isdigit()]
    out = []
    for mask in range(2 ** len(digits) - 1, 0, -1) if len(digits) <= 4 else [2 ** len(digits) - 1]:
        q = list(parts)
        for bit, i in enumerate(digits):
            if mask >> bit & 1:
                q[i] = "*"
        out.append(".".join(q))
    return out


def _suffix_globs(entry: str) -> List[str]:
    """``'*.base_layer'``, then ``'*.k_proj.bias'``, ...: the last one to three components."""
    parts = entry.split(".")
    out = []
    for k in range(1, min(3, len(parts) - 1) + 1):
        tail = parts[-k:]
        if not tail[-1].isdigit() and "*" not in tail:
            out.append("*." + ".".join(tail))
    return out


def _merge(entries, names, ok, candidates):
    """Greedily replace groups of >= 2 entries by a glob that selects only eligible parameters."""
    entries = list(entries)
    selections: Dict[str, Set[int]] = {}
    while True:
        best = None
        for entry, _ in entries:
            for glob in candidates(entry):
                if glob not in selections:
                    selections[glob] = _selects(glob, names)
                sel = selections[glob]
                if not sel or not sel <= ok:
                    continue
                group = [j for j, (_, s) in enumerate(entries) if s and s <= sel]
                if len(group) >= 2 and (best is None or len(group) > len(best[2])):
                    best = (glob, sel, group)
        if best is None:
            return entries
        glob, sel, group = best
        first = group[0]
        entries = [(glob, sel) if j == first else e for j, e in enumerate(entries) if j == first or j not in group]
