"""Benchmark: items/s through Ray Data (1, 2, 4 actors) against the fake server with a fixed 200 ms latency,
next to the single-process Classifier.

Data: the first 480 items of the AG News test slice (benchmarks/_common.py: seed-0 shuffle, rows from 4,600).
Every run: batch size 10 items per request, `concurrency` requests in flight per process or actor, cache off.
A Ray run is `ds.map_batches` with the RayLabeller that `label_dataset` uses (here a subclass that stamps when
each batch starts and ends), on a cluster already up (ray.init(num_cpus=2)), 12 blocks of 40 rows (one wave of 4 requests of 10). "wall" is
from the call to the last row back, actor start included; "labelling" is from the first batch's start to the
last batch's end, and "items/s" is over that span. Ideal = workers x concurrency x batch / latency.

    nice python3 benchmarks/ray_throughput.py        # needs promptclf[ray]
"""

import logging
import os
import time

import pandas as pd
import ray
from _common import DATA, LABELS, SPLIT_TEXT, ag_split, oracle_server

from promptclf import Classifier
from promptclf.integrations.ray import RayLabeller

N, LATENCY, BATCH, BLOCK = 480, 0.2, 10, 40
_, _, test = ag_split()
rows = test[:N]
frame = pd.DataFrame({"id": range(N), "text": [r["text"] for r in rows], "gold": [r["label"] for r in rows]})


class TimedLabeller(RayLabeller):
    def __call__(self, batch):
        started = time.time()  # wall clock: comparable across the actors of one machine
        out = super().__call__(batch)
        return out.assign(batch_started=started, batch_finished=time.time())


def ray_run(model: str, actors: int, concurrency: int) -> tuple[float, float]:
    ds = ray.data.from_pandas([frame.iloc[i : i + BLOCK] for i in range(0, N, BLOCK)])
    options = dict(
        labels=LABELS, model=model, batch_size=BATCH, concurrency=concurrency, cache=False, structured="json_schema"
    )
    started = time.perf_counter()
    out = ds.map_batches(
        TimedLabeller,
        fn_constructor_kwargs=options,
        batch_format="pandas",
        batch_size=BLOCK,
        compute=ray.data.ActorPoolStrategy(size=actors),
        num_cpus=0.25,
    ).to_pandas()
    wall = time.perf_counter() - started
    out = out.sort_values("id")
    assert list(out["predicted_label"]) == list(out["gold"]) and out["error"].isna().all(), "wrong answers"
    return wall, out["batch_finished"].max() - out["batch_started"].min()


def main() -> None:
    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.WARNING)
    ray.data.DataContext.get_current().enable_progress_bars = False
    print(
        f"data: {DATA}; split: {SPLIT_TEXT}; first {N} test items; latency {LATENCY * 1000:.0f} ms, "
        f"batch {BATCH}; {os.cpu_count()} CPU cores, load average {os.getloadavg()[0]:.1f}; ray {ray.__version__}"
    )
    print(f"{'engine':<22} {'workers':>7} {'conc.':>5} {'items/s':>8} {'ideal':>6} {'labelling s':>11} {'wall s':>7}")
    with oracle_server(rows, latency=LATENCY) as server:
        model = f"openai-compatible:bench@{server.base_url}"
        for concurrency in (1, 4):
            clf = Classifier(
                LABELS, model, batch_size=BATCH, concurrency=concurrency, cache=False, structured="json_schema"
            )
            assert clf.classify(list(frame["text"])) == list(frame["gold"]), "wrong answers"
            wall = clf.report.wall_s
            print(
                f"{'Classifier, 1 process':<22} {1:>7} {concurrency:>5} {N / wall:>8.1f} "
                f"{concurrency * BATCH / LATENCY:>6.0f} {wall:>11.1f} {wall:>7.1f}"
            )
        for concurrency in (1, 4):
            for actors in (1, 2, 4):
                wall, span = ray_run(model, actors, concurrency)
                print(
                    f"{'Ray Data':<22} {actors:>7} {concurrency:>5} {N / span:>8.1f} "
                    f"{actors * concurrency * BATCH / LATENCY:>6.0f} {span:>11.1f} {wall:>7.1f}",
                    flush=True,
                )
    ray.shutdown()


if __name__ == "__main__":
    main()
