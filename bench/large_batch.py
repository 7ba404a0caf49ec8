"""Ingest + validate one very large batch at bounded memory; compare with the whole-batch path.

    PYTHONPATH=include .venv/bin/python bench/large_batch.py --rows 20000000 \
        --legacy-rows 2000000,5000000 --out bench/results/large_batch.json

A churn batch of ``--rows`` rows is generated as Parquet, 1,000,000 rows per row group (written
group by group, so generating it is bounded too). Then, each in a fresh process, with a file://
source and store:

- ``chunked``: ``batches.ingest_batch`` + ``validation.validate_batch`` as the factory runs them
  (streamed copy and hash, row count from the footer, GX per chunk of ``--chunk-rows``, passed
  as ``FactorySettings.chunk_rows``, validated Parquet written chunk by chunk);
- ``legacy``: the previous whole-batch path, kept here verbatim: ``storage.read_bytes`` of the
  file, ``hashlib.sha256`` of the bytes, ``parse_batch`` of the whole table, ``validate_frame`` on
  it and ``write_parquet`` of it (at ``--legacy-rows`` sizes, where it still fits).

Peak memory is the child's peak RSS (``ru_maxrss``); wall and CPU seconds per phase.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime as dt
import os
import platform
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

from result_file import write_result

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "include"))

DAY = dt.date(2026, 1, 5)
GROUP = 1_000_000  # the demo generator draws unique ids from 1M: at most 1M rows per call


def make_batch(path: Path, rows: int) -> float:
    import pyarrow as pa
    import pyarrow.parquet as pq
    from model_factory_dev import demo_data

    t0 = time.perf_counter()
    writer = None
    for start in range(0, rows, GROUP):
        n = min(GROUP, rows - start)
        frame = demo_data.generate_batch("churn", DAY, rows=n, seed=start // GROUP)
        table = pa.Table.from_pandas(frame, preserve_index=False)
        writer = writer or pq.ParquetWriter(str(path), table.schema)
        writer.write_table(table)
    writer.close()
    return time.perf_counter() - t0


def _spec(root: Path):
    import yaml
    from model_factory.settings import FactorySettings
    from model_factory.spec import load_spec

    raw = yaml.safe_load((ROOT / "include" / "models" / "churn.yaml").read_text())
    raw["source"] = {"uri": f"{(root / 'source').as_uri()}/churn/{{ds}}.parquet", "format": "parquet"}
    (root / "specs").mkdir(exist_ok=True)
    (root / "specs" / "churn.yaml").write_text(yaml.safe_dump(raw))
    return load_spec(root / "specs" / "churn.yaml", FactorySettings.from_env())


def _peak_mb() -> int:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def _phase(timings: dict, name: str, t0: float, c0: float) -> tuple[float, float]:
    timings[name] = {
        "wall_s": round(time.perf_counter() - t0, 1),
        "cpu_s": round(time.process_time() - c0, 1),
        "peak_rss_mb_so_far": _peak_mb(),
    }
    return time.perf_counter(), time.process_time()


def run_chunked(root: str, chunk_rows: int) -> dict:
    from model_factory.io import batches
    from model_factory.pipeline import validation
    from model_factory.settings import FactorySettings

    root_path = Path(root)
    spec = _spec(root_path)
    settings = FactorySettings(
        store_uri=(root_path / "store").as_uri(),
        source_roots=(root_path / "source").as_uri(),  # the generated batch's folder
        chunk_rows=chunk_rows,
    )
    timings: dict = {}
    t0, c0 = time.perf_counter(), time.process_time()
    manifest = batches.ingest_batch(spec, DAY.isoformat(), settings)
    t0, c0 = _phase(timings, "ingest", t0, c0)
    outcome = validation.validate_batch(spec, manifest, settings, root_path / "specs")
    _phase(timings, "validate", t0, c0)
    return {
        "mode": "chunked",
        "chunk_rows": chunk_rows,
        "rows": manifest["rows"],
        "status": outcome["status"],
        "reasons": outcome.get("reasons"),
        "timings": timings,
        "peak_rss_mb": _peak_mb(),
    }


def run_legacy(root: str) -> dict:
    """The whole-batch path as it was before chunking (bytes, one DataFrame, one GX run)."""
    import hashlib

    from model_factory.io import storage
    from model_factory.io.batches import parse_batch, validated_uri, write_parquet
    from model_factory.pipeline.validation import validate_frame

    root_path = Path(root)
    spec = _spec(root_path)
    store = (root_path / "store-legacy").as_uri()
    source = f"{(root_path / 'source').as_uri()}/churn/{DAY}.parquet"
    timings: dict = {}
    t0, c0 = time.perf_counter(), time.process_time()
    data = storage.read_bytes(source)
    sha = hashlib.sha256(data).hexdigest()
    rows = len(parse_batch(data, "parquet", source))
    raw = storage.join(store, "raw", "churn", str(DAY), sha[:12], "batch.parquet")
    storage.write_bytes(raw, data)
    t0, c0 = _phase(timings, "ingest", t0, c0)
    data = storage.read_bytes(raw)
    df = parse_batch(data, "parquet", raw)
    outcome = validate_frame(df, spec, root_path / "specs")
    write_parquet(df, validated_uri(store, "churn", str(DAY)))
    _phase(timings, "validate", t0, c0)
    return {
        "mode": "legacy",
        "rows": rows,
        "status": "validated" if outcome.success else "quarantined",
        "reasons": outcome.reasons,
        "timings": timings,
        "peak_rss_mb": _peak_mb(),
    }


def _in_child(fn, *args) -> dict:
    with concurrent.futures.ProcessPoolExecutor(max_workers=1) as pool:
        return pool.submit(fn, *args).result()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000_000)
    parser.add_argument("--chunk-rows", type=int, default=1_000_000)
    parser.add_argument("--legacy-rows", default="2000000", help="sizes for the whole-batch comparison")
    parser.add_argument("--chunked-rows", default="", help="extra sizes for the chunked path")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)

    results = {"host": platform.node(), "cpus": os.cpu_count(), "runs": []}
    legacy_sizes = [int(s) for s in args.legacy_rows.split(",") if s]
    chunked_sizes = sorted({args.rows, *legacy_sizes, *(int(s) for s in args.chunked_rows.split(",") if s)})
    for rows in chunked_sizes:
        with tempfile.TemporaryDirectory(prefix="large-batch-") as tmp:
            source = Path(tmp) / "source" / "churn"
            source.mkdir(parents=True)
            path = source / f"{DAY}.parquet"
            gen_s = make_batch(path, rows)
            size_mb = path.stat().st_size / 1e6
            print(f"{rows:,} rows: {size_mb:,.0f} MB Parquet, generated in {gen_s:.0f} s", flush=True)
            modes = [("chunked", run_chunked, (tmp, args.chunk_rows))]
            if rows in legacy_sizes:
                modes.append(("legacy", run_legacy, (tmp,)))
            for _name, fn, fn_args in modes:
                result = _in_child(fn, *fn_args) | {"parquet_mb": round(size_mb)}
                results["runs"].append(result)
                phases = ", ".join(f"{k} {v['wall_s']} s" for k, v in result["timings"].items())
                peak = result["peak_rss_mb"]
                line = f"  {result['mode']:<8} {result['status']:<11} peak RSS {peak:,} MB  ({phases})"
                print(line, flush=True)
                shutil.rmtree(Path(tmp) / "store", ignore_errors=True)
                shutil.rmtree(Path(tmp) / "store-legacy", ignore_errors=True)
    return write_result(results, args.out)


if __name__ == "__main__":
    sys.exit(main())
