"""Column counting in one vectorised pass, chunk by chunk, shared by the baseline and the checks.

A numeric column is counted against a sorted grid of reference quantiles (``NumericAccumulator``:
exact counts at and between the grid points, running mean/variance, bounds); a categorical one
into counts per category (``CategoricalAccumulator``). ``column_blocks`` gives a batch's columns in
pieces of ``chunk_rows`` (a DataFrame, or a Parquet file/bytes read one column of one row group at
a time by the thread that counts it, so memory is bounded by a few column chunks, not the batch),
and ``count_columns`` feeds them to the accumulators, columns in parallel threads (Arrow and numpy
release the GIL; the result is the same as in one thread).
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any

import numpy as np
import pandas as pd
from model_factory.io.batches import UnreadableBatchError
from model_factory.pipeline.features import MISSING_CATEGORY  # prepare_features' missing category

MAX_THREADS = 4  # column-counting threads (fewer where the process has fewer cores)
DEFAULT_CHUNK_ROWS = 65_536  # ~0.5 MB per float column: temporaries reuse the heap (larger ones page-fault)


def _null_count(series: pd.Series) -> int:
    return int(series.isna().sum())


def numeric_values(series: pd.Series) -> np.ndarray:
    """float64 values; nulls, non-numbers and +/-inf all become NaN (missing for the statistics)."""
    if pd.api.types.is_numeric_dtype(series.dtype):
        values = series.to_numpy(dtype="float64", na_value=np.nan)
    else:
        values = pd.to_numeric(series, errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
    bad = ~np.isfinite(values)
    if bad.any():
        values = values.copy()
        values[bad] = np.nan
    return values


def category_counts(series: pd.Series) -> tuple[dict[str, int], int]:
    """(counts per category as text, missing count): NaN/None and ``__missing__`` are missing.

    Counting happens in pandas on the native dtype; only the distinct keys are touched in Python.
    """
    counts: dict[str, int] = {}
    missing = 0
    for key, n in series.value_counts(dropna=False, sort=False).items():
        if not n:  # a pandas Categorical lists unused categories with 0
            continue
        if pd.isna(key) or key == MISSING_CATEGORY:
            missing += int(n)
        else:
            text = str(key)
            counts[text] = counts.get(text, 0) + int(n)
    return counts, missing


def categorical_text(series: pd.Series) -> pd.Series:
    """The column as strings with real nulls, the form the contract's value sets are written in."""
    text = series.astype("str")
    return text.mask(text == MISSING_CATEGORY)


class GridLocator:
    """Cell of each value on a sorted grid, in O(1) per value instead of a sort or a binary search.

    The grid's span is cut into ``per_point * len(grid)`` equal buckets; ``lo[b]`` counts the grid
    points in buckets before ``b``. The bucket of a value is a monotone function of it (float
    subtract, multiply, floor), so points in earlier buckets are below it and points in later ones
    above it: only the few points sharing its bucket are compared, in ``max_per_bucket`` vectorised
    steps. Values in crowded buckets (heavy tails put most points in a few buckets) take
    ``np.searchsorted`` instead. The cells are exactly those of a sort-and-count.
    """

    CROWDED = 4  # points per bucket above which a bucket's values take the binary search

    def __init__(self, grid: np.ndarray, per_point: int = 8) -> None:
        self.grid = np.asarray(grid, dtype="float64")
        n = len(self.grid)
        self.buckets = max(1, per_point * n)
        span = float(self.grid[-1] - self.grid[0]) if n else 0.0
        self.origin = float(self.grid[0]) if n else 0.0
        self.scale = self.buckets / span if span > 0 and math.isfinite(span) else 0.0
        of_point = self._bucket(self.grid)
        self.lo = np.searchsorted(of_point, np.arange(self.buckets + 1), side="left")
        per_bucket = np.bincount(of_point, minlength=self.buckets + 1)
        self.crowded = per_bucket > self.CROWDED
        self.steps = int(min(per_bucket.max(initial=0), self.CROWDED))
        self.padded = np.append(self.grid, np.inf)
        self.any_crowded = bool(self.crowded.any())

    def _bucket(self, x: np.ndarray) -> np.ndarray:
        b = np.subtract(x, self.origin)
        b *= self.scale
        np.clip(b, 0, self.buckets, out=b)
        return b.astype(np.intp)

    def cells(self, x: np.ndarray) -> np.ndarray:
        """Counts per cell (see ``NumericAccumulator``) of finite values ``x``."""
        b = self._bucket(x)
        below = self.lo.take(b)  # grid points < x, once the bucket's own points are stepped over
        for _ in range(self.steps):
            below += self.padded.take(below) < x
        if self.any_crowded:
            crowded = self.crowded.take(b)
            if crowded.any():
                below[crowded] = np.searchsorted(self.grid, x[crowded], side="left")
        equal = self.padded.take(below) == x
        below *= 2  # in place from here: below becomes the cell, 2 * below + equal
        below += equal
        return np.bincount(below, minlength=2 * len(self.grid) + 1)


class NumericAccumulator:
    """Running counts for one numeric column against a sorted grid of reference quantiles.

    Cells alternate: cell 2k holds values strictly between grid[k-1] and grid[k], cell 2k+1 values
    equal to grid[k] (2 * len(grid) + 1 cells), so the ECDF is exact at and just below each point.
    No value is sorted: each is placed by ``GridLocator``.
    """

    def __init__(self, grid: np.ndarray, bounds: tuple[float, float] | None = None) -> None:
        self.grid = grid
        self.locator = GridLocator(grid)
        self.bounds = bounds
        self.cells = np.zeros(2 * len(grid) + 1, dtype=np.int64)
        self.rows = self.nulls = self.count = self.outside = 0
        self.mean = self.m2 = 0.0
        self.min, self.max = math.inf, -math.inf
        self.dtypes: list[str] = []

    def update(self, series: pd.Series | Any) -> None:
        """Add a chunk: a pandas Series, or (from Parquet) an Arrow integer/float array."""
        if isinstance(series, pd.Series):
            dtype, nulls, values = str(series.dtype), _null_count(series), numeric_values(series)
        else:  # what to_pandas would give, without the DataFrame: ints with nulls become float64
            nulls = series.null_count
            dtype = (
                "float64"
                if nulls and not _is_float(series.type)
                else np.dtype(series.type.to_pandas_dtype()).name
            )
            present = series.drop_null() if nulls else series  # nulls never become NaN to be dropped
            values = present.to_numpy(zero_copy_only=False).astype("float64", copy=False)
        if dtype not in self.dtypes:
            self.dtypes.append(dtype)
        self.rows += len(series)
        self.nulls += nulls
        finite = np.isfinite(values)  # NaN (a null from pandas, or a stored NaN) and +/-inf are missing
        x = values if finite.all() else values[finite]
        if not x.size:
            return
        self.cells += self.locator.cells(x)
        # Chan et al.'s pairwise merge of (count, mean, M2): stable whatever the chunking.
        n_b, mean_b = x.size, float(x.mean())
        deviation = x - mean_b
        m2_b = float(np.square(deviation, out=deviation).sum())  # not np.dot: BLAS threads spin under load
        n = self.count + n_b
        delta = mean_b - self.mean
        self.mean += delta * n_b / n
        self.m2 += m2_b + delta * delta * self.count * n_b / n
        self.count = n
        self.min, self.max = min(self.min, float(x.min())), max(self.max, float(x.max()))
        if self.bounds is not None:
            lo, hi = self.bounds
            self.outside += int(np.count_nonzero(x < lo) + np.count_nonzero(x > hi))

    @property
    def invalid(self) -> int:
        """Non-null values that are not finite numbers (inf, unparseable text)."""
        return self.rows - self.nulls - self.count

    @property
    def std(self) -> float:
        return math.sqrt(self.m2 / (self.count - 1)) if self.count > 1 else 0.0


class CategoricalAccumulator:
    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self.rows = self.missing = 0

    def update(self, series: pd.Series | Any) -> None:
        """Add a chunk: a pandas Series, or (from Parquet) an Arrow dictionary array of text."""
        self.rows += len(series)
        if isinstance(series, pd.Series):
            counts, missing = category_counts(series)
        else:  # a bincount of the dictionary codes: no strings are touched per row
            indices = series.indices
            codes = (indices.drop_null() if indices.null_count else indices).to_numpy(zero_copy_only=False)
            tally = np.bincount(codes, minlength=len(series.dictionary))
            counts, missing = {}, series.null_count
            for key, n in zip(series.dictionary.to_pylist(), tally.tolist(), strict=True):
                if not n:
                    continue
                if key is None or key == MISSING_CATEGORY:
                    missing += n
                else:
                    counts[str(key)] = counts.get(str(key), 0) + n
        self.missing += missing
        for key, n in counts.items():
            self.counts[key] = self.counts.get(key, 0) + n


Accumulator = NumericAccumulator | CategoricalAccumulator


def bin_counts(cells: np.ndarray, grid: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Counts per PSI bin (-inf, e1], (e1, e2], ..., (ek, inf); every edge is a grid point."""
    cumulative = np.cumsum(cells)
    at_edge = cumulative[2 * np.searchsorted(grid, edges) + 1]
    return np.diff(np.concatenate([[0], at_edge, [cumulative[-1]]]))


def count_le(cells: np.ndarray, grid: np.ndarray, x: float, strict: bool = False) -> float:
    """Reference count <= x (< x if strict), interpolating linearly inside a cell between points."""
    cumulative = np.cumsum(cells)
    k = int(np.searchsorted(grid, x, side="left" if strict else "right"))  # grid points before x
    below = float(cumulative[2 * k - 1]) if k else 0.0
    if 0 < k < len(grid):
        lo, hi = grid[k - 1], grid[k]
        if not (strict and x == lo):
            below += float(cells[2 * k]) * (x - lo) / (hi - lo)
    return below


def column_blocks(
    current: Any, numeric: list[str], categorical: list[str], chunk_rows: int
) -> tuple[int, list[str], Iterator[dict[str, Callable[[], Iterable[Any]]]]]:
    """(rows, feature columns present, blocks) for a DataFrame, a Parquet path or Parquet bytes.

    A block maps each present column to a function giving its pieces of at most ``chunk_rows``
    rows, in row order: the whole frame for a DataFrame, one row group for Parquet. A Parquet
    column is read (decoded) by the thread that counts it, with a reader of its own, so memory is
    bounded by a column of a row group per thread, whatever the number of rows.
    """
    columns = [*numeric, *categorical]
    if isinstance(current, pd.DataFrame):
        present = [c for c in columns if c in current.columns]

        def frame_pieces(col: str) -> list[pd.Series]:
            return [current[col].iloc[s : s + chunk_rows] for s in range(0, max(len(current), 1), chunk_rows)]

        return len(current), present, iter([{col: partial(frame_pieces, col) for col in present}])

    import pyarrow as pa
    import pyarrow.parquet as pq

    if isinstance(current, bytes | bytearray | memoryview):
        data = current

        def source() -> Any:
            return pa.BufferReader(data)

        where = "the Parquet bytes"
    elif isinstance(current, str | os.PathLike):
        path = os.fspath(current)

        def source() -> Any:
            return path

        where = f"Parquet file {path}"
    else:
        raise TypeError(f"current must be a DataFrame, a Parquet path or bytes, not {type(current).__name__}")
    try:
        schema = pq.read_schema(source())
        # Text categoricals are read as dictionaries: counting them is then a bincount of codes.
        dictionaries = sorted(c for c in categorical if c in schema.names and _is_text(schema.field(c).type))
        parquet = pq.ParquetFile(source(), read_dictionary=dictionaries or None)
    except FileNotFoundError:
        raise
    except Exception as exc:
        raise UnreadableBatchError(f"{where} is not a readable parquet table: {exc}") from exc
    present = [c for c in columns if c in schema.names]
    rows = parquet.metadata.num_rows
    readers = threading.local()  # a ParquetFile per thread: one is not safe to share

    def column_pieces(group: int, name: str) -> Iterator[Any]:
        reader = getattr(readers, "parquet", None)
        if reader is None:
            reader = readers.parquet = pq.ParquetFile(source(), read_dictionary=dictionaries or None)
        column = reader.read_row_group(group, columns=[name], use_threads=False).column(0)
        for array in column.chunks:
            for start in range(0, len(array), chunk_rows):
                yield _column(array.slice(start, chunk_rows))

    def group_blocks() -> Iterator[dict[str, Callable[[], Iterable[Any]]]]:
        if not present:
            return
        if not rows:  # still one (empty) block, so the column types are seen
            empty = parquet.schema_arrow.empty_table().select(present).to_pandas()
            yield {col: partial(list, [empty[col]]) for col in present}
            return
        for group in range(parquet.num_row_groups):
            yield {name: partial(column_pieces, group, name) for name in present}

    return rows, present, group_blocks()


def _is_float(type_: Any) -> bool:
    import pyarrow as pa

    return pa.types.is_floating(type_)


def _is_text(type_: Any) -> bool:
    import pyarrow as pa

    return pa.types.is_string(type_) or pa.types.is_large_string(type_)


def _column(array: Any) -> Any:
    """An Arrow column as the accumulators take it: integer/float and dictionary-of-text arrays
    stay Arrow (counted without pandas); anything else becomes a pandas Series."""
    import pyarrow as pa

    kind = array.type
    if pa.types.is_integer(kind) or pa.types.is_floating(kind):
        return array
    if pa.types.is_dictionary(kind) and _is_text(kind.value_type) and pa.types.is_integer(kind.index_type):
        return array
    return array.to_pandas()


def worker_threads() -> int:
    """Threads for counting columns: the cores this process may use, at most ``MAX_THREADS``."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, min(MAX_THREADS, cores))


def count_columns(
    blocks: Iterator[dict[str, Callable[[], Iterable[Any]]]], accs: dict[str, Accumulator]
) -> None:
    """Feed every block's pieces to the columns' accumulators, columns in parallel threads.

    Arrow and numpy release the GIL for the per-value work (decoding and counting), so columns
    count side by side; each accumulator sees its own pieces in row order, one thread at a time,
    so the sums are the same as in one thread.
    """

    def feed(acc: Accumulator, pieces: Callable[[], Iterable[Any]]) -> None:
        for piece in pieces():
            acc.update(piece)

    threads = min(worker_threads(), len(accs))
    if threads <= 1:
        for block in blocks:
            for col, acc in accs.items():
                feed(acc, block[col])
        return
    with ThreadPoolExecutor(threads, thread_name_prefix="drift-count") as pool:
        for block in blocks:
            for _ in pool.map(feed, accs.values(), [block[col] for col in accs]):
                pass
