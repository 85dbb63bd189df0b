"""``PYTHONPATH=. python -m benchmarks.sweep --out benchmarks/sweep_results/`` (see benchmarks/README.md)."""

import argparse
import json
import os
import sys
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.sweep", description=__doc__)
    parser.add_argument("--out", default="benchmarks/sweep_results", help="folder for COMPATIBILITY.md, results.json")
    parser.add_argument("--families", default="transformers,timm,torchvision")
    parser.add_argument("--family", action="append", choices=("transformers", "timm", "torchvision"),
                        help="only this family (repeatable); overrides --families")
    parser.add_argument("--only", action="append", default=None, metavar="PATTERN",
                        help="fnmatch glob (or substring) over model type names or family/name, "
                             "e.g. 'bert*' or 'timm/vit*'; repeatable, a model matching any is kept")
    parser.add_argument("--limit", type=int, default=None, help="at most N architectures, round robin over families")
    parser.add_argument("--workers", type=int, default=2, help="worker processes (one torch thread each)")
    parser.add_argument("--check-timeout", type=int, default=60, help="seconds per check and per oracle")
    parser.add_argument("--model-timeout", type=int, default=300, help="seconds per model in all")
    parser.add_argument("--report-only", action="store_true", help="rewrite the table from rows.jsonl")
    parser.add_argument("--resume", action="store_true", help="skip the models already in rows.jsonl")
    parser.add_argument("--compare", nargs=2, metavar=("BEFORE", "AFTER"),
                        help="print the counts per cause of two results.json files and exit")
    args = parser.parse_args(argv)
    if args.compare:
        from . import report

        print(report.compare(*args.compare))
        return 0

    import torch

    torch.set_num_threads(1)
    from . import build, report, run

    os.makedirs(args.out, exist_ok=True)
    rows_path = os.path.join(args.out, "rows.jsonl")
    command = "PYTHONPATH=. python -m benchmarks.sweep " + " ".join(argv if argv is not None else sys.argv[1:])
    started = time.time()
    families = args.family or [f.strip() for f in args.families.split(",") if f.strip()]
    specs = build.select(build.enumerate_specs(families), args.only, args.limit)
    print(f"{len(specs)} architectures to try", flush=True)

    def load():
        if not os.path.exists(rows_path):
            return []
        with open(rows_path) as f:
            return [json.loads(line) for line in f if line.strip()]

    if args.report_only:
        report.write_report(load(), args.out, enumerated=len(specs), command=command, started=started,
                            complete=len(load()) >= len(specs), keep_meta=True)
        return 0
    if args.resume:
        done = {r["id"] for r in load()}
        specs_to_run = [s for s in specs if build.spec_id(s) not in done]
    else:
        if os.path.exists(rows_path):
            os.remove(rows_path)
        specs_to_run = specs
    records = load()

    def on_record(record):
        records.append(record)
        bad = [c["check"] for c in record.get("checks", []) if c["verdict"] not in ("agree", "oracle n/a")]
        state = "not built: " + record.get("reason", "")[:80] if not record.get("built") else \
            record.get("harness_error") or ("disagree: " + ",".join(bad) if bad else "all agree")
        print(f"[{len(records)}/{len(specs)}] {record['id']} ({record.get('seconds', '?')}s): {state}", flush=True)
        if len(records) % 10 == 0:  # partial results survive an interrupted run
            report.write_report(records, args.out, enumerated=len(specs), command=command, started=started,
                                complete=False)

    run.run_all(specs_to_run, rows_path, args.workers, args.check_timeout, args.model_timeout, on_record)
    report.write_report(records, args.out, enumerated=len(specs), command=command, started=started,
                        complete=len(records) >= len(specs))
    print(f"wrote {args.out}/COMPATIBILITY.md and results.json", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
