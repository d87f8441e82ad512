"""Ray Data: label a Dataset with a pool of actors that each build one Classifier (`Dataset.map_batches` with
a callable class), and a tally of the calls, tokens and cost every actor paid. Ray is imported only when
this is used: pip install "promptclf[ray]"."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from promptclf.core.errors import ConfigError, MissingFileError
from promptclf.core.usage import SPENT, Usage
from promptclf.providers.registry import parse_model
from promptclf.workflows.batch_labeller import BatchLabeller

INSTALL = 'pip install "promptclf[ray]"'
# What each batch adds to the tally. wall_s is left out: actors overlap, the driver times the run.
COUNTERS = ("items", *SPENT)


def require_ray():
    """The ray module, or a ConfigError that says how to install it."""
    try:
        import ray
        import ray.data  # noqa: F401  (the Data library is the `ray[data]` extra)
    except ImportError as exc:
        raise ConfigError(f"Ray Data is not installed ({exc.name} is missing): {INSTALL}") from exc
    return ray


class RayLabeller:
    """The callable class for `ds.map_batches(RayLabeller, fn_constructor_kwargs={...}, batch_format="pandas")`.

    Each actor builds one Classifier from the constructor arguments (Classifier's own): one local or
    fine-tuned model loaded once, or one API client keeping `concurrency` requests in flight. Each batch is
    labelled by BatchLabeller: cache first, a per-row `error` instead of a failed block.
    """

    def __init__(
        self, labels, model: str | None = None, *, text_column: str = "text", tally=None, **classifier_options
    ):
        self.labeller = BatchLabeller.build(labels, model, text_column=text_column, **classifier_options)
        self.tally = tally
        self._reported = dict.fromkeys((*COUNTERS, "rows_with_error"), 0)

    def __call__(self, batch):
        out = self.labeller(batch)
        if self.tally is not None:
            totals = {name: getattr(self.labeller.usage, name) for name in COUNTERS}
            totals["rows_with_error"] = self.labeller.rows_with_error
            self.tally.add({name: totals[name] - self._reported[name] for name in totals})
            self._reported = totals
        return out


class UsageTally:
    """What every actor paid, added up in one small Ray actor; `usage()` reads it on the driver.

    >>> tally = UsageTally.start("openai:gpt-4o-mini")
    >>> label_dataset(ds, labels, model, tally=tally).write_parquet("out/")
    >>> tally.usage().summary(); tally.rows_with_error()
    """

    def __init__(self, actor, model: str, prices: dict | None):
        self.actor, self.model, self.prices = actor, model, prices or {}

    @classmethod
    def start(cls, model: str | None = None, prices: dict | None = None) -> UsageTally:
        ray = require_ray()
        actor = ray.remote(num_cpus=0)(_Counts).remote()
        return cls(actor, parse_model(model).id, prices)

    def add(self, counts: dict) -> None:
        """Called by the actors, which hold this object. Waits until the tally has the counts: a call nobody
        waits for can still be in flight, or lost with its actor, when the driver reads the tally."""
        require_ray().get(self.actor.add.remote(counts))

    def counts(self) -> dict:
        return require_ray().get(self.actor.counts.remote())

    def usage(self, wall_s: float = 0.0) -> Usage:
        counts = self.counts()
        usage = Usage(model=self.model, prices=self.prices, wall_s=wall_s)
        usage.add(**{name: counts.get(name, 0) for name in COUNTERS})
        return usage

    def rows_with_error(self) -> int:
        return self.counts().get("rows_with_error", 0)


class _Counts:
    def __init__(self):
        self.totals: dict = {}

    def add(self, counts: dict) -> None:
        for name, value in counts.items():
            self.totals[name] = self.totals.get(name, 0) + value

    def counts(self) -> dict:
        return dict(self.totals)


def label_dataset(
    ds,
    labels,
    model: str | None = None,
    *,
    text_column: str = "text",
    actors: int | tuple[int, int] = 1,
    rows_per_batch: int | None = None,
    num_cpus: float | None = None,
    tally: UsageTally | None = None,
    map_options: dict | None = None,
    **classifier_options,
):
    """`ds` with predicted_label, confidence, source and error columns appended, labelled by a pool of
    `actors` (a number, or (min, max) to autoscale), each holding one Classifier built from `labels`, `model`
    and `classifier_options` (Classifier's keyword arguments: `concurrency` is requests in flight per actor).

    Lazy, like every Ray Data transform: nothing runs until the dataset is consumed (write_parquet, iter_rows).
    Rows keep their other columns; their order follows Ray's `DataContext.execution_options.preserve_order`.
    `rows_per_batch` is the rows each call labels (default: 8 waves of requests for API models, 256 rows for
    others); an actor finishes one batch before it starts the next. `num_cpus` is what each actor reserves (default:
    `default_num_cpus`). `map_options` go to
    `map_batches` as they are (e.g. runtime_env, memory, num_gpus).
    """
    ray = require_ray()
    spec = _check_configuration(labels, model, classifier_options)
    if num_cpus is None:
        num_cpus = default_num_cpus(spec.is_api, actors, ray.cluster_resources().get("CPU", 1))
    if rows_per_batch is None:
        rows_per_batch = default_rows_per_batch(spec.is_api, classifier_options)
    size = dict(min_size=actors[0], max_size=actors[1]) if isinstance(actors, tuple) else dict(size=actors)
    constructor = dict(labels=labels, model=model, text_column=text_column, tally=tally, **classifier_options)
    return ds.map_batches(
        RayLabeller,
        fn_constructor_kwargs=constructor,
        batch_format="pandas",
        batch_size=rows_per_batch,
        compute=ray.data.ActorPoolStrategy(**size),
        num_cpus=num_cpus,
        **(map_options or {}),
    )


def default_num_cpus(is_api: bool, actors: int | tuple[int, int], cluster_cpus: float) -> float:
    """0.25 for API models, which wait on the network. Models that compute here reserve a CPU each, but the actors
    together never hold the cluster's last CPU: Ray Data's read and write tasks need one, and with every CPU held
    by an actor they wait for ever (2 actors on a 2-CPU machine hung)."""
    if is_api:
        return 0.25
    most = actors[1] if isinstance(actors, tuple) else actors
    return min(1.0, max(cluster_cpus - 1, 0) / most)


def default_rows_per_batch(is_api: bool, classifier_options: dict) -> int:
    """A batch is a barrier: its last wave of requests may be part-full while the actor waits. Eight full waves
    (items per request x requests in flight) keep that tail to an eighth at most."""
    if not is_api:
        return 256
    return 8 * classifier_options.get("batch_size", 10) * classifier_options.get("concurrency", 4)


def _check_configuration(labels, model, classifier_options: dict):
    """Fail here, before any actor starts, on what would fail in every actor: an unknown model string and,
    for API models (cheap to build: no model to load), a missing key, a bad label set or bad examples."""
    spec = parse_model(model, classifier_options.get("prompt"))  # None: a prompt artifact's model, else offline
    if spec.is_api:
        from promptclf.classifier import Classifier

        Classifier(labels, model, **{**classifier_options, "cache": False})
    return spec


def label_parquet(
    source,
    destination,
    labels,
    model: str | None = None,
    *,
    text_column: str = "text",
    actors: int | tuple[int, int] = 2,
    rows_per_batch: int | None = None,
    progress: bool = True,
    **classifier_options,
) -> tuple[Usage, int]:
    """Label a Parquet file (or a directory of them) into `destination`, a new directory of Parquet parts whose
    rows, read back in file-name order, are in input order. Starts a local Ray cluster unless one is running
    or RAY_ADDRESS names one. Returns what the run paid (summed over the actors) and how many rows hold an
    error instead of a label."""
    ray = require_ray()
    source, destination = Path(source), Path(destination)
    if not source.exists():
        raise MissingFileError(f"input {str(source)!r} does not exist")
    if source.is_file() and source.suffix.lower() not in (".parquet", ".pq"):
        raise ConfigError(f"input {str(source)!r}: the Ray engine reads Parquet (a file or a directory of them)")
    if destination.exists() and (destination.is_file() or any(destination.iterdir())):
        raise ConfigError(
            f"output {str(destination)!r} exists and is not an empty directory: the Ray engine "
            "writes Parquet parts into a new directory (remove it or choose another)"
        )
    spec = _check_configuration(labels, model, classifier_options)
    started = time.perf_counter()
    owns_cluster = not ray.is_initialized()
    if owns_cluster:
        ray.init(logging_level=logging.WARNING)
    context = ray.data.DataContext.get_current()
    saved = context.execution_options.preserve_order, context.enable_progress_bars
    try:
        context.execution_options.preserve_order, context.enable_progress_bars = True, progress
        tally = UsageTally.start(spec.id, classifier_options.get("prices"))
        if rows_per_batch is None:
            rows_per_batch = default_rows_per_batch(spec.is_api, classifier_options)
        # blocks of one batch each, so that every actor gets work even from a single file
        ds = ray.data.read_parquet(str(source)).repartition(target_num_rows_per_block=rows_per_batch)
        label_dataset(
            ds,
            labels,
            model,
            text_column=text_column,
            actors=actors,
            rows_per_batch=rows_per_batch,
            tally=tally,
            **classifier_options,
        ).write_parquet(str(destination))
        return tally.usage(wall_s=time.perf_counter() - started), tally.rows_with_error()
    finally:
        context.execution_options.preserve_order, context.enable_progress_bars = saved
        if owns_cluster:
            ray.shutdown()
