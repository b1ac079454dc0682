"""BIDS indexers compared (issue 20): the hand-written reader, pybids and bids2table.

Timing mode (the default) builds the zero-byte OASIS-3-shaped tree of
``benchmarks/make_oasis_tree.py`` and times, each in a fresh Python process per repeat
(so no import, ``lru_cache`` or SQL state carries over; the page cache is warm, the tree
having just been written and walked):

  walk        ``os.walk`` of the whole tree (a floor: listing every file, nothing parsed)
  glob        ``glob`` of ``sub-*/ses-*/{anat,func}/sub-*_{T1w,bold}.nii*`` (the names discovery needs)
  ours        ``mmssl.bids.layout.discover(bids_dir, ["T1w", "bold"])``
  pybids      ``BIDSLayout(root, validate=False, indexer=BIDSLayoutIndexer(validate=False, index_metadata=False))``
  pybids_meta the same with ``index_metadata=True`` (pybids' default; reads every JSON sidecar)
  pybids_db   the same as pybids_meta with ``database_path=``: built once (timed, not repeated), then the
              reload from the SQLite file is what each repeat times
  b2t         ``bids2table.index_dataset(root)`` (one process: its parallelism is across datasets only)
  b2t_meta    the same, then ``bids2table.load_bids_metadata`` of every BOLD run (merged sidecars, for TR)

For every tool it reports the index time, the time of the query that lists the T1w and BOLD
images (``layout.get`` / an Arrow filter; 0 for ours, whose output is that list), the
files it saw and the T1w + BOLD images it found, the import time and the peak RSS.

    PYTHONPATH=workflow python benchmarks/bench_bids_index.py --subjects 2000 --repeat 3

Correctness mode compares our reader and bids2table with pybids on pybids' own test
datasets (``tests/data`` of the pybids sdist): the T1w and BOLD images found, their
entities, and the RepetitionTime of each BOLD run (pybids' merged metadata against the
single nearest sidecar our reader returns, and against bids2table's merged metadata).

    PYTHONPATH=workflow python benchmarks/bench_bids_index.py --correctness /tmp/pybids-sdist/pybids-0.22.0/tests/data

A library that cannot be imported is skipped with a message. pybids and bids2table are not
dependencies of the project: install them in a separate environment to run this.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import platform
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
if not any(Path(p, "mmssl").is_dir() for p in sys.path if p):
    sys.path.insert(0, str(HERE.parent / "workflow"))

TOOLS = ("walk", "glob", "ours", "pybids", "pybids_meta", "pybids_db", "b2t", "b2t_meta")
NEEDS = {"ours": "mmssl.bids.layout", "pybids": "bids", "pybids_meta": "bids", "pybids_db": "bids",
         "b2t": "bids2table", "b2t_meta": "bids2table"}
MODALITIES = ("T1w", "bold")
NIFTI = (".nii", ".nii.gz")
DATASETS = ("ds005", "7t_trt", "synthetic", "ds000117")


def importable(module: str) -> str | None:
    """None if ``module`` imports, else the reason."""
    try:
        __import__(module)
        return None
    except Exception as err:  # noqa: BLE001 - any failure means "skip it"
        return f"{type(err).__name__}: {err}"


def version_of(module: str) -> str:
    try:
        return getattr(__import__(module), "__version__", "?")
    except Exception:  # noqa: BLE001
        return "not importable"


# ---------------------------------------------------------------------------- timing


def _pybids_layout(root: str, index_metadata: bool, database_path: str | None = None):
    from bids import BIDSLayout, BIDSLayoutIndexer

    return BIDSLayout(root, validate=False, database_path=database_path,
                      indexer=BIDSLayoutIndexer(validate=False, index_metadata=index_metadata))


def _pybids_images(layout) -> list[str]:
    return layout.get(suffix=list(MODALITIES), extension=list(NIFTI), return_type="filename")


def _b2t_images(table):
    """The T1w and BOLD NIfTI rows of a bids2table index."""
    import pyarrow as pa
    import pyarrow.compute as pc

    mask = pc.and_(pc.is_in(table["suffix"], value_set=pa.array(MODALITIES)),
                   pc.is_in(table["ext"], value_set=pa.array(NIFTI)))
    return table.filter(mask)


def measure(tool: str, root: str, db: str | None) -> dict:
    """One timed run of ``tool`` in this process (called in a fresh subprocess)."""
    warnings.simplefilter("ignore")
    t0 = time.perf_counter()
    if tool in NEEDS:
        __import__(NEEDS[tool])
    t_import = time.perf_counter() - t0
    out: dict = {"tool": tool, "import_s": t_import, "query_s": 0.0, "files": None}
    t0 = time.perf_counter()
    if tool == "walk":
        files = images = 0
        for _dirpath, _dirs, names in os.walk(root):
            files += len(names)
            images += sum(n.endswith(("_T1w.nii.gz", "_T1w.nii", "_bold.nii.gz", "_bold.nii")) for n in names)
        out["index_s"] = time.perf_counter() - t0
        out.update(files=files, images=images)
    elif tool == "glob":
        found = [p for m in MODALITIES for p in glob.glob(f"{root}/sub-*/ses-*/*/sub-*_{m}.nii*")]
        found += [p for m in MODALITIES for p in glob.glob(f"{root}/sub-*/*/sub-*_{m}.nii*")]
        out["index_s"] = time.perf_counter() - t0
        out.update(images=len(found))
    elif tool == "ours":
        from mmssl.bids.layout import discover

        result = discover(root, list(MODALITIES))
        out["index_s"] = time.perf_counter() - t0
        out.update(images=len(result.scans) + len(result.excluded[result.excluded["path"].str.contains(r"\.nii")]),
                   excluded=len(result.excluded), with_sidecar=int((result.scans["sidecar"] != "").sum()))
    elif tool in ("pybids", "pybids_meta", "pybids_db"):
        if tool == "pybids_db":
            from bids import BIDSLayout

            layout = BIDSLayout(database_path=db)  # root, config and index come from the database
        else:
            layout = _pybids_layout(root, index_metadata=tool == "pybids_meta")
        out["index_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        images = _pybids_images(layout)
        out["query_s"] = time.perf_counter() - t0
        out.update(images=len(images), files=len(layout.get(return_type="filename")))
        if tool != "pybids":  # the TR of every BOLD run, from the index (no JSON read)
            t0 = time.perf_counter()
            trs = [f.get_metadata().get("RepetitionTime")
                   for f in layout.get(suffix="bold", extension=list(NIFTI))]
            out["tr_query_s"] = time.perf_counter() - t0
            out["bold_with_tr"] = sum(tr is not None for tr in trs)
    elif tool in ("b2t", "b2t_meta"):
        import bids2table

        table = bids2table.index_dataset(root)
        out["index_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        images = _b2t_images(table)
        out["query_s"] = time.perf_counter() - t0
        out.update(images=images.num_rows, files=table.num_rows)
        if tool == "b2t_meta":
            t0 = time.perf_counter()
            import pyarrow.compute as pc

            bold = images.filter(pc.equal(images["suffix"], "bold"))
            trs = [bids2table.load_bids_metadata(os.path.join(root, p)).get("RepetitionTime")
                   for p in bold["path"].to_pylist()]
            out["tr_query_s"] = time.perf_counter() - t0
            out["bold_with_tr"] = sum(tr is not None for tr in trs)
    else:
        raise ValueError(tool)
    out["total_s"] = out["index_s"] + out["query_s"] + out.get("tr_query_s", 0.0)
    out["maxrss_mb"] = peak_rss_mb()
    return out


def peak_rss_mb() -> float:
    """This process's peak RSS: VmHWM (ru_maxrss survives execve on Linux, so a child
    started by a big parent would report the parent's peak)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_one(tool: str, root: str, db: str | None, timeout: float) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--_measure", tool, root]
    if db:
        cmd += ["--_db", db]
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{tool} failed:\n{proc.stderr[-3000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["process_s"] = wall
    return result


def fmt(x, nd=2):
    return "" if x is None else (f"{x:.{nd}f}" if isinstance(x, float) else str(x))


def timing(args) -> None:
    from make_oasis_tree import make_oasis_tree

    tools = [t for t in (args.tools.split(",") if args.tools else TOOLS)]
    for tool in list(tools):
        reason = importable(NEEDS[tool]) if tool in NEEDS else None
        if reason:
            print(f"SKIP {tool}: cannot import {NEEDS[tool]} ({reason})", flush=True)
            tools.remove(tool)
    work = Path(args.work or tempfile.mkdtemp(prefix="bids-bench-"))
    tree = work / f"oasis{args.subjects}"
    if not (tree / "bids" / "dataset_description.json").exists() or args.rebuild:
        shutil.rmtree(tree, ignore_errors=True)
        t0 = time.perf_counter()
        info = make_oasis_tree(tree, args.subjects, args.seed)
        print(f"tree: {args.subjects} subjects, {info['sessions']} sessions, {info['T1w']} T1w, "
              f"{info['bold']} BOLD, {info['T2w']} T2w, {info['FLAIR']} FLAIR; written in "
              f"{time.perf_counter() - t0:.1f} s to {tree}", flush=True)
    root = str(tree / "bids")
    print(f"machine: {platform.node()}, nproc={os.cpu_count()}, Python {platform.python_version()}, "
          f"load average {os.getloadavg()[0]:.2f}; pybids {version_of('bids')}, "
          f"bids2table {version_of('bids2table')}, pandas {version_of('pandas')}", flush=True)
    run_one("walk", root, None, args.timeout)  # warm the page cache and dentries
    db = None
    results: dict[str, list[dict]] = {t: [] for t in tools}
    if "pybids_db" in tools:
        db = str(work / "pybids.sqlite")
        shutil.rmtree(db, ignore_errors=True)
        Path(db).unlink(missing_ok=True)
        code = (f"import time, warnings; warnings.simplefilter('ignore'); import sys; sys.path.insert(0, {str(HERE)!r}); "
                f"from bench_bids_index import _pybids_layout; t = time.perf_counter(); "
                f"_pybids_layout({root!r}, True, {db!r}); print(time.perf_counter() - t)")
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=args.timeout)
        if proc.returncode:
            raise RuntimeError(proc.stderr[-3000:])
        build = float(proc.stdout.strip().splitlines()[-1])
        size = sum(p.stat().st_size for p in Path(db).rglob("*")) if Path(db).is_dir() else Path(db).stat().st_size
        print(f"pybids_db: database built (index_metadata=True) in {build:.1f} s, {size / 1e6:.1f} MB at {db}",
              flush=True)
    for rep in range(args.repeat):
        for tool in tools:  # interleaved, so that load from other jobs spreads over all tools
            if tool in args.once.split(",") and rep > 0:
                continue
            r = run_one(tool, root, db, args.timeout)
            results[tool].append(r)
            extra = f", TR of {r['bold_with_tr']} BOLD runs in {r['tr_query_s']:.2f} s" if "tr_query_s" in r else ""
            print(f"[{rep + 1}/{args.repeat}] {tool:12s} index {r['index_s']:7.2f} s, query {r['query_s']:6.2f} s"
                  f"{extra}; files {fmt(r['files'])}, T1w+bold images {r['images']}, import {r['import_s']:.2f} s, "
                  f"peak RSS {r['maxrss_mb']:.0f} MB, load {os.getloadavg()[0]:.2f}", flush=True)
    print("\n| tool | index s (min) | all repeats | query T1w+bold s | TR of BOLD s | files seen | T1w+bold images | import s | peak RSS MB |")
    print("|---|---|---|---|---|---|---|---|---|")
    for tool in tools:
        rs = results[tool]
        if not rs:
            continue
        best = min(rs, key=lambda r: r["index_s"])
        every = ", ".join(f"{r['index_s']:.2f}" for r in rs)
        tr_s = min((r["tr_query_s"] for r in rs if "tr_query_s" in r), default=None)
        print(f"| {tool} | {best['index_s']:.2f} | {every} | "
              f"{min(r['query_s'] for r in rs):.2f} | {fmt(tr_s)} | "
              f"{fmt(best['files'])} | {best['images']} | {min(r['import_s'] for r in rs):.2f} | "
              f"{max(r['maxrss_mb'] for r in rs):.0f} |")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


# ----------------------------------------------------------------------- correctness


def _norm(value) -> str:
    return str(value)


def _pybids_short_keys(layout) -> dict[str, str]:
    """pybids entity name -> BIDS key (``acquisition`` -> ``acq``), from its config patterns."""
    out = {"suffix": "suffix", "extension": "extension", "datatype": "datatype"}
    for config in layout.config.values():
        for name, entity in config.entities.items():
            m = re.search(r"([a-zA-Z]+)-\(", entity.pattern or "")
            if m and name not in out:
                out[name] = m.group(1)
    return out


def _compare_entities(truth: dict, other: dict) -> list[str]:
    diffs = []
    for k in sorted(set(truth) | set(other)):
        a, b = truth.get(k), other.get(k)
        if a is None:
            diffs.append(f"{k}: extra {b!r}")
        elif b is None:
            diffs.append(f"{k}: missing (pybids {a!r})")
        elif _norm(a) != _norm(b):
            kind = "padding only" if _norm(a).isdigit() and _norm(b).isdigit() and int(a) == int(b) else "differs"
            diffs.append(f"{k}: {b!r} vs pybids {_norm(a)!r} ({kind})")
    return diffs


def _kind(diff: str) -> str:
    """A disagreement with its values blanked, to count disagreements of one kind."""
    return re.sub(r"'[^']*'|\b\d+\b|\S+\.nii(\.gz)?\b", "…", diff)


def _tr_equal(a, b) -> bool:
    return (a is None and b is None) or (a is not None and b is not None and abs(float(a) - float(b)) < 1e-9)


def correctness(data_dir: str, datasets: list[str]) -> None:
    warnings.simplefilter("ignore")
    reason = importable("bids")
    if reason:
        print(f"SKIP correctness: pybids (the oracle) cannot be imported ({reason})")
        return
    from bids import BIDSLayout

    have_ours = importable("mmssl.bids.layout")
    have_b2t = importable("bids2table")
    if have_ours:
        print(f"SKIP ours: cannot import mmssl.bids.layout ({have_ours})")
    if have_b2t:
        print(f"SKIP bids2table: cannot import it ({have_b2t})")
    summary = []
    for name in datasets:
        root = Path(data_dir, name).resolve()
        if not root.is_dir():
            print(f"SKIP {name}: no folder {root}")
            continue
        print(f"\n=== {name} ({root})")
        layout = BIDSLayout(str(root), validate=False)
        keys = _pybids_short_keys(layout)
        truth: dict[str, dict] = {}
        for f in layout.get(suffix=list(MODALITIES), extension=list(NIFTI)):
            ents = {keys.get(k, k): v for k, v in f.get_entities(metadata=False).items()}
            tr = layout.get_metadata(f.path).get("RepetitionTime") if ents["suffix"] == "bold" else None
            truth[os.path.realpath(f.path)] = {"entities": ents, "tr": tr}
        n_t1 = sum(v["entities"]["suffix"] == "T1w" for v in truth.values())
        n_bold = len(truth) - n_t1
        n_tr = sum(v["tr"] is not None for v in truth.values())
        print(f"pybids: {n_t1} T1w, {n_bold} bold ({n_tr} with RepetitionTime in the merged metadata)")
        row = {"dataset": name, "pybids": f"{n_t1} T1w, {n_bold} bold ({n_tr} with TR)"}

        tools = {}
        if not have_ours:
            tools["ours"] = _ours_view(root)
        if not have_b2t:
            tools["bids2table"] = _b2t_view(root)
        for tool, (found, notes) in tools.items():
            t1 = sum(v["entities"].get("suffix") == "T1w" for v in found.values())
            missing = sorted(set(truth) - set(found))
            extra = sorted(set(found) - set(truth))
            ent_diffs, col_diffs, tr_stats = {}, {}, {"agree": 0, "missing_here": [], "differs": [], "extra": []}
            for path in sorted(set(truth) & set(found)):
                d = _compare_entities(truth[path]["entities"], found[path]["entities"])
                if d:
                    ent_diffs[path] = d
                if found[path].get("columns") is not None:
                    d = _compare_entities({k: v for k, v in truth[path]["entities"].items()
                                           if k in ("sub", "ses", "run", "acq", "task")}, found[path]["columns"])
                    if d:
                        col_diffs[path] = d
                if truth[path]["entities"]["suffix"] == "bold":
                    a, b = truth[path]["tr"], found[path]["tr"]
                    if _tr_equal(a, b):
                        tr_stats["agree"] += 1
                    elif b is None:
                        tr_stats["missing_here"].append(path)
                    elif a is None:
                        tr_stats["extra"].append(path)
                    else:
                        tr_stats["differs"].append((path, b, a))
            print(f"{tool}: {t1} T1w, {len(found) - t1} bold; missing vs pybids {len(missing)}, extra {len(extra)}; "
                  f"entity disagreements in {len(ent_diffs)} files" +
                  (f" (discover's columns: {len(col_diffs)})" if tool == "ours" else "") +
                  f"; RepetitionTime: {tr_stats['agree']} agree, {len(tr_stats['missing_here'])} missing here "
                  f"but in pybids' merged metadata, {len(tr_stats['differs'])} differ, {len(tr_stats['extra'])} only here")
            reasons: dict[str, list[str]] = {}
            for p in missing:
                reasons.setdefault(_kind(notes.get(p, "not seen")), []).append(p)
            for reason, paths in sorted(reasons.items()):
                print(f"  missing, {reason}: {len(paths)} files, e.g. {os.path.relpath(paths[0], root)}")
            other = [n for p, n in notes.items() if p not in truth]
            for note in other[:5]:
                print(f"  also excluded: {note}")
            for p in extra[:5]:
                print(f"  extra: {os.path.relpath(p, root)}")
            for label, diffs in (("entities", ent_diffs), ("discover columns", col_diffs)):
                kinds: dict[str, list[str]] = {}
                for path, d in diffs.items():
                    for x in d:
                        kinds.setdefault(_kind(x), []).append(path)
                for kind, paths in sorted(kinds.items()):
                    example = [x for x in diffs[paths[0]] if _kind(x) == kind]
                    print(f"  {label}: {kind} in {len(paths)} files, e.g. {os.path.relpath(paths[0], root)}: {example}")
            for p in tr_stats["missing_here"][:3]:
                print(f"  TR missing here: {os.path.relpath(p, root)} (pybids {truth[p]['tr']}; "
                      f"nearest sidecar {found[p].get('sidecar') and os.path.relpath(found[p]['sidecar'], root)})")
            for p, b, a in tr_stats["differs"][:3]:
                print(f"  TR differs: {os.path.relpath(p, root)}: {b} vs pybids {a}")
            why = "" if not missing else " (" + ", ".join(f"{len(v)} {k}" for k, v in sorted(reasons.items())) + ")"
            row[tool] = (f"{t1} T1w, {len(found) - t1} bold; -{len(missing)}/+{len(extra)} files{why}; "
                         f"entity diffs {len(ent_diffs)}; TR {tr_stats['agree']} agree, "
                         f"{len(tr_stats['missing_here'])} missing, {len(tr_stats['differs'])} differ")
        summary.append(row)
    print("\n| dataset | pybids | ours | bids2table |\n|---|---|---|---|")
    for row in summary:
        print(f"| {row['dataset']} | {row['pybids']} | {row.get('ours', 'skipped')} | {row.get('bids2table', 'skipped')} |")


def _ours_view(root: Path) -> tuple[dict[str, dict], dict[str, str]]:
    """Our reader's T1w and BOLD images (every task): entities from its name parser (plus the
    datatype folder it globbed), discover's own columns, and the TR of the nearest sidecar."""
    from mmssl.bids.layout import discover, parse_bids_name

    result = discover(root, list(MODALITIES), bold_task=None)
    notes = {os.path.realpath(r.path): f"excluded by discover: {r.reason}" for r in result.excluded.itertuples()}
    out = {}
    for r in result.scans.itertuples():
        name = parse_bids_name(Path(r.path).name)
        ents = {"sub": name.subject, **dict(name.entities), "suffix": name.suffix, "extension": name.extension,
                "datatype": Path(r.path).parent.name}
        columns = {"sub": r.subject, "ses": r.session, "run": r.run, "acq": r.acq, "task": r.task}
        columns = {k: v for k, v in columns.items() if v not in ("", None)}
        tr = None
        if r.modality == "bold" and r.sidecar:
            try:
                tr = json.loads(Path(r.sidecar).read_text()).get("RepetitionTime")
            except (json.JSONDecodeError, OSError) as err:
                notes[r.sidecar] = f"unreadable sidecar: {err}"
        out[os.path.realpath(r.path)] = {"entities": ents, "columns": columns, "tr": tr, "sidecar": r.sidecar}
    return out, notes


def _b2t_view(root: Path) -> tuple[dict[str, dict], dict[str, str]]:
    import bids2table

    table = _b2t_images(bids2table.index_dataset(root))
    skip = {"dataset", "root", "path", "extra_entities"}
    out = {}
    for rec in table.to_pylist():
        ents = {("extension" if k == "ext" else k): v for k, v in rec.items() if k not in skip and v is not None}
        ents.update(dict(rec["extra_entities"] or []))
        path = os.path.join(rec["root"], rec["path"])
        tr = bids2table.load_bids_metadata(path).get("RepetitionTime") if rec["suffix"] == "bold" else None
        out[os.path.realpath(path)] = {"entities": ents, "tr": tr}
    return out, {}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tools", help=f"comma-separated subset of {','.join(TOOLS)}")
    parser.add_argument("--once", default="", help="comma-separated tools to run only once (slow ones)")
    parser.add_argument("--work", help="folder for the tree and the pybids database (default: a new temp folder)")
    parser.add_argument("--rebuild", action="store_true", help="rewrite the tree even if it exists")
    parser.add_argument("--timeout", type=float, default=600, help="seconds allowed per timed run")
    parser.add_argument("--json", help="also write every measurement here")
    parser.add_argument("--correctness", metavar="PYBIDS_DATA_DIR",
                        help="compare with pybids on its test datasets (tests/data of the pybids sdist) instead")
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS))
    parser.add_argument("--_measure", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--_db", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args._measure:
        print(json.dumps(measure(args._measure[0], args._measure[1], args._db)))
    elif args.correctness:
        correctness(args.correctness, args.datasets)
    else:
        timing(args)


if __name__ == "__main__":
    main()
